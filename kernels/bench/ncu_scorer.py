"""Per-kernel GPU time of the scorer from `ncu --metrics gpu__time_duration.sum --csv` over
`scorer_parity --cases 1 --reps 0 --warmup 0 --no-cpu`: the log holds two render-and-score
passes (fp32, then TF32), each starting at the renderer's `model_stats`. Prints, per pass, the
scorer's kernels (everything after the renderer's last kernel) summed by name, largest first.

    ncu --metrics gpu__time_duration.sum --csv .devbin/scorer_parity ... > ncu.csv
    python3 kernels/bench/ncu_scorer.py ncu.csv
"""
import sys
from collections import OrderedDict

from ncu_table import kernel_times  # the CSV parsing (run from kernels/bench/ or by path)

# The renderer's kernels (kernels/src/cuda/*.cu): a pass's scorer work starts after them.
RENDER = {"model_stats", "decode_project", "reset_metrics", "pack_metrics", "visible_depth_keys",
          "emission_offsets", "emit_tile_keys", "radix_pass", "tile_ranges", "heavy_tiles",
          "rasterize", "measure_views"}


def main(path):
    # Template kernels by their base name.
    rows = [(name.split("<")[0], us) for name, us in kernel_times(path)]
    passes, current = [], None
    for name, us in rows:
        if name == "model_stats":
            current = []
            passes.append(current)
        if current is not None:
            current.append((name, us))
    for label, launches in zip(["fp32", "tf32"], passes):
        last_render = max((i for i, (n, _) in enumerate(launches) if n in RENDER), default=-1)
        scorer = launches[last_render + 1:]
        by_name = OrderedDict()
        for name, us in scorer:
            n, t = by_name.get(name, (0, 0.0))
            by_name[name] = (n + 1, t + us)
        total = sum(t for _, t in by_name.values())
        print(f"ncu {label}: scorer kernels {len(scorer)} launches, {total / 1000:.3f} ms of kernel time")
        for name, (n, t) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:25]:
            print(f"  {t / 1000:8.3f} ms  {n:4d}x  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
