#!/usr/bin/env python3
"""The GPU fleet bench's report (ops/bench/gpu_fleet.sh, issue 23), as Markdown on stdout.

For every run directory that ops/demo.sh left under RUNS (its database kept), it reads:
- throughput: gated attempts per second in the steady window (each gated attempt is one model
  through parse, upload, render, score and alignment; random weights fail most models, so a
  task climbs the ladder and one task is up to three attempts) (from 10 s after the first
  attempt finished to the last), from `attempts.finished_at`;
- per-stage time p50/p99 from `attempts.stage_ms` (whole milliseconds; decode is the PLY
  parse), and the result's publish from the workers' `splatfleet_worker_stage_seconds`
  histogram buckets (interpolated);
- device memory per worker: the driver's per-process numbers when it gives them, else the
  device's memory in use less the baseline before the run, divided by the workers;
- lost, duplicate and error counts: tasks the validators handed out without a submission,
  tasks submitted twice (the validators' event log), attempts with an error, ERROR log lines;
- for a soak run (name starting `soak`), device memory over time against the bound below (the
  host's memory, threads, files and errors: ops/bench/soak_report.py, which gpu_fleet.sh runs
  too). Exit 1 when a soak bound or a zero count fails.
"""
import json
import math
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

WARMUP_SECS = 10
# Soak bound on the device, from the first sample at or after SOAK_SETTLED_SECS to the last:
# the device's memory in use, and each process's where the driver tells it, may grow 64 MiB.
# The host's bounds (resident set, threads, files, errors) are ops/bench/soak_report.py's.
SOAK_SETTLED_SECS = 60
SOAK_DEVICE_GROWTH_MIB = 64
STAGES = ["generate", "decode", "upload", "render", "score", "align", "download", "gate", "spz",
          "store"]


def psql(db, sql):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-AtF", "\t", "-c", sql],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"psql {db}: {out.stderr.strip()}")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def dbname(run):
    m = re.search(r'^dbname = "(.*)"$', (run / "splatfleet.toml").read_text(), re.M)
    return m.group(1)


def throughput(db):
    rows = psql(db, f"""
        WITH w AS (SELECT min(finished_at) + interval '{WARMUP_SECS} s' AS t0,
                          max(finished_at) AS t1 FROM attempts WHERE finished_at IS NOT NULL)
        SELECT count(*), extract(epoch FROM (SELECT t1 - t0 FROM w))
        FROM attempts, w WHERE finished_at > w.t0 AND finished_at <= w.t1""")
    n, secs = int(rows[0][0]), float(rows[0][1] or 0)
    return (n / secs if secs > 0 else float("nan")), n, secs


def stage_table(db):
    rows = psql(db, """
        SELECT s.key, count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.value::text::float8),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY s.value::text::float8)
        FROM attempts a, jsonb_each(a.stage_ms) s GROUP BY s.key""")
    return {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in rows}


def publish_quantiles(run):
    """p50/p99 of the publish stage from the workers' histogram buckets, seconds."""
    buckets = defaultdict(float)
    for prom in (run / "metrics").glob("worker-*.prom"):
        for line in prom.read_text().splitlines():
            m = re.match(r'splatfleet_worker_stage_seconds_bucket\{(.*)\} (\S+)$', line)
            if m and 'stage="publish"' in m.group(1):
                le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
                buckets[math.inf if le == "+Inf" else float(le)] += float(m.group(2))
    if not buckets:
        return None
    edges = sorted(buckets)
    total = buckets[edges[-1]]

    def q(p):
        want, lo, below = p * total, 0.0, 0.0
        for edge in edges:
            if buckets[edge] >= want:
                if math.isinf(edge):
                    return lo
                span = buckets[edge] - below
                return lo + (edge - lo) * ((want - below) / span if span else 1)
            lo, below = edge, buckets[edge]
        return lo
    return q(0.5), q(0.99), int(total)


def tsv(path):
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:] if l]


def device_memory(run, workers):
    rows = tsv(run / "gpu.tsv")
    procs = [r for r in rows if r["what"] == "process"]
    if procs:
        last = max(float(r["seconds"]) for r in procs)
        per = [float(r["used_mib"]) for r in procs if float(r["seconds"]) == last]
        return max(per), "driver, per process (max)"
    dev = [float(r["used_mib"]) for r in rows if r["what"] == "gpu0"]
    base = run / "gpu_baseline_mib"
    if dev and base.exists():
        return (max(dev) - float(base.read_text().strip())) / workers, "device used less baseline, / workers"
    return None, "not sampled"


def lost_and_duplicates(run):
    pulled, submits = set(), Counter()
    path = run / "validator-events.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        key = (e.get("validator"), e.get("task_id"))
        if e.get("event") == "pull" and e.get("outcome") == "new":
            pulled.add(key)
        elif e.get("event") == "submit":
            submits[key] += 1
    lost = len([k for k in pulled if submits[k] == 0])
    dups = len([k for k, n in submits.items() if n > 1])
    return len(pulled), lost, dups


