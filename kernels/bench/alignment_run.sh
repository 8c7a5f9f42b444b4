#!/usr/bin/env bash
# The alignment parity run on the GPU machine: our CPU references of the validator's two
# alignment models (kernels/src/scorer/convnext_clip, text task; kernels/src/scorer/llm2clip,
# image task) against the Python references (kernels/bench/clip_reference.py, open_clip
# 2.29.0; kernels/bench/llm2clip_reference.py, transformers 4.44.2) on the same random-weight
# model files and the same images.
#
# Run from the repository root:   bash kernels/bench/alignment_run.sh
# Needs: .devbin/alignment_parity (cargo build --release -p splatfleet-kernels --example
# alignment_parity, copied there), .whl/*.whl (open_clip_torch 2.29.0, ftfy, wcwidth,
# transformers 4.44.2, tokenizers 0.19.1, huggingface_hub 0.24.6, safetensors), and a python3
# with torch, torchvision, timm, numpy, pillow. No Rust, no network.
# Env: SIZES (default "tiny real"), OUT (default /tmp/alignment_out), WORK (default
# /tmp/alignment_work), PROMPT (the text prompt), PYTHON (default python3).
# Writes under $OUT: inputs/ (views, prompt), <size>/{ref,ours}_*.json and logs, rows.jsonl,
# table.txt. Exit status 1 when a step failed (the table still shows what ran).
set -uo pipefail

OUT=${OUT:-/tmp/alignment_out}
WORK=${WORK:-/tmp/alignment_work}
SIZES=${SIZES:-tiny real}
PYTHON=${PYTHON:-python3}
PROMPT=${PROMPT:-"a red ceramic teapot with a dark handle, 3D render"}
BIN=.devbin/alignment_parity
BENCH=kernels/bench
CLIP_DIR=CLIP-convnext_large_d.laion2B-s26B-b102K-augreg
ROWS=$OUT/rows.jsonl
failed=0

mkdir -p "$OUT" "$WORK"
: > "$ROWS"
[ -x "$BIN" ] || { echo "missing $BIN (build the example and copy it there)"; exit 1; }
[ -f "$BENCH/clip_reference.py" ] || { echo "run from the repository root"; exit 1; }

