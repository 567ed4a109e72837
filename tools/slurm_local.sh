#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for testing the batch scripts in jobs/.
#
#   eval "$(bash tools/slurm_local.sh start)"   # prints: export SLURM_CONF=...
#   sbatch ...; squeue; sinfo
#   bash tools/slurm_local.sh stop
#
# start: installs Debian's slurm-wlm and munge if missing (needs root), makes sure munged runs,
#        writes slurm.conf into the state directory ($LQCDFLOW_SLURM_STATE, default
#        /tmp/lqcdflow-slurm), starts slurmctld and slurmd, and waits until the node is idle.
#        Idempotent: a cluster this script already started is reused.
# stop:  cancels the jobs on this cluster, then ends the daemons it started, by their pid files.
#
# The configuration lives in the state directory and is found through SLURM_CONF, so that
# /etc/slurm is left alone. The node is called "localhost" whatever the host name is (slurmd -N).
# Jobs run the plain Linux way: no cgroups (proctrack/linuxproc, task/none), which works in
# containers. MPI inside a job: both srun (MpiDefault=pmi2: MPICH's ranks get Slurm's PMI-2
# server; without it, srun would start N separate 1-rank jobs) and MPICH's mpiexec work.
set -euo pipefail

state=${LQCDFLOW_SLURM_STATE:-/tmp/lqcdflow-slurm}
conf=$state/slurm.conf
export SLURM_CONF=$conf
log() { printf '[slurm_local] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The pid in pid file $1 if that process is alive.
alive_pid() {
    local pid
    [ -s "$1" ] && pid=$(<"$1") && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_packages() {
    local missing=() p
    for p in slurm-wlm munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "not root: cannot install ${missing[*]}"
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_munge() {
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return  # one is running
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        log "writing $key"
        install -d -o munge -g munge -m 700 /etc/munge
        head -c 1024 /dev/urandom >"$key"
    fi
    chown munge:munge "$key" && chmod 400 "$key"
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    # munged is shared by every munge client on the machine, so stop ends it only if we
    # started it: remember that here.
    cp /run/munge/munged.pid "$state/munged.pid"
    munge -n </dev/null | unmunge >/dev/null || die "munged does not answer"
}

# CPUs from getconf: nproc would follow OMP_NUM_THREADS, which test runs set to 1.
write_conf() {
    mkdir -p "$state/ctld" "$state/slurmd"
    cat >"$conf" <<EOF
# Written by tools/slurm_local.sh: a one-node test cluster.
ClusterName=lqcdflow-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=localhost CPUs=$(getconf _NPROCESSORS_ONLN) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$state"
    if alive_pid "$state/slurmctld.pid" >/dev/null && alive_pid "$state/slurmd.pid" >/dev/null; then
        log "already running ($state)"
    else
        install_packages
        [ "$(id -u)" -eq 0 ] || die "not root: slurmctld and slurmd run as root here"
        if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
            die "a slurmctld or slurmd not started with this state directory ($state) runs: stop it first"
        fi
        start_munge
        write_conf
        /usr/sbin/slurmctld
        /usr/sbin/slurmd -N localhost
    fi
    local i
    for i in $(seq 60); do
        [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && break
        [ "$i" -eq 60 ] && die "node not idle after 30 s; see $state/slurmctld.log and slurmd.log"
        sleep 0.5
    done
    log "node localhost idle"
    echo "export SLURM_CONF=$conf"
}

stop() {
    local name pid i
    if alive_pid "$state/slurmctld.pid" >/dev/null; then
        # All jobs of this cluster are ours; without this, their processes outlive slurmd.
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
        for i in $(seq 20); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            [ "$i" -lt 20 ] && sleep 0.5
        done
    fi
    for name in slurmd slurmctld munged; do
        if pid=$(alive_pid "$state/$name.pid"); then
            kill "$pid"
            for i in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
            log "stopped $name ($pid)"
        fi
        rm -f "$state/$name.pid"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
