# shellcheck shell=bash
# The part of the batch scripts that does not depend on the batch system, sourced by the job
# scripts (jobs/slurm/lqcdflow.sbatch, jobs/pbs/lqcdflow.pbs, or a user's copy of them) through
# `python3 -m lqcdflow.jobs`. One job runs one segment of a chain:
#
#   1. if the chain has a stop request (`lqcdflow stop RUN.toml` wrote RUN.toml.stop): a
#      resubmitted job ends at once; the first job of a chain (a new submission) withdraws it;
#   2. for each command of LQCDFLOW_COMMANDS in turn ("run": an HMC chain; "train sample": train
#      a flow, then sample with it), unless `lqcdflow status` says it is complete already:
#      launch `lqcdflow COMMAND RUN.toml --restart auto --walltime LEFT` on LQCDFLOW_RANKS ranks
#      (LEFT: the seconds this job has left) in the background, so that this shell can trap
#      SIGUSR1/SIGTERM/SIGINT while it waits and forward them to the launcher (the command then
#      finishes its trajectory or training step, saves and exits 3); on exit 0 go on with the
#      next command in the same job, on anything else stop;
#   3. decide, asking `lqcdflow status` whatever the launcher said (launchers do not always pass
#      the ranks' exit code on, and a signal may end a rank before its handlers are set):
#      complete: done; bad input (2) or a failure (1, a traceback): stop and say so; stopped
#      early (3, or ended by a signal): submit this script again, unless the chain has a stop
#      request, the batch system cancelled the job (job_cancelled), or LQCDFLOW_MAX_FAILURES
#      segments in a row ended without progress (a new checkpoint or training step).
#
# The sourcing script sets LQCDFLOW_RUN_FILE, LQCDFLOW_COMMANDS, LQCDFLOW_RANKS,
# LQCDFLOW_LAUNCHER, LQCDFLOW_MAX_FAILURES, LQCDFLOW_STOP_GRACE, LQCDFLOW_WALLTIME and
# LQCDFLOW_JOB_SCRIPT, has
# activated the environment in which lqcdflow runs, has trapped USR1, TERM and INT from its
# first line on to set `signalled` to the signal's name (a signal then must not end the job
# before it can decide), and defines
#   job_id              print this job's id;
#   job_walltime_left   print the seconds this job has left, or nothing if it cannot tell
#                       (its queries of the batch system run `immune`, see below);
#   job_cancelled       true if the batch system is ending this job for good (a user's
#                       scancel/qdel), false at the time limit or if it cannot tell;
#   job_submit          submit LQCDFLOW_JOB_SCRIPT again, passing on this environment (in
#                       which lqcdflow_job exports LQCDFLOW_JOB_SCRIPT, LQCDFLOW_RESUBMIT_COUNT
#                       and LQCDFLOW_FAILURES), and print the new job's id;
# and calls lqcdflow_job, whose return value is the job's exit status.

EXIT_DONE=0       # lqcdflow run/train/sample: complete
EXIT_BAD_INPUT=2  # the input cannot be used; resubmitting would not help
EXIT_RESUBMIT=3   # stopped early, with a checkpoint or the flow state saved; resubmit

# To the job's log through fd 9 (lqcdflow_job opens it), also when a trap runs while the
# shell's standard output is redirected (`lqcdflow status >/dev/null`).
job_log() { printf '[lqcdflow-job %s job %s] %s\n' "$(date '+%F %T')" "$(job_id)" "$*" >&9; }

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
watched=
signalled=${signalled:-}  # the sourcing script's first traps may have set it
interrupted=

# Trap handler: forward the request to stop to the launcher. Always as SIGUSR1, whatever
# arrived: srun kills its step on SIGTERM instead of passing it on, while it passes SIGUSR1 to
# every task, and so does MPICH's mpiexec; lqcdflow treats USR1, TERM and INT alike.
forward_stop() {
    signalled=$1 interrupted=1
    job_log "received SIG$1: asking lqcdflow to checkpoint and stop"
    if [ -n "$launcher_pid" ]; then
        kill -USR1 "$launcher_pid" 2>/dev/null || true
        if [ "$watched" != "$launcher_pid" ]; then
            watched=$launcher_pid
            watchdog "$launcher_pid" &
        fi
    fi
}

