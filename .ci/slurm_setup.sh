#!/usr/bin/env bash
# Install and start a one-node SLURM cluster on this machine (as root), for
# tests/test_slurm.py. Stop it again with .ci/slurm_teardown.sh.
#
# The node is named after `hostname`, has this machine's CPUs and memory and one
# stand-in GPU (gres backed by /dev/null), so jobs that ask for --gpus=1 are
# scheduled exactly as on a GPU cluster. There is no accounting database: clients
# query slurmctld (squeue), which is why the test profile sets
# `slurm-status-command: squeue`.
#
# Idempotent: daemons already started by an earlier call (PIDs in $STATE/pids) are
# reused. Every daemon this script starts is recorded there by PID, so the teardown
# stops exactly those and nothing else.
#
# Env: RGBENCH_SLURM_STATE (default /tmp/rgbench-slurm) holds spool, logs and PIDs.
set -euo pipefail

STATE="${RGBENCH_SLURM_STATE:-/tmp/rgbench-slurm}"
CONF_DIR=/etc/slurm
HOST="$(hostname -s)"
# Stand-in GPUs (1 or 2). Two, on a 2-CPU node, means a GPU is never what a job
# waits for while a CPU sits idle.
GPUS="${RGBENCH_SLURM_GPUS:-2}"

if [[ "$(id -u)" != 0 ]]; then
    echo "slurm_setup: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
recorded_pid() { [[ -f "$STATE/pids/$1" ]] && cat "$STATE/pids/$1" || true; }

# --- packages (about 15 s) ---------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$STATE/pids" "$STATE/ctld" "$STATE/spool" "$CONF_DIR"

# --- configuration ------------------------------------------------------------------
# `slurmd -C` reports this machine's real topology; a slurm.conf that disagrees
# with it drains the node.
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | awk '
    /^NodeName/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["CPUs"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"]
    }')
# Leave some memory to the OS and to slurmctld itself.
MEM=$(( MEM * 9 / 10 ))

cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by rgbench .ci/slurm_setup.sh: a one-node test cluster.
ClusterName=rgbench
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Backfill every second: a GPU job waiting for a GPU must not hold back CPU jobs
# that fit beside it for the default 30 s.
SchedulerParameters=bf_interval=1,bf_resolution=60
ReturnToService=2
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# squeue sees a finished job for MinJobAge seconds; the plugin's squeue status
# check needs it well above 3x its first status-check delay.
MinJobAge=7200
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$HOST CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
# Two partitions on the one node, so a test can tell where each job was sent.
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF

# Stand-in GPUs: the scheduler only counts them; nothing opens these files as a GPU.
# (With File=, each GPU needs a file of its own.)
{
    echo "NodeName=$HOST Name=gpu File=/dev/null Count=1"
    if [[ "$GPUS" -ge 2 ]]; then echo "NodeName=$HOST Name=gpu File=/dev/zero Count=1"; fi
} >"$CONF_DIR/gres.conf"

# --- munge ----------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge

if ! alive "$(recorded_pid munged)"; then
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        # A munged we did not start (e.g. the distribution's service) already
        # answers; use it and leave it alone at teardown.
        echo "slurm_setup: using the munged that is already running"
    else
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/rgbench-munged.pid
        for _ in $(seq 50); do [[ -s /run/munge/rgbench-munged.pid ]] && break; sleep 0.1; done
        cp /run/munge/rgbench-munged.pid "$STATE/pids/munged"
    fi
fi
munge -n | unmunge >/dev/null

# --- slurmctld, slurmd ---------------------------------------------------------------
start_daemon() {  # name, pidfile, command...
    local name=$1 pidfile=$2
    shift 2
    if alive "$(recorded_pid "$name")"; then
        return
    fi
    rm -f "$pidfile"
    "$@"
    for _ in $(seq 100); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
    if ! alive "$(cat "$pidfile" 2>/dev/null)"; then
        echo "slurm_setup: $name did not start; its log:" >&2
        tail -n 30 "$STATE/$name.log" >&2 || true
        exit 1
    fi
    cp "$pidfile" "$STATE/pids/$name"
}

# -c: start from a clean state (no jobs or node states left from an earlier run).
start_daemon slurmctld "$STATE/slurmctld.pid" slurmctld -c
start_daemon slurmd "$STATE/slurmd.pid" slurmd

# --- wait for the node --------------------------------------------------------------
for _ in $(seq 120); do
    state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null | sort -u | paste -sd, || true)"
    if [[ "$state" == idle ]]; then
        echo "slurm_setup: node $HOST idle (CPUs=$CPUS RealMemory=$MEM Gres=gpu:$GPUS); daemons: $(cd "$STATE/pids" && for f in *; do printf '%s=%s ' "$f" "$(cat "$f")"; done)"
        exit 0
    fi
    sleep 0.5
done
echo "slurm_setup: node $HOST not idle after 60 s (state: ${state:-unknown})" >&2
scontrol show node "$HOST" >&2 || true
tail -n 30 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
exit 1
