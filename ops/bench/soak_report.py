#!/usr/bin/env python3
"""Soak report (ops/bench/soak.sh): reads a demo run directory sampled with --sample-secs and
checks it against the soak's bounds, printing Markdown; exit 1 when a bound failed.

Bounds (stated before the run, in ops/BENCH.md), for the fleet's roles (puller, workers,
submitter; the simulated validators and generators are reported, not bounded):
- memory: each process's resident set at the end is at most 1.25x its size at the reference
  point (5 minutes in, or a fifth of a shorter run) plus 16 MiB;
- threads and open files at the end at most the reference + 8 (nothing leaks per task);
- no log line at ERROR level from any process;
- the dead-letter queue stays empty; no task left open after the drain;
- the database grows by a steady amount per task (reported, not bounded).
"""
import collections
import csv
import json
import os
import re
import subprocess
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def mib(kib):
    return kib / 1024.0


def slope_per_hour(points):
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return float("nan")
    sxy = sum((p[0] - mx) * (p[1] - my) for p in points)
    return sxy / sxx * 3600.0


def is_test_double(process):
    return process == "validators" or process.startswith("generator")


def bound_text(bounded, ok, bound_kib):
    if not bounded:
        return "— (test double)"
    return f"≤ {mib(bound_kib):.1f} {'ok' if ok else '**FAIL**'}"


def log_levels(path):
    """Counts of ERROR and WARN lines, and the commonest messages of each."""
    counts = collections.Counter()
    messages = {"ERROR": collections.Counter(), "WARN": collections.Counter()}
    try:
        f = open(path, errors="replace")
    except OSError:
        return counts, messages
    with f:
        for line in f:
            level, message = None, None
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                    level = str(record.get("level", "")).upper()
                    fields = record.get("fields", {})
                    message = str(fields.get("message", record.get("message", "")))
                except ValueError:
                    pass
            if level is None:
                m = re.search(r"\b(ERROR|WARN)\b", line)
                if m:
                    level, message = m.group(1), line.strip()[:120]
            if level in ("ERROR", "WARN"):
                counts[level] += 1
                messages[level][message[:120]] += 1
    return counts, messages


