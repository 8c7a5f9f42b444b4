"""The Celery baseline's producer (the puller's part): publishes `work` tasks, each with the
time its publish started, persistent and confirmed, from several threads. At full speed it
keeps the ready backlog of the tasks queue under workers x backlog_factor (checked every
5 ms, as the puller's capacity rule); with --rate it paces publishes evenly. Stops when the
stop file appears and writes how many tasks it published into the count file."""

import argparse
import os
import threading
import time
from pathlib import Path

from kombu import Connection

import celery_pipeline


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--backlog-factor", type=float, required=True)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--rate", type=float)
    p.add_argument("--stop-file", type=Path, required=True)
    p.add_argument("--count-file", type=Path, required=True)
    args = p.parse_args()
    limit = max(1, int(args.workers * args.backlog_factor))
    stop = threading.Event()
    room = threading.Event()
    room.set()
    lock = threading.Lock()
    state = {"published": 0, "next": time.monotonic()}
    interval = 1.0 / args.rate if args.rate else 0.0
    # A text TaskMsg's worth of payload: ids, validator address, prompt, thresholds.
    prompt = "a small wooden chair with a red cushion, studio lighting, " * 2

    def monitor():
        with Connection(os.environ["BENCH_AMQP"]) as conn:
            channel = conn.default_channel
            while not stop.is_set():
                _, ready, _ = channel.queue_declare(celery_pipeline.TASKS, passive=True)
                if ready + args.threads <= limit or args.rate:
                    room.set()
                else:
                    room.clear()
                if args.stop_file.exists():
                    stop.set()
                time.sleep(0.005)

    def publisher(index):
        n = 0
        while not stop.is_set():
            if interval:
                with lock:
                    slot = max(state["next"], time.monotonic())
                    state["next"] = slot + interval
                delay = slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            elif not room.wait(timeout=0.1):
                continue
            if stop.is_set():
                break
            n += 1
            task = {
                "task_id": f"t{index}-{n}",
                "validator": {"uid": index, "hotkey": "5" + "F" * 47, "ip": "127.0.0.1", "port": 9100},
                "kind": "text",
                "prompt": prompt,
                "validation_threshold": 0.6,
                "throttle_period_secs": 30,
                "pulled_at": time.time(),
            }
            celery_pipeline.work.apply_async(args=[task])
            with lock:
                state["published"] += 1

    threads = [threading.Thread(target=monitor, daemon=True)]
    threads += [threading.Thread(target=publisher, args=(i,), daemon=True) for i in range(args.threads)]
    for t in threads:
        t.start()
    while not stop.is_set():
        time.sleep(0.05)
    for t in threads[1:]:
        t.join(timeout=10)
    args.count_file.write_text(str(state["published"]))


if __name__ == "__main__":
    main()
