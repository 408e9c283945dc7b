#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests (see docs/cluster.md).
#
#   tests/slurm/local-slurm.sh start   # install if missing, configure, start; waits for the node
#   tests/slurm/local-slurm.sh stop    # stops the daemons this script started (by their pid files)
#   tests/slurm/local-slurm.sh status
#
# Needs root and (the first time) apt-get. Both commands are idempotent. State, spool, pid
# and log files live in $SLURM_LOCAL_DIR (default /tmp/skillscale-slurm). The node has every
# CPU of the machine, 80% of its memory and one fake GPU per CPU (gres on null devices), so
# rules with `gpu=1` are submitted with --gpus=1, get CUDA_VISIBLE_DEVICES and queue for GPUs.
# /etc/slurm/{slurm,gres}.conf are written only if absent or written by this script before
# (Slurm's job steps drop SLURM_CONF, so the config has to be at the standard place).
# Exit status 3: cannot run here (not root, no apt-get, install failed) -- callers skip.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/skillscale-slurm}
MARK="# written by skillscale tests/slurm/local-slurm.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf

die3() { echo "local-slurm: $*" >&2; exit 3; }

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for b in slurmctld slurmd sbatch munged; do command -v "$b" >/dev/null || missing+=("$b"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die3 "no apt-get to install slurm (missing: ${missing[*]})"
    echo "local-slurm: installing slurmctld slurmd slurm-client munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    local pkgs=(slurmctld slurmd slurm-client munge)
    apt-get install -y --no-install-recommends "${pkgs[@]}" >"$DIR/apt.log" 2>&1 \
        || { apt-get update >>"$DIR/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$DIR/apt.log" 2>&1; } \
        || die3 "apt-get install failed, see $DIR/apt.log"
}

write_conf() {
    for f in "$CONF" "$GRES"; do
        if [[ -e $f ]] && ! grep -qF "$MARK" "$f"; then
            die3 "$f exists and was not written by this script; not touching a real cluster's config"
        fi
    done
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    mkdir -p /etc/slurm "$DIR"/{state,spool,log}
    # one fake GPU per CPU: character devices like /dev/null (1,3); CUDA_VISIBLE_DEVICES
    # is set from them, nothing opens them
    for ((i = 0; i < cpus; i++)); do
        [[ -c $DIR/fakegpu$i ]] || mknod -m 666 "$DIR/fakegpu$i" c 1 3
    done
    cat >"$CONF" <<EOF
$MARK (state in $DIR)
ClusterName=skillscale-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$GRES" <<EOF
$MARK
AutoDetect=off
NodeName=localhost Name=gpu File=$DIR/fakegpu[0-$((cpus - 1))]
EOF
}

start() {
    [[ $(id -u) -eq 0 ]] || die3 "needs root (starts slurmctld, slurmd and munged)"
    mkdir -p "$DIR"
    install_packages
    write_conf
    if ! pgrep -x munged >/dev/null; then
        install -d -o munge -g munge -m 755 /run/munge
        [[ -s /etc/munge/munge.key ]] || die3 "no /etc/munge/munge.key (munge package not set up)"
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
        cp /run/munge/munged.pid "$DIR/munged.pid"  # ours to stop; a munged found running is not
    fi
    # a fresh cluster each time: no jobs or node states recovered from an earlier run
    alive "$DIR/slurmctld.pid" || { rm -rf "$DIR/state"/*; slurmctld; }
    alive "$DIR/slurmd.pid" || slurmd -N localhost
    for _ in $(seq 100); do
        if sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "local-slurm: up ($DIR)"; sinfo; return 0
        fi
        sleep 0.2
    done
    echo "local-slurm: node did not come up; logs in $DIR/log" >&2
    tail -n 20 "$DIR"/log/*.log >&2 || true
    return 1
}

stop_pidfile() {
    local f=$1
    if alive "$f"; then
        local pid; pid=$(cat "$f")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$f"
}

stop() {
    # slurmd first: jobs still running are killed with it (their steps are its children)
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    stop_pidfile "$DIR/munged.pid"
    echo "local-slurm: stopped"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
