#!/usr/bin/env bash
# Stop the daemons .ci/slurm_setup.sh started, by the PIDs it recorded (and only
# those). Safe to call twice, or when setup never ran.
set -uo pipefail

STATE="${RGBENCH_SLURM_STATE:-/tmp/rgbench-slurm}"
[[ -d "$STATE/pids" ]] || exit 0

# Jobs still queued or running (an interrupted test) would leave slurmstepd
# processes behind once slurmd is gone: cancel them while the controller answers.
if [[ -f "$STATE/pids/slurmctld" ]] && kill -0 "$(cat "$STATE/pids/slurmctld")" 2>/dev/null; then
    jobs="$(squeue -h -o %i 2>/dev/null || true)"
    if [[ -n "$jobs" ]]; then
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 100); do [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.2; done
    fi
fi

# slurmd before slurmctld before munged: each depends on the next.
for name in slurmd slurmctld munged; do
    file="$STATE/pids/$name"
    [[ -f "$file" ]] || continue
    pid="$(cat "$file")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm_teardown: $name ($pid) ignored SIGTERM; killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "slurm_teardown: stopped $name ($pid)"
    fi
    rm -f "$file"
done
