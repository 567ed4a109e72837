# shellcheck shell=bash
# The part of the batch scripts that does not depend on the batch system, sourced by
# jobs/slurm/lqcdflow.sbatch and jobs/pbs/lqcdflow.pbs. One job runs one segment of a chain:
#
#   1. activate the virtual environment, work out the seconds this job has left;
#   2. launch `lqcdflow run RUN.toml --restart auto --walltime LEFT` on LQCDFLOW_RANKS ranks
#      in the background, so that this shell can trap SIGUSR1/SIGTERM/SIGINT while it waits and
#      forward them to the launcher (the run then finishes its trajectory, checkpoints and
#      exits 3);
#   3. act on the exit code: 0 the chain is complete; 3 not finished: submit this script again
#      (at most LQCDFLOW_MAX_RESUBMITS times); 2 bad input and anything else: stop and say so.
#
# The sourcing script sets LQCDFLOW_RUN_FILE, LQCDFLOW_RANKS, LQCDFLOW_LAUNCHER,
# LQCDFLOW_MAX_RESUBMITS, LQCDFLOW_VENV, LQCDFLOW_WALLTIME and LQCDFLOW_JOB_SCRIPT, defines
#   job_id              print this job's id;
#   job_walltime_left   print the seconds this job has left, or nothing if it cannot tell;
#   job_submit COUNT    submit LQCDFLOW_JOB_SCRIPT again, passing on this environment (in
#                       which lqcdflow_job exports LQCDFLOW_JOB_SCRIPT) with
#                       LQCDFLOW_RESUBMIT_COUNT=COUNT, and print the new job's id;
# and calls lqcdflow_job, whose return value is the job's exit status.

EXIT_DONE=0       # lqcdflow run: n_trajectories reached
EXIT_BAD_INPUT=2  # lqcdflow run: the input cannot be used; resubmitting would not help
EXIT_RESUBMIT=3   # lqcdflow run: stopped early with a checkpoint; resubmit to continue

job_log() { printf '[lqcdflow-job %s job %s] %s\n' "$(date '+%F %T')" "$(job_id)" "$*"; }

# Seconds in a duration [[D-]HH:]MM:SS, the format of Slurm's squeue %L and PBS's walltime;
# prints nothing for anything else (UNLIMITED, NOT_SET, ...).
duration_seconds() {
    local days=0 rest=$1 h=0 m s
    [[ $rest =~ ^([0-9]+)-(.*)$ ]] && days=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]}
    if [[ $rest =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]]; then
        h=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]}
    elif [[ $rest =~ ^([0-9]+):([0-9]+)$ ]]; then
        m=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]}
    else
        return 0
    fi
    echo $(((10#$days * 24 + 10#$h) * 3600 + 10#$m * 60 + 10#$s))
}

# Seconds left for `lqcdflow run --walltime`: what the batch system says, else
# LQCDFLOW_WALLTIME less the time this script has run (SECONDS), else 0 = no limit.
walltime_left() {
    local left
    left=$(job_walltime_left)
    if [ -z "$left" ] && [ "$LQCDFLOW_WALLTIME" -gt 0 ]; then
        left=$((LQCDFLOW_WALLTIME - SECONDS))
    fi
    # Never 0 when there is a limit: 0 would mean "no limit" to lqcdflow.
    if [ -n "$left" ] && [ "$left" -lt 1 ]; then left=1; fi
    echo "${left:-0}"
}

launcher_pid=
signalled=
interrupted=

# Trap handler: forward the request to stop to the launcher. Always as SIGUSR1, whatever
# arrived: srun kills its step on SIGTERM instead of passing it on, while it passes SIGUSR1 to
# every task, and so does MPICH's mpiexec; lqcdflow treats USR1, TERM and INT alike.
forward_stop() {
    signalled=$1 interrupted=1
    job_log "received SIG$1: asking lqcdflow to checkpoint and stop"
    if [ -n "$launcher_pid" ]; then kill -USR1 "$launcher_pid" 2>/dev/null || true; fi
}

lqcdflow_job() {
    local count=${LQCDFLOW_RESUBMIT_COUNT:-0} rc=0 launcher new sig
    export LQCDFLOW_JOB_SCRIPT  # the resubmitted job need not look for it again
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # expand $sig now: one handler per signal
        trap "forward_stop $sig" "$sig"
    done
    if [ -n "$LQCDFLOW_VENV" ]; then
        # shellcheck disable=SC1091  # the venv's own script
        source "$LQCDFLOW_VENV/bin/activate"
    fi
    export PYTHONUNBUFFERED=1  # progress lines reach the log as they are printed

    read -ra launcher <<<"$LQCDFLOW_LAUNCHER"
    local command=("${launcher[@]}" -n "$LQCDFLOW_RANKS" lqcdflow run "$LQCDFLOW_RUN_FILE"
                   --restart auto --walltime "$(walltime_left)")
    job_log "segment $((count + 1)) of at most $((LQCDFLOW_MAX_RESUBMITS + 1)) in $PWD: ${command[*]}"

    if [ -n "$signalled" ]; then
        # Stopped before the run began: nothing to checkpoint, the next job starts it.
        rc=$EXIT_RESUBMIT
    else
        "${command[@]}" &
        launcher_pid=$!
        # A trapped signal interrupts `wait` (status > 128) while the launcher still runs:
        # wait again. When the launcher has exited, wait returns its status (again).
        while :; do
            interrupted=
            wait "$launcher_pid" && rc=0 || rc=$?
            [ -n "$interrupted" ] || break
        done
        launcher_pid=
        if [ "$rc" -eq "$EXIT_DONE" ] && ! lqcdflow status "$LQCDFLOW_RUN_FILE" >/dev/null; then
            # MPICH's mpiexec (Hydra 4.0) may exit 0 although every rank exited 3 (after
            # forwarding a signal, or with stdin on /dev/null): the newest checkpoint decides.
            job_log "launcher exited 0 but lqcdflow status says the chain is not complete:" \
                "treated as exit 3"
            rc=$EXIT_RESUBMIT
        fi
    fi

    case $rc in
        "$EXIT_DONE")
            job_log "chain complete (exit 0)"
            return 0 ;;
        "$EXIT_RESUBMIT")
            if [ "$count" -ge "$LQCDFLOW_MAX_RESUBMITS" ]; then
                job_log "not finished (exit 3), and the limit of $LQCDFLOW_MAX_RESUBMITS" \
                    "resubmissions is reached: not resubmitted; submit again by hand to continue"
                return "$EXIT_RESUBMIT"
            fi
            if ! new=$(job_submit $((count + 1))); then
                job_log "not finished (exit 3), and resubmitting $LQCDFLOW_JOB_SCRIPT failed"
                return "$EXIT_RESUBMIT"
            fi
            job_log "not finished (exit 3): resubmitted as job $new" \
                "(resubmission $((count + 1)) of at most $LQCDFLOW_MAX_RESUBMITS)"
            return 0 ;;
        "$EXIT_BAD_INPUT")
            job_log "bad input (exit 2): not resubmitted; fix the run file or the files it names"
            return "$EXIT_BAD_INPUT" ;;
        *)
            job_log "failed (exit $rc): not resubmitted"
            return "$rc" ;;
    esac
}
