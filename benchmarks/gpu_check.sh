#!/usr/bin/env bash
# The prepared device check (issue 28): run it whenever a CUDA GPU is at hand.
#
#   benchmarks/gpu_check.sh             # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run   # anywhere: checks the three runs' DAGs and settings
#
# With a GPU it runs, each in its own results directory under $GPU_CHECK_OUT
# (default results/gpu_check):
#   1. the smoke preset on the CPU             (device=cpu)
#   2. the smoke preset on the GPU             (device=cuda)
#   3. the paper preset's probe on the GPU     (device=cuda; micro-batches as the paper sets
#      them, not capped to a small host's memory as config/probe.yaml does)
# and then writes speedup_jobs.csv / speedup_rules.csv (each rule's speedup over the CPU,
# from the runs' benchmark files) and probe_gpu_steps.csv (the probe's GPU step times,
# FLOP rates and peak device memory). Any CUDA-only error fails a job, and so this script,
# loudly (Snakemake prints the failed job's log); so does a torch run that recorded a
# CPU device in the GPU runs (a silent fall-back).
# Without a GPU it runs step 1 only (the CPU path) and says that the GPU part was skipped.
# Offline MNIST: MNIST_SOURCE=DIR (the four standard files) is passed as mnist_source.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

out="${GPU_CHECK_OUT:-results/gpu_check}"
cores="${GPU_CHECK_CORES:-all}"
mnist=()
if [ -n "${MNIST_SOURCE:-}" ]; then mnist=("mnist_source=$MNIST_SOURCE"); fi
overlay="$(mktemp -d)/gpu_probe.yaml"
# the probe on a GPU: the paper's own micro-batches (config/paper.yaml), not the CPU probe's cap
printf 'probe: {max_micro_batch: null}\n' > "$overlay"

have_gpu=0
if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  have_gpu=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

run() {  # run <name> <snakemake arguments...>: one pipeline run into $out/<name>
  local name="$1"; shift
  local flags=(--cores "$cores")
  if [ "$dry_run" = 1 ]; then flags+=(--dry-run --nolock --quiet rules); fi
  echo "== $name: snakemake ${*} --config results_dir=$out/$name ${mnist[*]:-}"
  local started; started=$(date +%s)
  snakemake "${flags[@]}" "$@" --config "results_dir=$out/$name" "${mnist[@]}" "${DEVICE_OVERRIDE[@]}"
  echo "== $name: $(( $(date +%s) - started )) s"
}

DEVICE_OVERRIDE=(device=cpu)
run smoke_cpu --configfile config/smoke.yaml
if [ "$have_gpu" = 0 ] && [ "$dry_run" = 0 ]; then
  echo "gpu_check: no CUDA GPU here: the CPU run is done, the GPU runs were SKIPPED (nothing to compare)" >&2
  exit 0
fi
DEVICE_OVERRIDE=(device=cuda)
run smoke_cuda --configfile config/smoke.yaml
run probe_cuda --configfile config/paper.yaml config/probe.yaml "$overlay"

if [ "$dry_run" = 1 ]; then
  # the comparison itself, on two copies of one hand-made benchmark tree
  python - "$out" <<'EOF'
import sys, tempfile
from pathlib import Path
from rgbench.summary.device_check import rule_speedups, speedups
root = Path(tempfile.mkdtemp())
for name, seconds in (("cpu", 10.0), ("gpu", 2.5)):
    path = root / name / "benchmarks" / "demo_train" / "seed-0.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds}\t0:00:10\t100\t0\t0\t0\t0\t0\t0\t{seconds}\n")
table = rule_speedups(speedups(root / "cpu", root / "gpu"))
assert table.loc[0, "speedup"] == 4.0, table
print(f"gpu_check --dry-run: the three runs' DAGs build and the comparison works ({sys.argv[1]} untouched)")
EOF
  exit 0
fi

python -m rgbench.summary.device_check "$out/smoke_cpu" "$out/smoke_cuda" --probe "$out/probe_cuda" --out "$out"
echo "gpu_check: passed; tables in $out (speedup_rules.csv, speedup_jobs.csv, probe_gpu_steps.csv)"
