"""The Celery baseline of the broker-path benchmark (ops/BENCH.md): the same durable two-hop
hand-off as splatfleet's task and result queues, built the way Celery builds it.

    producer --work--> [<id>.tasks, quorum] --> worker (one task at a time)
    worker   --submit--> [<id>.results, quorum] --> submitter worker --> PostgreSQL
                                                   (database result backend, one row per task)

Every publish is persistent and waits for the broker's confirm (``confirm_publish``); both
queues are quorum queues; both tasks ack late (after ``work`` has published its ``submit``,
after ``submit``'s result row is committed), prefetch 1 per process. ``work`` does nothing
but hand a payload of the size of a text TaskMsg on; ``submit`` returns the timestamps,
which the database backend stores. Configured by environment: BENCH_ID (queue prefix),
BENCH_DB (database name), BENCH_AMQP.
"""

import os
import time

from celery import Celery
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu import Exchange, Queue

# With quorum queues Celery >= 5.5 turns on "native delayed delivery" for ETA/countdown tasks,
# which declares 28 celery_delayed_* queues and exchanges, unprefixed, on the shared broker.
# This pipeline sends no ETA tasks: leave that bootstep out.
DelayedDelivery.include_if = lambda self, consumer: False

BENCH_ID = os.environ.get("BENCH_ID", "celbench")
TASKS = f"{BENCH_ID}.tasks"
RESULTS = f"{BENCH_ID}.results"
QUORUM = {"x-queue-type": "quorum"}

app = Celery(
    "celery_pipeline",
    broker=os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="db+postgresql+psycopg2://postgres@127.0.0.1:5432/"
    + os.environ.get("BENCH_DB", "celbench"),
)
app.conf.update(
    task_queues=[
        Queue(TASKS, Exchange(TASKS, type="direct"), routing_key=TASKS, queue_arguments=QUORUM),
        Queue(RESULTS, Exchange(RESULTS, type="direct"), routing_key=RESULTS, queue_arguments=QUORUM),
    ],
    task_routes={
        "celery_pipeline.work": {"queue": TASKS, "routing_key": TASKS},
        "celery_pipeline.submit": {"queue": RESULTS, "routing_key": RESULTS},
    },
    broker_transport_options={"confirm_publish": True},
    task_default_delivery_mode="persistent",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_extended=False,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    database_create_tables_at_setup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="celery_pipeline.work", ignore_result=True)
def work(task):
    """The GPU worker's hop: start, (no generation), publish the result (confirmed), ack."""
    started = time.time()
    result = dict(task)
    result["work_started"] = started
    result["work_done"] = time.time()
    submit.apply_async(args=[result])
    return None


@app.task(name="celery_pipeline.submit")
def submit(result):
    """The submitter's hop: its return value is written to PostgreSQL by the result backend."""
    result = dict(result)
    result["submit_started"] = time.time()
    result.pop("prompt", None)
    return result
