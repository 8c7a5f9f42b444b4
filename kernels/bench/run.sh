#!/usr/bin/env bash
# One device run: correctness against the CPU reference and against gsplat 1.5.3, timings,
# and compute-sanitizer. Build here first (no Rust on the device):
#   cargo build --release -p splatfleet-kernels --example gpu_check
#   mkdir -p .devbin && cp target/release/examples/gpu_check .devbin/
#   pip download --no-deps -d .wheels gsplat==1.5.3 jaxtyping wadler-lindig rich markdown-it-py mdurl pygments ninja
# then on the device machine, from the repository root (carry .devbin and .wheels):
#   bash kernels/bench/run.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/cases
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -m pip install --quiet --no-deps --root-user-action=ignore .wheels/*.whl 2>&1 | tail -2
export SPLATFLEET_PTX_CACHE=/tmp/ptx
SIZES=${SIZES:-1000,100000,500000,1000000}
.devbin/gpu_check --sizes "$SIZES" --reps "${REPS:-20}" --dump /tmp/cases 2>&1 | tee "$OUT/check.txt"
python3 kernels/bench/gsplat_compare.py /tmp/cases "${REPS:-20}" 2>&1 | tail -20 | tee "$OUT/gsplat.txt"
for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 3 .devbin/gpu_check --sizes 20000 --reps 1 --no-cpu > "$OUT/sanitizer-$tool.txt" 2>&1
    echo "compute-sanitizer $tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.txt" | tail -1)" | tee -a "$OUT/check.txt"
done