def psql(dbname, sql):
    cmd = ["psql", "-h", os.environ.get("SPLATFLEET_TEST_PG_HOST", "127.0.0.1"),
           "-p", os.environ.get("SPLATFLEET_TEST_PG_PORT", "5432"),
           "-U", os.environ.get("SPLATFLEET_TEST_PG_USER", "postgres"),
           "-d", dbname, "-Atqc", sql]
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: soak_report.py RUN_DIR")
    run = sys.argv[1]
    failures = []
    out = []
    resources = read_tsv(os.path.join(run, "resources.tsv"))
    if not resources:
        sys.exit(f"soak_report: no samples in {run}/resources.tsv")
    summary = {}
    if os.path.exists(os.path.join(run, "summary.env")):
        for line in open(os.path.join(run, "summary.env")):
            k, _, v = line.strip().partition("=")
            summary[k] = v
    end_t = max(int(r["seconds"]) for r in resources)
    ref_t = min(300, end_t // 5)

    by_proc = collections.defaultdict(list)
    for r in resources:
        by_proc[r["process"]].append(r)
    out.append(f"Run directory: `{run}`; {end_t} s sampled, reference point {ref_t} s.\n")
    out.append("| process | RSS at start (MiB) | at reference | at end | max | growth after reference | bound | trend after reference (MiB/h) | CPU (s) | threads ref→end | open files ref→end |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in by_proc.items():
        rows.sort(key=lambda r: int(r["seconds"]))
        first, last = rows[0], rows[-1]
        ref = next((r for r in rows if int(r["seconds"]) >= ref_t), first)
        rss = lambda r: int(r["rss_kib"])
        bound_kib = rss(ref) * 1.25 + 16 * 1024
        growth = rss(last) - rss(ref)
        trend = slope_per_hour([(int(r["seconds"]), mib(rss(r))) for r in rows if int(r["seconds"]) >= ref_t])
        cpu = int(last["cpu_ticks"]) / CLK_TCK
        # The simulated validators and generators stand in for the outside world (the sim
        # validators keep every task they handed out, by design): reported, not bounded.
        bounded = not is_test_double(name)
        ok = rss(last) <= bound_kib or not bounded
        th_ok = int(last["threads"]) <= int(ref["threads"]) + 8 or not bounded
        fd_ok = int(last["open_files"]) <= int(ref["open_files"]) + 8 or not bounded
        if not ok:
            failures.append(f"{name}: RSS {mib(rss(last)):.1f} MiB at the end, over the bound {mib(bound_kib):.1f} MiB")
        if not th_ok:
            failures.append(f"{name}: threads grew {ref['threads']} -> {last['threads']}")
        if not fd_ok:
            failures.append(f"{name}: open files grew {ref['open_files']} -> {last['open_files']}")
        out.append(
            f"| {name} | {mib(rss(first)):.1f} | {mib(rss(ref)):.1f} | {mib(rss(last)):.1f} | "
            f"{mib(max(rss(r) for r in rows)):.1f} | {mib(growth):+.1f} MiB ({100.0 * growth / max(rss(ref), 1):+.1f} %) | "
            f"{bound_text(bounded, ok, bound_kib)} | {trend:+.2f} | {cpu:.1f} | "
            f"{ref['threads']}→{last['threads']} | {ref['open_files']}→{last['open_files']} |")

    out.append("\nLog lines at ERROR and WARN level:\n")
    out.append("| process | ERROR | WARN | commonest warnings |")
    out.append("|---|---:|---:|---|")
    for log in sorted(os.listdir(os.path.join(run, "logs"))):
        counts, messages = log_levels(os.path.join(run, "logs", log))
        name = log[:-4] if log.endswith(".log") else log
        top = "; ".join(f"{m} ×{n}" for m, n in messages["WARN"].most_common(3)) or "—"
        out.append(f"| {name} | {counts['ERROR']} | {counts['WARN']} | {top} |")
        if counts["ERROR"]:
            failures.append(f"{name}: {counts['ERROR']} ERROR lines, e.g. {messages['ERROR'].most_common(1)[0][0]}")

    db = read_tsv(os.path.join(run, "database.tsv"))
    if db:
        first, last = db[0], db[-1]
        dt = int(last["tasks"]) - int(first["tasks"])
        dbytes = int(last["database_bytes"]) - int(first["database_bytes"])
        out.append("\nDatabase (first sample → last, after the drain):\n")
        out.append(f"- size {int(first['database_bytes']) / 2**20:.1f} → {int(last['database_bytes']) / 2**20:.1f} MiB "
                   f"for {first['tasks']} → {last['tasks']} tasks"
                   + (f" ({dbytes / dt / 1024:.1f} KiB per task)" if dt > 0 else ""))
        left_open = int(summary.get("tasks_open", last["open_tasks"]) or 0)
        out.append(f"- attempts {last['attempts']}, submissions {last['submissions']}; "
                   f"open tasks: max {max(int(r['open_tasks']) for r in db)}, after the drain {left_open}")
        if left_open != 0:
            failures.append(f"{left_open} tasks still open after the drain")
        half = [r for r in db if int(r["seconds"]) >= end_t // 2]
        if len(half) >= 2 and int(half[-1]["tasks"]) > int(half[0]["tasks"]) and dt > 0:
            late = (int(half[-1]["database_bytes"]) - int(half[0]["database_bytes"])) / (int(half[-1]["tasks"]) - int(half[0]["tasks"]))
            out.append(f"- second half alone: {late / 1024:.1f} KiB per task")
    dbname = None
    cfg = os.path.join(run, "splatfleet.toml")
    if os.path.exists(cfg):
        m = re.search(r'^dbname = "(.*)"$', open(cfg).read(), re.M)
        dbname = m.group(1) if m else None
    if dbname:
        tables = psql(dbname, "SELECT relname, n_live_tup, pg_total_relation_size(relid) FROM pg_stat_user_tables ORDER BY 3 DESC")
        if tables.strip():
            out.append("\n| table | rows | size (MiB) |\n|---|---:|---:|")
            for line in tables.strip().splitlines():
                t, rows, size = line.split("|")
                out.append(f"| {t} | {rows} | {int(size) / 2**20:.2f} |")

    queues = read_tsv(os.path.join(run, "queues.tsv"))
    if queues:
        out.append("\nQueues (ready messages, from the puller's gauges):\n")
        out.append("| queue | max | mean | last sample |\n|---|---:|---:|---:|")
        byq = collections.defaultdict(list)
        for r in queues:
            byq[r["queue"]].append(int(float(r["ready"])))
        for q, vals in sorted(byq.items()):
            out.append(f"| {q} | {max(vals)} | {sum(vals) / len(vals):.1f} | {vals[-1]} |")
            if q.endswith(".dead") and max(vals) > 0:
                failures.append(f"dead-letter queue {q} held {max(vals)} messages")

    artifacts = os.path.join(run, "artifacts")
    if os.path.isdir(artifacts):
        total = 0
        files = 0
        for root, _, names in os.walk(artifacts):
            for n in names:
                files += 1
                total += os.path.getsize(os.path.join(root, n))
        tasks = int(summary.get("tasks_submitted", "0") or 0)
        out.append(f"\nObject store: {files} files, {total / 2**30:.2f} GiB"
                   + (f" ({total / tasks / 1024:.0f} KiB per submitted task)" if tasks else ""))
    if summary:
        secs = int(summary.get("run_seconds", "0") or 0)
        sub = int(summary.get("tasks_submitted", "0") or 0)
        out.append(f"\nTasks: pulled {summary.get('tasks_pulled')}, submitted {sub} "
                   f"({summary.get('tasks_submitted_empty')} empty), accepted {summary.get('tasks_accepted')}"
                   + (f"; {sub / secs:.2f} tasks/s over {secs} s" if secs else ""))

    out.append("\n**Bounds: " + ("all held**" if not failures else "FAILED**\n" + "\n".join(f"- {f}" for f in failures)))
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(run, "soak.md"), "w") as f:
        f.write(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
