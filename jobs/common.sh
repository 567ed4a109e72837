# shellcheck shell=bash
# The part of the batch scripts that does not depend on the batch system, sourced by
# jobs/slurm/lqcdflow.sbatch and jobs/pbs/lqcdflow.pbs. One job runs one segment of a chain:
#
#   1. activate the virtual environment;
#   2. for each command of LQCDFLOW_COMMANDS in turn ("run": an HMC chain; "train sample": train
#      a flow, then sample with it), unless `lqcdflow status` says it is complete already:
#      launch `lqcdflow COMMAND RUN.toml --restart auto --walltime LEFT` on LQCDFLOW_RANKS ranks
#      (LEFT: the seconds this job has left) in the background, so that this shell can trap
#      SIGUSR1/SIGTERM/SIGINT while it waits and forward them to the launcher (the command then
#      finishes its trajectory or training step, saves and exits 3); on exit 0 go on with the
#      next command in the same job, on anything else stop;
#   3. act on the exit code: 0 every command is complete; 3 not finished: submit this script
#      again (at most LQCDFLOW_MAX_RESUBMITS times); 2 bad input and anything else: stop and
#      say so.
#
# The sourcing script sets LQCDFLOW_RUN_FILE, LQCDFLOW_COMMANDS, LQCDFLOW_RANKS,
# LQCDFLOW_LAUNCHER, LQCDFLOW_MAX_RESUBMITS, LQCDFLOW_VENV, LQCDFLOW_WALLTIME and
# LQCDFLOW_JOB_SCRIPT, defines
#   job_id              print this job's id;
#   job_walltime_left   print the seconds this job has left, or nothing if it cannot tell;
#   job_submit COUNT    submit LQCDFLOW_JOB_SCRIPT again, passing on this environment (in
#                       which lqcdflow_job exports LQCDFLOW_JOB_SCRIPT) with
#                       LQCDFLOW_RESUBMIT_COUNT=COUNT, and print the new job's id;
# and calls lqcdflow_job, whose return value is the job's exit status.

EXIT_DONE=0       # lqcdflow run/train/sample: complete
EXIT_BAD_INPUT=2  # the input cannot be used; resubmitting would not help
EXIT_RESUBMIT=3   # stopped early, with a checkpoint or the flow state saved; resubmit

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

# Seconds left for `lqcdflow COMMAND --walltime`: what the batch system says, else
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

# True if the arguments are lqcdflow commands a job can run.
valid_commands() {
    local command
    for command in "$@"; do
        case $command in
            run | train | sample) ;;
            *) return 1 ;;
        esac
    done
}

# Exit status of `lqcdflow status` for command $1 (train: --train): 0 complete, 3 not yet,
# 2 the run file cannot be used.
command_status() {
    if [ "$1" = train ]; then
        lqcdflow status --train "$LQCDFLOW_RUN_FILE" >/dev/null
    else
        lqcdflow status "$LQCDFLOW_RUN_FILE" >/dev/null
    fi
}

# Run `lqcdflow $1` on the ranks until the launcher exits; return its exit status, or 3 when
# it says 0 and `lqcdflow status` disagrees.
launch() {
    local rc launcher
    read -ra launcher <<<"$LQCDFLOW_LAUNCHER"
    local command=("${launcher[@]}" -n "$LQCDFLOW_RANKS" lqcdflow "$1" "$LQCDFLOW_RUN_FILE"
                   --restart auto --walltime "$(walltime_left)")
    job_log "lqcdflow $1: ${command[*]}"
    "${command[@]}" &
    launcher_pid=$!
    # A trapped signal interrupts `wait` (status > 128) while the launcher still runs: wait
    # again. When the launcher has exited, wait returns its status (again).
    while :; do
        interrupted=
        wait "$launcher_pid" && rc=0 || rc=$?
        [ -n "$interrupted" ] || break
    done
    launcher_pid=
    if [ "$rc" -eq "$EXIT_DONE" ] && ! command_status "$1"; then
        # MPICH's mpiexec (Hydra 4.0) may exit 0 although every rank exited 3 (after
        # forwarding a signal, or with stdin on /dev/null): the checkpoint or state decides.
        job_log "launcher exited 0 but lqcdflow status says $1 is not complete:" \
            "treated as exit 3"
        rc=$EXIT_RESUBMIT
    fi
    return "$rc"
}

lqcdflow_job() {
    local count=${LQCDFLOW_RESUBMIT_COUNT:-0} rc=0 new sig commands command
    export LQCDFLOW_JOB_SCRIPT  # the resubmitted job need not look for it again
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # expand $sig now: one handler per signal
        trap "forward_stop $sig" "$sig"
    done
    job_log "segment $((count + 1)) of at most $((LQCDFLOW_MAX_RESUBMITS + 1)) in $PWD:" \
        "lqcdflow $LQCDFLOW_COMMANDS $LQCDFLOW_RUN_FILE"
    read -ra commands <<<"$LQCDFLOW_COMMANDS"
    if [ "${#commands[@]}" -eq 0 ] || ! valid_commands "${commands[@]}"; then
        job_log "LQCDFLOW_COMMANDS=\"$LQCDFLOW_COMMANDS\" is not a list of the lqcdflow" \
            "commands run, train and sample (e.g. \"run\", or \"train sample\")"
        rc=$EXIT_BAD_INPUT
    else
        if [ -n "$LQCDFLOW_VENV" ]; then
            # shellcheck disable=SC1091  # the venv's own script
            source "$LQCDFLOW_VENV/bin/activate"
        fi
        export PYTHONUNBUFFERED=1  # progress lines reach the log as they are printed
        for command in "${commands[@]}"; do
            command_status "$command" && rc=0 || rc=$?
            if [ "$rc" -eq "$EXIT_RESUBMIT" ] && [ -z "$signalled" ]; then
                launch "$command" && rc=0 || rc=$?
            elif [ "$rc" -eq "$EXIT_DONE" ]; then
                job_log "lqcdflow $command: complete"
            fi
            # Else stopped by a signal before the command began (nothing to save: the next
            # job starts it), or `lqcdflow status` could not use the run file (exit 2).
            [ "$rc" -eq "$EXIT_DONE" ] || break
        done
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