echo "== python packages: pip install --no-deps --target $WORK/py .whl/*.whl"
rm -rf "$WORK/py"
: > "$OUT/pip.log"
for wheel in .whl/*.whl; do
    # A wheel built for another Python is skipped: the machine's own package serves.
    "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$WORK/py" "$wheel" \
        >> "$OUT/pip.log" 2>&1 || echo "  skipped $(basename "$wheel") (see $OUT/pip.log)"
done
export PYTHONPATH="$WORK/py${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import importlib
for m in ["torch", "torchvision", "timm", "numpy", "PIL", "open_clip", "transformers",
          "tokenizers", "huggingface_hub", "safetensors", "ftfy", "regex", "yaml", "tqdm"]:
    try:
        mod = importlib.import_module(m)
        print(f"  {m:16} {getattr(mod, '__version__', '?'):12} {getattr(mod, '__file__', '')}")
    except Exception as e:  # noqa: BLE001
        print(f"  {m:16} MISSING ({type(e).__name__}: {e})")
import torch
print("  cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# step NAME OUTFILE CMD...: runs CMD with stdout to OUTFILE, stderr to OUTFILE.log, times it.
step() {
    local name=$1 out=$2 t0 ms rc=0; shift 2
    t0=$(now_ms)
    "$@" > "$out" 2> "$out.log" || rc=$?
    ms=$(( $(now_ms) - t0 ))
    if [ "$rc" -eq 0 ]; then
        printf '  %-44s %6d.%01d s\n' "$name" $(( ms / 1000 )) $(( ms % 1000 / 100 ))
        return 0
    fi
    printf '  %-44s FAILED (rc %s): see %s\n' "$name" "$rc" "$out.log"
    tail -5 "$out.log" | sed 's/^/      /'
    failed=1
    return 1
}
compare() { # task ours ref label
    [ -s "$2" ] && [ -s "$3" ] || return 0
    "$PYTHON" "$BENCH/alignment_compare.py" compare --task "$1" --ours "$2" --ref "$3" \
        --label "$4" --rows "$ROWS" > /dev/null 2>> "$OUT/compare.log" || failed=1
}

echo "== inputs"
IN=$OUT/inputs
"$PYTHON" "$BENCH/alignment_compare.py" inputs --out "$IN" || exit 1
"$PYTHON" -c "import base64,sys; sys.stdout.write(base64.b64encode(open('$IN/prompt.png','rb').read()).decode())" > "$IN/prompt.b64"
VIEWS=("$IN"/v*.png)

for size in $SIZES; do
    case $size in tiny|real) ;; *) echo "unknown size $size"; failed=1; continue ;; esac
    echo "== $size"
    M=$WORK/models_$size
    R=$OUT/$size
    rm -rf "$M"; mkdir -p "$M/$CLIP_DIR" "$R"

    # --- text task: open_clip convnext_large_d
    if [ "$size" = tiny ]; then
        step "clip: write tiny model" "$R/clip_model.txt" \
            "$PYTHON" "$BENCH/clip_reference.py" tiny --out "$M/$CLIP_DIR" --seed 1
        config=(--config "$M/$CLIP_DIR/open_clip_config.json")
    else
        step "clip: write real-shape random model" "$R/clip_model.txt" \
            "$PYTHON" "$BENCH/alignment_compare.py" clipreal --out "$M/$CLIP_DIR" --seed 1
        config=()
    fi
    step "clip: vocabulary" "$R/clip_vocab.txt" \
        "$PYTHON" "$BENCH/alignment_compare.py" vocab --out "$M/$CLIP_DIR"
    weights=$M/$CLIP_DIR/open_clip_model.safetensors
    step "clip: python fp32 (cuda)" "$R/ref_text_fp32.json" \
        "$PYTHON" "$BENCH/clip_reference.py" score --weights "$weights" ${config[@]+"${config[@]}"} \
        --images "$IN/views.npy" --prompt "$PROMPT" --fp32
    step "clip: python autocast fp16 (service)" "$R/ref_text_fp16.json" \
        "$PYTHON" "$BENCH/clip_reference.py" score --weights "$weights" ${config[@]+"${config[@]}"} \
        --images "$IN/views.npy" --prompt "$PROMPT"
    step "clip: ours (CPU f32)" "$R/ours_text.json" \
        "$BIN" --models "$M" --views "${VIEWS[@]}" --prompt "$PROMPT"
    compare text "$R/ours_text.json" "$R/ref_text_fp32.json" "$size text ours vs fp32"
    compare text "$R/ours_text.json" "$R/ref_text_fp16.json" "$size text ours vs fp16"
    compare text "$R/ref_text_fp16.json" "$R/ref_text_fp32.json" "$size text py fp16 vs fp32"

    # --- image task: LLM2CLIP vision tower (the script writes the model, same seed each run)
    step "llm2clip: python fp32 (cuda)" "$R/ref_image_fp32.json" \
        "$PYTHON" "$BENCH/llm2clip_reference.py" --out "$M" --size "$size" --seed 1 \
        --prompt "$IN/prompt.png" --views "${VIEWS[@]}" --dtype fp32
    step "llm2clip: python fp16 (service)" "$R/ref_image_fp16.json" \
        "$PYTHON" "$BENCH/llm2clip_reference.py" --out "$M" --size "$size" --seed 1 \
        --prompt "$IN/prompt.png" --views "${VIEWS[@]}" --dtype fp16
    step "llm2clip: ours (CPU f32)" "$R/ours_image.json" \
        "$BIN" --models "$M" --views "${VIEWS[@]}" --prompt-image "$IN/prompt.png"
    compare image "$R/ours_image.json" "$R/ref_image_fp32.json" "$size image ours vs fp32"
    compare image "$R/ours_image.json" "$R/ref_image_fp16.json" "$size image ours vs fp16"
    compare image "$R/ref_image_fp16.json" "$R/ref_image_fp32.json" "$size image py fp16 vs fp32"
    if [ "$size" = tiny ]; then
        step "llm2clip: ours, prompt as base64 text" "$R/ours_image_b64.json" \
            "$BIN" --models "$M" --views "${VIEWS[@]}" --prompt-image "$IN/prompt.b64"
        compare image "$R/ours_image_b64.json" "$R/ref_image_fp32.json" "$size image ours(b64) vs fp32"
    fi
done

echo "== table (targets: ours vs fp32: embeddings rel < 1e-3, |dcos| < 1e-4, ids/px True)"
"$PYTHON" "$BENCH/alignment_compare.py" table --rows "$ROWS" | tee "$OUT/table.txt"
[ -s "$OUT/compare.log" ] && { echo "compare errors:"; tail -20 "$OUT/compare.log"; }
echo "outputs under $OUT"
exit "$failed"
