#!/usr/bin/env python3
"""Broker-path benchmark (issue 10, ops/BENCH.md): splatfleet end to end with zero-time
generation beside a durable Celery pipeline, in the same run, 1/2/4 workers.

splatfleet side, per run (fresh database, queue prefix, object store):
    splatfleet-sim validators (V validators, time scale 1e6 so cooldowns are ~0, scored by
    payload size so every result is accepted; optionally --task-rate R) ->
    splatfleet-puller -> <prefix>.tasks -> N x splatfleet-worker (slots 1, gate_mode
    validity_only, splatfleet-sim generator --cached: one 7,000-gaussian PLY at once) ->
    <prefix>.results -> splatfleet-submitter -> SubmitResults to the sim validators + Postgres.
    Tasks/s: submissions completed per second in the measured window. Latency:
    pull -> worker start = attempts.started_at (attempt 1) - tasks.pulled_at;
    worker done -> submit start = submissions.sent_at - submissions.result_finished_at.

Celery side (ops/bench/celery_pipeline.py): a producer publishing `work` tasks (confirms,
persistent, quorum queue; keeping the ready backlog under the same cap as the puller) ->
N worker processes (threads pool, concurrency 1, late ack, prefetch 1) each publishing a `submit` task (confirmed) ->
one submitter worker (threads pool) whose results the database backend writes to Postgres.
Latency: work start - publish start; submit start - work done.

Each (workers, side) is run at full speed (max rate), then the latencies are measured at half
of that rate (the sim's --task-rate for splatfleet, the producer's pacing for Celery). Runs
are interleaved (splatfleet, Celery, splatfleet, Celery) and repeated; medians are reported.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
from kombu import Connection

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
WORK = ROOT / "target" / "bench-broker-path"
AMQP = os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
AMQP_RUST = os.environ.get("BENCH_AMQP_RUST", "amqp://guest:guest@127.0.0.1:5672/%2f")
# BENCH_PG_PORT points the bench at another PostgreSQL, such as a private one started with
# shared_preload_libraries = pg_stat_statements for --statements.
PG = dict(host="127.0.0.1", port=int(os.environ.get("BENCH_PG_PORT", "5432")), user="postgres")
TICK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- infrastructure helpers


def pg_connect(dbname="postgres"):
    conn = psycopg2.connect(dbname=dbname, **PG)
    conn.autocommit = True
    return conn


def create_db(name):
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def drop_db(name):
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def delete_broker_objects(queues, exchanges):
    with Connection(AMQP) as conn:
        for name in queues:
            try:
                conn.default_channel.queue_delete(name)
            except Exception as err:  # noqa: BLE001 - best-effort cleanup
                log("queue_delete", name, err)
                conn.close()
                conn.connect()
        for name in exchanges:
            try:
                conn.default_channel.exchange_delete(name)
            except Exception as err:  # noqa: BLE001
                log("exchange_delete", name, err)
                conn.close()
                conn.connect()


def queue_ready(conn, name):
    """Ready messages in a queue (passive declare)."""
    _, count, _ = conn.default_channel.queue_declare(name, passive=True)
    return count


class Processes:
    """Children started by a run, stopped in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self, logs):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = []

    def start(self, name, cmd, env=None):
        out = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def wait_line(self, name, needle, timeout=60.0):
        path = self.logs / f"{name}.log"
        end = time.time() + timeout
        while time.time() < end:
            text = path.read_text(errors="replace") if path.exists() else ""
            for line in text.splitlines():
                if needle in line:
                    return line
            proc = dict(self.procs)[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name}: no line with {needle!r} within {timeout}s")

    def check_alive(self):
        for name, proc in self.procs:
            if proc.poll() is not None:
                text = (self.logs / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{name} exited ({proc.returncode}): {text[-2000:]}")

    def stop(self, names=None, timeout=20.0):
        targets = [(n, p) for n, p in reversed(self.procs) if names is None or n in names]
        for _, proc in targets:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.time() + timeout
        for name, proc in targets:
            try:
                proc.wait(timeout=max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time; killing it")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def proc_cpu_secs(pid):
    """utime + stime of one process (all its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def child_pids(parent):
    """Direct children of a process (a prefork pool's processes)."""
    try:
        tasks = Path(f"/proc/{parent}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


def named_cpu_secs(comms):
    """CPU seconds of every process whose comm is in `comms` (RabbitMQ, PostgreSQL)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm in comms:
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_busy():
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def db_counters(dbname):
    """Commits and rows touched in one database (pg_stat_database; updated by the server
    within a few hundred ms)."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT xact_commit, tup_returned, tup_fetched,
                          tup_inserted + tup_updated + tup_deleted
                   FROM pg_stat_database WHERE datname = %s""", (dbname,))
            row = cur.fetchone() or (0, 0, 0, 0)
    finally:
        conn.close()
    return dict(zip(("commits", "rows_scanned", "rows_fetched", "rows_written"), map(int, row)))


def statements_reset(conn):
    """Clears pg_stat_statements when the server loads it (--statements); False otherwise."""
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cur.execute("SELECT pg_stat_statements_reset()")
        return True
    except psycopg2.Error as err:
        log("--statements: pg_stat_statements is not loaded by this server:", str(err).strip())
        return False


def table_counters(conn):
    """Per table: rows read by sequential scans and fetched by index scans (cumulative)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT relname, coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0)
                       FROM pg_stat_user_tables""")
        return {name: (int(seq), int(idx)) for name, seq, idx in cur.fetchall()}


def statements_read(conn, tasks):
    """Calls and rows per completed task of every statement the fleet ran in its database,
    and the index-scan rows (pg_stat_user_tables) behind pg_stat_database's tup_fetched."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT calls, rows, regexp_replace(query, '\\s+', ' ', 'g')
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
               WHERE d.datname = current_database() ORDER BY calls DESC""")
        rows = cur.fetchall()
    per = max(tasks, 1)
    return [{"calls_per_task": c / per, "rows_per_task": r / per, "query": q[:160]}
            for c, r, q in rows]


class CpuMeter:
    """CPU seconds per component over the measured window."""

    def __init__(self, groups, children_of=None, dbname=None):
        self.groups = groups  # name -> list of pids
        self.children_of = children_of or {}  # name -> pid whose children count too
        self.dbname = dbname

    def snapshot(self):
        snap = {name: sum(proc_cpu_secs(p) for p in pids) for name, pids in self.groups.items()}
        for name, parent in self.children_of.items():
            snap[name] += sum(proc_cpu_secs(c) for c in child_pids(parent))
        snap["rabbitmq"] = named_cpu_secs({"beam.smp"})
        snap["postgres"] = named_cpu_secs({"postgres"})
        snap["_machine"] = machine_busy()
        if self.dbname:
            snap["_db"] = db_counters(self.dbname)
        return snap

    @staticmethod
    def diff(before, after, seconds):
        out = {k: after[k] - before[k] for k in after if not k.startswith("_")}
        busy = after["_machine"][0] - before["_machine"][0]
        total = after["_machine"][1] - before["_machine"][1]
        out["machine_busy_pct"] = 100.0 * busy / max(total, 1)
        out["machine_cores_busy"] = busy / TICK / seconds
        if "_db" in after:
            for key, value in after["_db"].items():
                out[f"db_{key}"] = value - before["_db"][key]
        return out


def pct(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summarise(hop1, hop2):
    return {
        "hop1_p50_ms": pct(hop1, 50),
        "hop1_p99_ms": pct(hop1, 99),
        "hop2_p50_ms": pct(hop2, 50),
        "hop2_p99_ms": pct(hop2, 99),
        "samples": len(hop1),
    }


# ---------------------------------------------------------------- splatfleet


class Splatfleet:
    name = "splatfleet"
    puller = RELEASE / "splatfleet-puller"

    def __init__(self, args, counter):
        self.args = args
        self.run_id = f"{os.getpid()}x{counter}"
        self.db = f"sfbench_{self.run_id}"
        self.prefix = f"sfbench-{self.run_id}"
        self.dir = WORK / f"sf-{self.run_id}"
        self.keys = WORK / "keys"
        self.procs = Processes(self.dir / "logs")

    def config(self, workers, generator_url, port_base):
        a = self.args
        endpoints = ", ".join(f'"{generator_url}"' for _ in range(workers))
        return f"""
[log]
level = "{a.log_level}"
format = "json"
[broker]
url = "{AMQP_RUST}"
prefix = "{self.prefix}"
[database]
port = {PG["port"]}
dbname = "{self.db}"
pool_max_size = {a.pool_size}
[puller]
metrics_addr = "127.0.0.1:{port_base}"
tick_ms = {a.tick_ms}
backlog_factor = {a.backlog_factor}
max_concurrent_pulls = {a.max_pulls}
cooldown_margin_ms = 0
[worker]
metrics_addr = "127.0.0.1:{port_base + 1}"
generation_endpoints = [{endpoints}]
gate_mode = "validity_only"
require_gpu = false
slots = 1
[submitter]
metrics_addr = "127.0.0.1:{port_base + 2}"
concurrency = {a.submitter_concurrency}
[object_store]
root = "{self.dir / 'artifacts'}"
[wallet]
path = "{self.keys}"
name = "miner"
hotkey = "default"
[discovery]
source = "static"
validators_file = "{self.keys / 'validators.toml'}"
"""

    def run(self, workers, rate):
        a = self.args
        self.dir.mkdir(parents=True, exist_ok=True)
        create_db(self.db)
        try:
            return self._run(workers, rate)
        finally:
            self.procs.stop()
            drop_db(self.db)
            p = self.prefix
            delete_broker_objects(
                [f"{p}.tasks", f"{p}.results", f"{p}.dead"], [p, f"{p}.dlx"]
            )
            if not a.keep:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, workers, rate):
        a = self.args
        sim = RELEASE / "splatfleet-sim"
        cmd = [sim, "validators", "--count", a.validators, "--base-port", "0",
               "--keys-dir", self.keys, "--time-scale", "1000000", "--score-by-size",
               "--score-reference-bytes", "1000", "--score-noise", "0",
               "--image-fraction", "0"]
        if rate:
            cmd += ["--task-rate", f"{rate:.3f}"]
        sim_validators = self.procs.start("validators", cmd)
        self.procs.wait_line("validators", "validator list:")
        generator = self.procs.start(
            "generator", [sim, "generator", "--port", "0", "--cached", "--gaussians", "7000"])
        url = self.procs.wait_line("generator", "generator listening on").split()[-1]
        port_base = 20000 + (os.getpid() % 2000) * 10
        config = self.dir / "splatfleet.toml"
        config.write_text(self.config(workers, url, port_base))
        env = {"RUST_LOG": a.log_level}
        fleet = []
        fleet.append(self.procs.start(
            "submitter", [RELEASE / "splatfleet-submitter", "--config", config], env))
        worker_pids = []
        for gpu in range(workers):
            worker = self.procs.start(
                f"worker{gpu}",
                [RELEASE / "splatfleet-worker", "--config", config, "--gpu", gpu],
                {**env, "SPLATFLEET__WORKER__METRICS_ADDR": f"127.0.0.1:{port_base + 3 + gpu}"})
            worker_pids.append(worker.pid)
        for gpu in range(workers):
            self.procs.wait_line(f"worker{gpu}", '"ready"')
        self.procs.wait_line("submitter", '"ready"')
        puller = self.procs.start("puller", [self.puller, "--config", config], env)
        meter = CpuMeter({
            "validators (sim)": [sim_validators.pid],
            "generator (sim)": [generator.pid],
            "puller": [puller.pid],
            "workers": worker_pids,
            "submitter": [dict(self.procs.procs)["submitter"].pid],
        }, dbname=self.db)
        conn = pg_connect(self.db)
        try:
            first_deadline = time.time() + 90
            while True:
                self.procs.check_alive()
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*) FROM submissions WHERE state = 'completed'")
                        if cur.fetchone()[0] > 0:
                            break
                except psycopg2.Error:
                    pass  # schema not there yet
                if time.time() > first_deadline:
                    raise RuntimeError("no submission completed within 90 s")
                time.sleep(0.2)
            time.sleep(a.warmup)
            with conn.cursor() as cur:
                cur.execute("SELECT extract(epoch FROM clock_timestamp())")
                t0 = float(cur.fetchone()[0])
            statements = a.statements and statements_reset(conn)
            tables0 = table_counters(conn) if statements else {}
            cpu0 = meter.snapshot()
            time.sleep(a.duration)
            with conn.cursor() as cur:
                cur.execute("SELECT extract(epoch FROM clock_timestamp())")
                t1 = float(cur.fetchone()[0])
            cpu1 = meter.snapshot()
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM submissions WHERE state = 'completed' "
                            "AND completed_at > to_timestamp(%s) AND completed_at <= to_timestamp(%s)",
                            (t0, t1))
                window_tasks = cur.fetchone()[0]
            per_statement = statements_read(conn, window_tasks) if statements else []
            if statements:
                # pg_stat_user_tables lags by up to the stats flush interval, as db_counters does.
                time.sleep(1.0)
                with conn.cursor() as cur:
                    cur.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                "WHERE datname = current_database()")
                    log("  xact_commit, xact_rollback now:", cur.fetchone())
                for name, (seq, idx) in sorted(table_counters(conn).items()):
                    seq0, idx0 = tables0.get(name, (0, 0))
                    per = max(window_tasks, 1)
                    log(f"  table {name}: {(seq - seq0) / per:8.2f} rows seq-scanned, "
                        f"{(idx - idx0) / per:6.2f} fetched by index per task")
            for st in per_statement:
                log(f"  {st['calls_per_task']:7.3f} calls {st['rows_per_task']:7.3f} rows per task: {st['query']}")
            self.procs.check_alive()
            with conn.cursor() as cur:
                cur.execute(
                    """SELECT extract(epoch FROM (a.started_at - t.pulled_at)) * 1000,
                              extract(epoch FROM (s.sent_at - s.result_finished_at)) * 1000,
                              s.empty, s.task_fidelity_score
                       FROM submissions s JOIN tasks t ON t.id = s.task_id
                       JOIN attempts a ON a.task_id = t.id AND a.attempt_no = 1
                       WHERE s.state = 'completed'
                         AND s.completed_at > to_timestamp(%s) AND s.completed_at <= to_timestamp(%s)""",
                    (t0, t1),
                )
                rows = cur.fetchall()
                cur.execute(
                    """SELECT count(*) FILTER (WHERE s.state = 'completed' AND NOT s.empty
                                                  AND s.task_fidelity_score > 0),
                              count(*) FILTER (WHERE s.empty),
                              count(*) FILTER (WHERE s.state <> 'completed')
                       FROM submissions s""")
                accepted, empty, unfinished = cur.fetchone()
        finally:
            conn.close()
        seconds = t1 - t0
        hop1 = [float(r[0]) for r in rows]
        hop2 = [float(r[1]) for r in rows]
        result = {
            "tasks_per_s": len(rows) / seconds,
            "seconds": seconds,
            "accepted_total": accepted,
            "empty_total": empty,
            "unfinished_total": unfinished,
            "cpu": CpuMeter.diff(cpu0, cpu1, seconds),
        }
        if per_statement:
            result["statements"] = per_statement
        result.update(summarise(hop1, hop2))
        return result


# ---------------------------------------------------------------- Celery


class CeleryPipeline:
    name = "celery"

    def __init__(self, args, counter):
        self.args = args
        self.run_id = f"{os.getpid()}x{counter}"
        self.db = f"celbench_{self.run_id}"
        self.bench_id = f"celbench-{self.run_id}"
        self.dir = WORK / f"cel-{self.run_id}"
        self.procs = Processes(self.dir / "logs")

    def env(self):
        return {
            "BENCH_ID": self.bench_id,
            "BENCH_DB": self.db,
            "BENCH_AMQP": AMQP,
            "PYTHONPATH": str(ROOT / "ops" / "bench"),
        }

    def run(self, workers, rate):
        self.dir.mkdir(parents=True, exist_ok=True)
        create_db(self.db)
        try:
            return self._run(workers, rate)
        finally:
            self.procs.stop()
            drop_db(self.db)
            b = self.bench_id
            delete_broker_objects([f"{b}.tasks", f"{b}.results"], [f"{b}.tasks", f"{b}.results"])
            if not self.args.keep:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, workers, rate):
        a = self.args
        # The module reads BENCH_* at import: (re)import it with this run's names.
        os.environ.update(self.env())
        if str(ROOT / "ops" / "bench") not in sys.path:
            sys.path.insert(0, str(ROOT / "ops" / "bench"))
        import importlib  # noqa: PLC0415

        import celery_pipeline  # noqa: PLC0415

        celery_pipeline = importlib.reload(celery_pipeline)
        app = celery_pipeline.app
        celery = Path(sys.executable).parent / "celery"
        common = [celery, "-A", "celery_pipeline", "worker", "--loglevel", "WARNING",
                  "--without-gossip", "--without-mingle", "--without-heartbeat"]
        submitter = self.procs.start(
            "submitter",
            common + ["-Q", celery_pipeline.RESULTS, "--pool", a.celery_submitter_pool,
                      "--concurrency", a.celery_submitter_concurrency,
                      "-n", f"sub-{self.run_id}@%h"],
            self.env())
        worker_pids = []
        for i in range(workers):
            worker = self.procs.start(
                f"worker{i}",
                # One task at a time per process, as a splatfleet worker with slots = 1. (The
                # solo pool stalls for 10 s at a time on quorum queues here; threads -c 1
                # does not.)
                common + ["-Q", celery_pipeline.TASKS, "--pool", "threads", "--concurrency", "1",
                          "-n", f"w{i}-{self.run_id}@%h"],
                self.env())
            worker_pids.append(worker.pid)
        # Declare the queues (the workers do too) and wait for their consumers.
        with Connection(AMQP) as conn:
            for q in app.conf.task_queues:
                q.bind(conn.default_channel).declare()
            deadline = time.time() + 60
            while True:
                self.procs.check_alive()
                _, _, consumers_t = conn.default_channel.queue_declare(
                    celery_pipeline.TASKS, passive=True)
                _, _, consumers_r = conn.default_channel.queue_declare(
                    celery_pipeline.RESULTS, passive=True)
                if consumers_t >= workers and consumers_r >= 1:
                    break
                if time.time() > deadline:
                    raise RuntimeError("Celery workers did not start consuming within 60 s")
                time.sleep(0.2)
        meter = CpuMeter({"workers": worker_pids, "submitter": [submitter.pid]},
                         children_of={"submitter": submitter.pid}, dbname=self.db)
        producer = Producer(workers, rate, a)
        producer.start()
        conn = pg_connect(self.db)
        try:
            deadline = time.time() + 90
            while True:
                self.procs.check_alive()
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*) FROM celery_taskmeta")
                        if cur.fetchone()[0] > 0:
                            break
                except psycopg2.Error:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("no Celery result within 90 s")
                time.sleep(0.2)
            time.sleep(a.warmup)
            t0 = time.time()
            cpu0 = meter.snapshot()
            cpu0_producer = producer.cpu()
            time.sleep(a.duration)
            t1 = time.time()
            cpu1 = meter.snapshot()
            cpu1_producer = producer.cpu()
            self.procs.check_alive()
            producer.stop()
            with conn.cursor() as cur:
                cur.execute("SELECT result FROM celery_taskmeta WHERE status = 'SUCCESS'")
                rows = cur.fetchall()
        finally:
            producer.stop()
            conn.close()
        hop1, hop2 = [], []
        for (blob,) in rows:
            r = decode_result(blob)
            done = r["submit_started"]
            if t0 < done <= t1:
                hop1.append((r["work_started"] - r["pulled_at"]) * 1000)
                hop2.append((r["submit_started"] - r["work_done"]) * 1000)
        seconds = t1 - t0
        cpu = CpuMeter.diff(cpu0, cpu1, seconds)
        cpu["producer (harness)"] = cpu1_producer - cpu0_producer
        result = {
            "tasks_per_s": len(hop1) / seconds,
            "seconds": seconds,
            "published": producer.published,
            "cpu": cpu,
        }
        result.update(summarise(hop1, hop2))
        return result


def decode_result(blob):
    """A celery_taskmeta.result value: the result as the result serializer (JSON) wrote it."""
    return json.loads(bytes(blob))


class Producer:
    """The Celery side's puller: publishes `work` tasks with confirms from several threads,
    keeping ready tasks under workers x backlog_factor (the puller's capacity rule), or paced
    to `rate` tasks/s. Runs in a child process so its CPU is measured apart."""

    def __init__(self, workers, rate, args):
        self.args = args
        self.workers = workers
        self.rate = rate
        self.stop_file = WORK / f"producer-stop-{os.getpid()}-{time.time_ns()}"
        self.count_file = self.stop_file.with_suffix(".count")
        self.proc = None
        self.published = 0

    def start(self):
        script = ROOT / "ops" / "bench" / "celery_producer.py"
        cmd = [sys.executable, script, "--workers", self.workers,
               "--backlog-factor", self.args.backlog_factor,
               "--threads", self.args.producer_threads,
               "--stop-file", self.stop_file, "--count-file", self.count_file]
        if self.rate:
            cmd += ["--rate", f"{self.rate:.3f}"]
        self.proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "ops" / "bench")})

    def cpu(self):
        return proc_cpu_secs(self.proc.pid) if self.proc else 0.0

    def stop(self):
        if self.proc is None:
            return
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.published = int(self.count_file.read_text())
        except (OSError, ValueError):
            pass
        self.stop_file.unlink(missing_ok=True)
        self.count_file.unlink(missing_ok=True)
        self.proc = None


# ---------------------------------------------------------------- driver


def versions():
    out = {"python": platform.python_version()}
    try:
        import celery  # noqa: PLC0415
        import kombu  # noqa: PLC0415
        import sqlalchemy  # noqa: PLC0415

        out.update(celery=celery.__version__, kombu=kombu.__version__,
                   sqlalchemy=sqlalchemy.__version__)
    except ImportError:
        pass
    conn = pg_connect()
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        out["postgresql"] = cur.fetchone()[0]
    conn.close()
    with Connection(AMQP) as conn:
        conn.connect()
        props = conn.connection.server_properties
        v = props.get("version")
        out["rabbitmq"] = v.decode() if isinstance(v, bytes) else v
    out["nproc"] = os.cpu_count()
    out["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def table(results, workers_list, sides):
    lines = [
        "| workers | side | tasks/s (max) | runs | pull→worker start p50 / p99 ms | worker done→submit start p50 / p99 ms | at rate |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for n in workers_list:
        per_side = {}
        for side in sides:
            maxes = [r["max"]["tasks_per_s"] for r in results if r["workers"] == n and r["side"] == side]
            halves = [r["half"] for r in results if r["workers"] == n and r["side"] == side and r.get("half")]
            per_side[side] = median(maxes)
            lat = lambda key: median([h[key] for h in halves])  # noqa: E731
            rate = median([h["rate"] for h in halves])
            lines.append(
                f"| {n} | {side} | {median(maxes):.0f} ({', '.join(f'{m:.0f}' for m in maxes)}) | {len(maxes)} | "
                f"{lat('hop1_p50_ms'):.1f} / {lat('hop1_p99_ms'):.1f} | "
                f"{lat('hop2_p50_ms'):.1f} / {lat('hop2_p99_ms'):.1f} | {rate:.0f}/s |")
        if "splatfleet" in per_side and per_side.get("celery"):
            ratios.append((n, per_side["splatfleet"] / per_side["celery"]))
    lines.append("")
    lines.append("| workers | splatfleet ÷ Celery tasks/s (medians) |")
    lines.append("|---:|---:|")
    for n, ratio in ratios:
        lines.append(f"| {n} | {ratio:.2f}× |")
    return "\n".join(lines)


def cpu_table(results, workers_list):
    lines = ["| workers | side | component | CPU ms per task, or count per task (max-rate runs, median) |",
             "|---:|---|---|---:|"]
    for n in workers_list:
        for side in ("splatfleet", "celery"):
            runs = [r["max"] for r in results if r["workers"] == n and r["side"] == side]
            if not runs:
                continue
            keys = [k for k in runs[0]["cpu"] if not k.startswith(("machine", "db_"))]
            for k in keys:
                per_task = [1000.0 * r["cpu"][k] / max(r["tasks_per_s"] * r["seconds"], 1) for r in runs]
                lines.append(f"| {n} | {side} | {k} | {median(per_task):.2f} |")
            busy = median([r["cpu"]["machine_cores_busy"] for r in runs])
            lines.append(f"| {n} | {side} | whole machine, cores busy | {busy:.2f} |")
            for k in ("db_commits", "db_rows_fetched", "db_rows_written"):
                per_task = [r["cpu"].get(k, 0) / max(r["tasks_per_s"] * r["seconds"], 1) for r in runs]
                lines.append(f"| {n} | {side} | {k[3:].replace('_', ' ')} per task (its database) | {median(per_task):.1f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0, help="measured window per run, s")
    p.add_argument("--warmup", type=float, default=5.0, help="after the first result, s")
    p.add_argument("--validators", type=int, default=128)
    p.add_argument("--tick-ms", type=int, default=5)
    p.add_argument("--backlog-factor", type=float, default=8.0)
    p.add_argument("--max-pulls", type=int, default=64)
    p.add_argument("--pool-size", type=int, default=16)
    p.add_argument("--submitter-concurrency", type=int, default=8)
    p.add_argument("--producer-threads", type=int, default=8)
    p.add_argument("--celery-submitter-pool", default="prefork",
                   help="prefork: pooled database connections; threads: one per result")
    p.add_argument("--celery-submitter-concurrency", type=int, default=2)
    p.add_argument("--log-level", default="info")
    p.add_argument("--sides", default="splatfleet,celery",
                   help="comma-separated: splatfleet, celery, splatfleet-b (with --ab-puller)")
    p.add_argument("--ab-puller", type=Path,
                   help="another splatfleet-puller binary, run as side splatfleet-b")
    p.add_argument("--no-half", action="store_true", help="skip the half-rate latency runs")
    p.add_argument("--keep", action="store_true", help="keep run directories (logs)")
    p.add_argument("--statements", action="store_true",
                   help="per-statement calls and rows per task from pg_stat_statements (a server "
                        "that preloads it, e.g. a private one on BENCH_PG_PORT)")
    p.add_argument("--json", type=Path, default=WORK / "results.json")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    workers_list = [int(x) for x in args.workers.split(",")]
    sides = {"splatfleet": Splatfleet, "celery": CeleryPipeline}
    if args.ab_puller:
        # A/B of a puller change: the same fleet with another puller binary, run beside.
        sides["splatfleet-b"] = type("SplatfleetB", (Splatfleet,), {
            "name": "splatfleet-b", "puller": args.ab_puller.resolve()})
    chosen = [sides[s] for s in args.sides.split(",")]
    info = versions()
    info["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    log("versions", info)
    results = []
    counter = 0
    for rep in range(args.reps):
        for n in workers_list:
            for side in chosen:
                counter += 1
                log(f"rep {rep + 1}/{args.reps}: {side.name}, {n} worker(s), max rate")
                entry = {"rep": rep, "workers": n, "side": side.name}
                entry["max"] = side(args, counter).run(n, None)
                log("  ->", json.dumps({k: v for k, v in entry["max"].items() if k != "cpu"}))
                log("  cpu", json.dumps({k: round(v, 2) for k, v in entry["max"]["cpu"].items()}))
                results.append(entry)
            if args.no_half:
                continue
            for side in chosen:
                counter += 1
                maxes = [r["max"]["tasks_per_s"] for r in results if r["workers"] == n and r["side"] == side.name]
                rate = median(maxes) / 2.0
                log(f"rep {rep + 1}/{args.reps}: {side.name}, {n} worker(s), half rate {rate:.1f}/s")
                half = side(args, counter).run(n, rate)
                half["rate"] = rate
                log("  ->", json.dumps({k: v for k, v in half.items() if k != "cpu"}))
                entry = next(r for r in results if r["workers"] == n and r["side"] == side.name and r["rep"] == rep)
                entry["half"] = half
            args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
    print(f"## Broker path, {info['started']}\n")
    print(f"Versions and machine: {json.dumps({k: v for k, v in info.items() if k != 'args'})}\n")
    print(f"Settings: {json.dumps(info['args'])}\n")
    print(table(results, workers_list, [s.name for s in chosen]))
    print()
    print(cpu_table(results, workers_list))


if __name__ == "__main__":
    main()