# End launcher $1 if it still runs LQCDFLOW_STOP_GRACE seconds after a stop was forwarded to
# it: a rank that the signal ended before lqcdflow could set its handlers leaves the others
# waiting for it (srun does not end a step for one failed task), which would hold the job to
# its time limit. The newest checkpoint decides then, as for any rank ended by a signal.
watchdog() {
    local waited
    trap '' USR1 TERM INT
    for ((waited = 0; waited < LQCDFLOW_STOP_GRACE; waited++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 1
    done
    job_log "lqcdflow has not stopped $LQCDFLOW_STOP_GRACE s (LQCDFLOW_STOP_GRACE) after" \
        "the signal (a rank ended before it could stop in order?): ending the launcher"
    kill -TERM "$1" 2>/dev/null || return 0
    sleep 10
    kill -KILL "$1" 2>/dev/null || true
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

# Run a command with the stop signals ignored: Slurm sends them to every process of the job
# (at the time limit, scancel --full), and a query or a resubmission must not die of them.
immune() { (trap '' USR1 TERM INT && exec "$@"); }

# `lqcdflow status [ARGS] RUN_FILE`, its output on stdout.
status() { immune lqcdflow status "$@" "$LQCDFLOW_RUN_FILE"; }

# Exit status of `lqcdflow status` for command $1 (train: --train): 0 complete, 3 not yet,
# 2 the run file cannot be used.
command_status() {
    if [ "$1" = train ]; then status --train >/dev/null; else status >/dev/null; fi
}

# What `lqcdflow status` prints: where the chain stands. It changes when a segment makes
# progress (a newer checkpoint, more training steps).
progress() { status 2>&1 || true; }

# Run `lqcdflow $1` on the ranks until the launcher exits, and return what it achieved:
# 0 the command is complete (whatever the launcher said: a signal may end the ranks just
# after they finished), 2 bad input, 3 stopped early by a signal or the walltime, with the
# newest checkpoint or flow state to continue from; anything else: it failed.
launch() {
    local rc launcher
    read -ra launcher <<<"$LQCDFLOW_LAUNCHER"
    local command=("${launcher[@]}" -n "$LQCDFLOW_RANKS" lqcdflow "$1" "$LQCDFLOW_RUN_FILE"
                   --restart auto --walltime "$(walltime_left)")
    # A signal to every process of the job may have ended walltime_left: it stops the job.
    [ -z "$signalled" ] || return "$EXIT_RESUBMIT"
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
    [ "$rc" -ne "$EXIT_BAD_INPUT" ] || return "$rc"
    if command_status "$1"; then
        [ "$rc" -eq "$EXIT_DONE" ] ||
            job_log "the launcher exited $rc, but lqcdflow $1 is complete (lqcdflow status)"
        return "$EXIT_DONE"
    fi
    case $rc in
        "$EXIT_RESUBMIT")
            job_log "lqcdflow $1 stopped early with a checkpoint (exit 3; a launcher's" \
                "\"Exited with exit code 3\" is this planned stop)" ;;
        "$EXIT_DONE")
            # MPICH's mpiexec (Hydra 4.0) may exit 0 although every rank exited 3 (after
            # forwarding a signal, or with stdin on /dev/null).
            job_log "the launcher exited 0 but lqcdflow status says $1 is not complete:" \
                "treated as exit 3" ;;
        *)
            # A signal that ended the ranks before they could set their handlers (or after
            # the last checkpoint): the newest checkpoint is consistent and decides.
            if [ -z "$signalled" ] && [ "$rc" -le 128 ]; then return "$rc"; fi
            job_log "lqcdflow $1 was ended by a signal (exit $rc): continuing from its" \
                "newest checkpoint" ;;
    esac
    return "$EXIT_RESUBMIT"
}

