#!/usr/bin/env bash
# Start a one-node SLURM on this machine for the sweep tests (Debian/Ubuntu, as root).
#
#   tests/slurm/start_slurm.sh STATE_DIR     start (installs slurm-wlm + munge when missing)
#   tests/slurm/start_slurm.sh STATE_DIR stop
#
# Everything the cluster writes lives in STATE_DIR: slurm.conf, spool folders, logs, pid
# files. Prints `SLURM_CONF=STATE_DIR/slurm.conf` on success; point sbatch/squeue/scontrol
# at it with that variable. Exits 3 with a reason on stderr where SLURM can't be started
# (not root, no apt-get, ...), so a caller can skip instead of fail.
set -euo pipefail

STATE=${1:?usage: start_slurm.sh STATE_DIR [stop]}
ACTION=${2:-start}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

cannot() { echo "cannot start SLURM: $*" >&2; exit 3; }

stop() {
    # Jobs first, so no srun or job script outlives the cluster.
    if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
        SLURM_CONF="$STATE/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 100); do
            [ -z "$(SLURM_CONF="$STATE/slurm.conf" squeue -h 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    pkill -f "^/bin/bash $STATE/d/job" 2>/dev/null || true
    for name in slurmd slurmctld munged; do
        if [ -f "$STATE/$name.pid" ]; then
            pid=$(cat "$STATE/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            rm -f "$STATE/$name.pid"
        fi
    done
}

if [ "$ACTION" = stop ]; then stop; exit 0; fi

[ "$(id -u)" = 0 ] || cannot "needs root (installs packages, runs slurmd)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || cannot "slurm-wlm/munge are not installed and there is no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$STATE/apt.log" 2>&1 || cannot "apt-get update failed (see $STATE/apt.log)"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1 \
        || cannot "apt-get install slurm-wlm munge failed (see $STATE/apt.log)"
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log" "$STATE/munge"
# Two free TCP ports, so a system SLURM or a leftover test cluster is never in the way.
read -r CTLD_PORT D_PORT < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

# munge: a key of our own and a socket in STATE, so a system munged (if any) is untouched.
MUNGE_SOCKET="$STATE/munge/munge.socket"
if [ ! -f "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 700 "$STATE/munge"; chmod 400 "$STATE/munge/munge.key"

cat >"$STATE/slurm.conf" <<CONF
# One-node test cluster written by tests/slurm/start_slurm.sh
ClusterName=sensortest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
# Older/newer Debian packages read cgroup.conf only with cgroup plugins; none are used.

stop  # a previous instance of this STATE
munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munge.seed" --force 2>>"$STATE/log/start.err" \
    || cannot "munged did not start (see $STATE/log/start.err)"
export SLURM_CONF="$STATE/slurm.conf"
slurmctld -f "$SLURM_CONF" 2>>"$STATE/log/start.err" || cannot "slurmctld did not start (see $STATE/log/slurmctld.log)"
slurmd -f "$SLURM_CONF" 2>>"$STATE/log/start.err" || cannot "slurmd did not start (see $STATE/log/slurmd.log)"
for _ in $(seq 300); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        echo "SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.1
done
cannot "the node did not become idle within 30 s: $(sinfo -h 2>&1 | head -3) (logs in $STATE/log)"