def errors(run, db):
    # A gate that failed a model is a verdict, not an error: count what failed before one.
    attempt_errors = int(psql(db, "SELECT count(*) FROM attempts "
                                  "WHERE error IS NOT NULL AND gate_passed IS NULL")[0][0])
    log_errors = 0
    for log in (run / "logs").glob("*.log"):
        log_errors += sum(1 for l in log.read_text(errors="replace").splitlines()
                          if '"level":"ERROR"' in l)
    return attempt_errors, log_errors


def soak_bounds(run):
    """The device's memory bounds of a soak run (the host's are ops/bench/soak_report.py's):
    the device's memory in use, and each process's where the driver tells it."""
    series = defaultdict(list)  # what the row measures -> [(seconds, MiB)]
    for r in tsv(run / "gpu.tsv"):
        label = ("GPU 0", "device memory in use") if r["what"] == "gpu0" else (
            f"pid {r['pid']}", "device memory") if r["what"] == "process" else None
        if label:
            series[label].append((float(r["seconds"]), float(r["used_mib"])))
    ok, lines = True, []
    for (who, measure), samples in sorted(series.items()):
        settled = [mib for secs, mib in samples if secs >= SOAK_SETTLED_SECS]
        if len(settled) < 2:
            continue
        first, last = settled[0], settled[-1]
        bound = first + SOAK_DEVICE_GROWTH_MIB
        held = last <= bound
        ok &= held
        lines.append(f"| {who} | {measure} | {first:.0f} MiB | {last:.0f} MiB | ≤ {bound:.0f} MiB | "
                     f"{'held' if held else '**broken**'} |")
    return ok, lines, len(series.get(("GPU 0", "device memory in use"), []))


def main(root):
    runs = sorted(p for p in Path(root).iterdir() if (p / "splatfleet.toml").exists())
    if not runs:
        # A run that failed before writing its config (a missing binary, say) is no result.
        print(f"no run under {root} got as far as its configuration: nothing to report")
        return 1
    ok = True
    print("| run | gaussians | workers | models/s through the gate | attempts in window | "
          "device MiB per worker | pulled | lost | duplicate | attempt errors | ERROR lines |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    stage_rows = []
    for run in runs:
        db = dbname(run)
        g = int((run / "gaussians").read_text()) if (run / "gaussians").exists() else 0
        w = int((run / "workers").read_text()) if (run / "workers").exists() else 0
        try:
            rate, n, secs = throughput(db)
            stages = stage_table(db)
            attempt_errors, log_errors = errors(run, db)
        except (RuntimeError, IndexError, ValueError) as err:
            print(f"| {run.name} | {g} | {w} | no data: {err} |")
            ok = False
            continue
        mem, how = device_memory(run, max(w, 1))
        pulled, lost, dups = lost_and_duplicates(run)
        ok &= lost == 0 and dups == 0 and attempt_errors == 0 and log_errors == 0
        mem_text = f"{mem:.0f} ({how})" if mem is not None else how
        print(f"| {run.name} | {g} | {w} | {rate:.2f} | {n} in {secs:.0f} s | {mem_text} | "
              f"{pulled} | {lost} | {dups} | {attempt_errors} | {log_errors} |")
        cells = []
        for stage in STAGES:
            c = stages.get(stage)
            cells.append(f"{c[1]:.0f} / {c[2]:.0f}" if c else "–")
        pub = publish_quantiles(run)
        cells.append(f"{pub[0] * 1000:.1f} / {pub[1] * 1000:.1f}" if pub else "–")
        stage_rows.append(f"| {run.name} | " + " | ".join(cells) + " |")
    print()
    print("Per-stage time inside the worker, p50 / p99 in ms (decode = PLY parse; publish from "
          "histogram buckets):")
    print()
    print("| run | " + " | ".join(STAGES) + " | publish |")
    print("|---" * (len(STAGES) + 2) + "|")
    for row in stage_rows:
        print(row)
    for run in runs:
        if run.name.startswith("soak"):
            held, lines, samples = soak_bounds(run)
            ok &= held
            print()
            print(f"Soak {run.name}: {samples} device samples; bound from {SOAK_SETTLED_SECS} s "
                  f"to the end: device memory ≤ +{SOAK_DEVICE_GROWTH_MIB} MiB (the host's: "
                  f"soak_report.py, below)")
            print()
            print("| what | measure | settled | end | bound | |")
            print("|---|---|---|---|---|---|")
            for line in lines:
                print(line)
    print()
    print("all bounds held" if ok else "SOME BOUND FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_fleet/runs"))
