#!/usr/bin/env python3
"""Side-by-side baseline for common/examples/splat_bench.rs: Python's plyfile (PyPI) doing the
same work as the Rust PLY reader -- read, copy every vertex property into a contiguous array,
check every value is finite -- in plyfile's two modes:

  path   PlyData.read(path): binary files are memory-mapped (plyfile's fast path)
  bytes  PlyData.read(io.BytesIO(data)): how a PLY arrives over HTTP; plyfile cannot
         memory-map a BytesIO and falls back to reading property by property

Side by side in one run (builds nothing; build the example first):

  cargo build --release -p splatfleet-common --example splat_bench
  python3 common/bench/plyfile_bench.py --rust target/release/examples/splat_bench

runs the Rust benchmark (which writes /tmp/splat_bench_sh{0,3}.ply) and then plyfile on the same
files. With explicit paths instead of --rust, only plyfile runs.
"""

import importlib.metadata
import io
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import plyfile


def work(source):
    ply = plyfile.PlyData.read(source)
    vertex = ply["vertex"]
    arrays = {name: np.ascontiguousarray(vertex[name]) for name in vertex.data.dtype.names}
    finite = all(bool(np.isfinite(a).all()) for a in arrays.values())
    return len(arrays), finite


def bench(label, size, reps, fn):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    best, median = min(times), statistics.median(times)
    print(
        f"{label:<44} {best * 1e3:>9.2f} ms best {median * 1e3:>9.2f} ms median   "
        f"{size / best / 1e9:>6.2f} GB/s best {size / median / 1e9:>6.2f} GB/s median  ({size / 1e6:.1f} MB)"
    )


def main():
    args = sys.argv[1:]
    if args[:1] == ["--rust"]:
        print("### Rust (common/examples/splat_bench.rs)", flush=True)
        subprocess.run([args[1]], check=True)
        args = ["/tmp/splat_bench_sh0.ply", "/tmp/splat_bench_sh3.ply"]
    print("### Python plyfile", flush=True)
    print(f"plyfile {importlib.metadata.version('plyfile')} numpy {np.__version__} python {sys.version.split()[0]}")
    for path in args:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read()
        props, finite = work(path)
        print(f"== {path}: {size} bytes, {props} properties, finite={finite}")
        bench("plyfile from path (memory-mapped)", size, 10, lambda: work(path))
        bench("plyfile from bytes (BytesIO)", size, 1, lambda: work(io.BytesIO(data)))


if __name__ == "__main__":
    main()
