#!/usr/bin/env bash
# One device run of the scorer's checks: random-weight models at the real sizes, saved by the
# real libraries under the upstream names (so our loaders read what torch, transformers and
# safetensors write); our scorer on object-shaped renders (GPU fp32, GPU fast path, CPU
# reference); the service's own computation in PyTorch on the same images and weights; the
# comparison; the timings side by side; compute-sanitizer on a short run.
#
# Build here first (the device has no Rust), then run there from the repository root:
#   cargo build --release -p splatfleet-kernels --example scorer_parity --example scorer_check
#   cargo build --release -p splatfleet-worker
#   mkdir -p .devbin && cp target/release/examples/scorer_{parity,check} target/release/splatfleet-worker .devbin/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       transformers==4.44.2 tokenizers==0.19.1 huggingface_hub==0.24.6 torchmetrics==1.5.1
#   (device) bash kernels/bench/scorer_run.sh        # carry .devbin and .whl
# Knobs: CASES (4), REPS (20), CHUNKS (attention chunk sweep), NOCPU=1, EXACT=0 (no cuDNN-TF32-off
# reference), CHECK=0 (no scorer_check), MEMCHECK=0, NCU=0.
# The wheels are the versions the validation service pins (VALIDATOR_SCORING.md §0).
set -uo pipefail
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/scorer}
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export SPLATFLEET_PTX_CACHE=/tmp/ptx
CASES=${CASES:-4}
python3 kernels/bench/scorer_reference.py make-models "$WORK/models" 2>&1 | tail -3
.devbin/scorer_parity --models "$WORK/models" --out "$WORK/ours" --cases "$CASES" \
    --reps "${REPS:-20}" ${NOCPU:+--no-cpu} --chunks "${CHUNKS:-96,8,24,48}" 2>&1 | tee "$OUT/parity.txt"
python3 kernels/bench/scorer_reference.py score "$WORK/models" "$WORK/ours/cases" \
    "$WORK/ref.json" 2>&1 | tee "$OUT/reference.txt"
python3 kernels/bench/scorer_reference.py compare "$WORK/ref.json" "$WORK"/ours/ours_*.json \
    2>&1 | tee "$OUT/compare.txt"
# The same with cuDNN's TF32 convolutions off (the service leaves them on): what they move.
if [ "${EXACT:-1}" = 1 ]; then
    REF_CUDNN_TF32=0 python3 kernels/bench/scorer_reference.py score "$WORK/models" \
        "$WORK/ours/cases" "$WORK/ref_exact.json" 2>&1 | tee "$OUT/reference_exact.txt"
    python3 kernels/bench/scorer_reference.py compare "$WORK/ref_exact.json" \
        "$WORK"/ours/ours_*.json 2>&1 | tee "$OUT/compare_exact.txt"
fi
# The worker's own `score` command on the same models (GPU path, end to end from PLY files):
# its scores should be the GPU TF32 numbers above.
if [ -x .devbin/splatfleet-worker ]; then
    .devbin/splatfleet-worker score "$WORK"/ours/cases/*/model.ply --models "$WORK/models" \
        2>&1 | tee "$OUT/worker_score.txt"
fi
if [ "${CHECK:-1}" = 1 ] && [ -x .devbin/scorer_check ]; then
    .devbin/scorer_check 2>&1 | tail -40 | tee "$OUT/check.txt"
fi
if [ "${MEMCHECK:-1}" = 1 ]; then
    compute-sanitizer --tool memcheck --error-exitcode 3 .devbin/scorer_parity \
        --models "$WORK/models" --out "$WORK/sanitized" --cases 1 --reps 1 --no-cpu \
        >"$OUT/sanitizer-memcheck.txt" 2>&1
    echo "compute-sanitizer memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer-memcheck.txt" | tail -1)" \
        | tee -a "$OUT/parity.txt"
fi
# Where the scorer's time goes, per kernel (one render-and-score pass per precision).
[ "${NCU:-1}" = 1 ] || exit 0
ncu --metrics gpu__time_duration.sum --csv .devbin/scorer_parity --models "$WORK/models" \
    --out "$WORK/ncu" --cases 1 --reps 0 --warmup 0 --no-cpu >"$WORK/ncu.csv" 2>/dev/null
python3 kernels/bench/ncu_scorer.py "$WORK/ncu.csv" 2>&1 | tee "$OUT/ncu.txt"
