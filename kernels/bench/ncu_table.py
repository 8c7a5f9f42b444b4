"""Per-kernel GPU time from `ncu --metrics gpu__time_duration.sum --csv`, summed by kernel
name over the launches of one render (the last `--renders` renders of the log are averaged).

    ncu --metrics gpu__time_duration.sum --csv .devbin/gpu_check --sizes 1000000 --reps 1 \
        --no-cpu > ncu.csv
    python3 kernels/bench/ncu_table.py ncu.csv
"""
import csv
import sys
from collections import OrderedDict


def kernel_times(path):
    """Every launch of the log, in order: (kernel name up to its parameter list, µs)."""
    rows = []
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(r["Metric Value"].replace(",", ""))
        unit = r["Metric Unit"]
        us = value / 1000.0 if unit == "nsecond" else value * 1000.0 if unit == "msecond" else value
        rows.append((r["Kernel Name"].split("(")[0], us))
    return rows


def main(path):
    rows = kernel_times(path)
    # Renders start at each model_stats launch.
    renders, current = [], None
    for name, us in rows:
        if name == "model_stats":
            current = OrderedDict()
            renders.append(current)
        if current is None:
            continue
        count, total = current.get(name, (0, 0.0))
        current[name] = (count + 1, total + us)
    for i, render in enumerate(renders):
        total = sum(t for _, t in render.values())
        parts = ", ".join(f"{k} {t:.0f}" + (f" ({c}x)" if c > 1 else "") for k, (c, t) in render.items())
        print(f"render {i}: {total:.0f} us: {parts}")


if __name__ == "__main__":
    main(sys.argv[1])
