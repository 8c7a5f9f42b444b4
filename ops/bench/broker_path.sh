#!/usr/bin/env bash
# Broker-path benchmark (issue 10; results and how to read them in ops/BENCH.md): splatfleet
# end to end with zero-time generation beside a durable Celery pipeline, 1/2/4 workers, in one
# run. Builds the release binaries, installs Celery into target/bench-venv when missing, then
# runs ops/bench/broker_path.py (its --help lists the knobs) and prints a Markdown table.
#
#   ops/bench/broker_path.sh                      # 3 repetitions, 20 s windows
#   ops/bench/broker_path.sh --reps 1 --duration 10 --workers 1
#
# Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust); every run uses its own queue prefix and database and removes them after.
set -euo pipefail
cd "$(dirname "$0")/../.."

CELERY_VERSION="${CELERY_VERSION:-5.7.0}"
VENV=target/bench-venv

cargo build --release --quiet -p splatfleet-puller -p splatfleet-worker -p splatfleet-submitter \
    -p splatfleet-tests --bin splatfleet-puller --bin splatfleet-worker \
    --bin splatfleet-submitter --bin splatfleet-sim

if ! "$VENV/bin/python" -c "import celery, sqlalchemy, psycopg2" 2>/dev/null; then
    echo "installing Celery ${CELERY_VERSION}, SQLAlchemy and psycopg2 into ${VENV}" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "celery==${CELERY_VERSION}" "sqlalchemy>=2,<3" "psycopg2-binary>=2.9,<3"
fi

exec "$VENV/bin/python" ops/bench/broker_path.py "$@"