# The first job of a chain withdraws an old stop request; a later one ends at once (true).
stop_requested_before_start() {
    local request=$LQCDFLOW_RUN_FILE.stop  # lqcdflow.mc.stop.request_path
    [ -e "$request" ] || return 1
    if [ "${LQCDFLOW_RESUBMIT_COUNT:-0}" -eq 0 ]; then
        job_log "a new chain: the stop request $request is withdrawn ($(head -c 300 "$request"))"
        rm -f "$request"
        return 1
    fi
    job_log "stop requested ($request: $(head -c 300 "$request")): not launched, not" \
        "resubmitted; to resume, submit this script again"
}

# Submit this script again, unless the chain must not continue; returns the job's status.
resubmit() {
    local before=$1 failures=${LQCDFLOW_FAILURES:-0} count=${LQCDFLOW_RESUBMIT_COUNT:-0} new _
    local request=$LQCDFLOW_RUN_FILE.stop
    if [ -e "$request" ]; then
        job_log "stopped by request ($request: $(head -c 300 "$request")): not resubmitted;" \
            "to resume, submit this script again"
        return 0
    fi
    if [ "$signalled" = TERM ] && job_cancelled; then
        job_log "cancelled: the checkpoint is written, not resubmitted; to resume, submit" \
            "this script again"
        return 0
    fi
    if [ "$(progress)" = "$before" ]; then
        failures=$((failures + 1))
        if [ "$failures" -ge "$LQCDFLOW_MAX_FAILURES" ]; then
            job_log "no progress in $failures segments in a row (LQCDFLOW_MAX_FAILURES):" \
                "not resubmitted; see the log above, then submit again by hand"
            return "$EXIT_RESUBMIT"
        fi
        job_log "no progress in this segment ($failures of at most" \
            "$LQCDFLOW_MAX_FAILURES in a row)"
    else
        failures=0
    fi
    for _ in 1 2; do  # twice: a signal to every process of the job may end the first try
        new=$(LQCDFLOW_RESUBMIT_COUNT=$((count + 1)) LQCDFLOW_FAILURES=$failures job_submit) &&
            break
        new=
    done
    if [ -z "$new" ]; then
        job_log "not finished (exit 3), and resubmitting $LQCDFLOW_JOB_SCRIPT failed"
        return "$EXIT_RESUBMIT"
    fi
    job_log "not finished (exit 3): resubmitted as job $new (segment $((count + 2)))"
}

lqcdflow_job() {
    local count=${LQCDFLOW_RESUBMIT_COUNT:-0} rc=0 sig commands command before
    # Every exit status is handled here: a signal to every process of the job (the time limit,
    # scancel --full) may end any child, which must not end this shell (errexit).
    set +e
    exec 9>&1
    export LQCDFLOW_JOB_SCRIPT  # the resubmitted job need not look for it again
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # expand $sig now: one handler per signal
        trap "forward_stop $sig" "$sig"
    done
    job_log "segment $((count + 1)) in $PWD: lqcdflow $LQCDFLOW_COMMANDS $LQCDFLOW_RUN_FILE"
    [ -z "$signalled" ] || job_log "received SIG$signalled as the job started: lqcdflow is" \
        "not launched"
    read -ra commands <<<"$LQCDFLOW_COMMANDS"
    if [ "${#commands[@]}" -eq 0 ] || ! valid_commands "${commands[@]}"; then
        job_log "LQCDFLOW_COMMANDS=\"$LQCDFLOW_COMMANDS\" is not a list of the lqcdflow" \
            "commands run, train and sample (e.g. \"run\", or \"train sample\")"
        rc=$EXIT_BAD_INPUT
    elif stop_requested_before_start; then
        return 0
    else
        export PYTHONUNBUFFERED=1  # progress lines reach the log as they are printed
        before=$(progress)
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
            resubmit "$before" ;;
        "$EXIT_BAD_INPUT")
            job_log "bad input (exit 2): not resubmitted; fix the run file or the files it names"
            return "$EXIT_BAD_INPUT" ;;
        *)
            job_log "failed (exit $rc): not resubmitted; see the messages above"
            return "$rc" ;;
    esac
}
