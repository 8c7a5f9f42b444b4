#!/usr/bin/env bash
# Soak (issue 10; results in ops/BENCH.md): the demo fleet at full speed for an hour, then a
# report of each process's memory at start and end, errors in the logs, and the database's and
# queues' sizes, each against a stated bound (ops/bench/soak_report.py). Exit 0 only when every
# bound held.
#
#   ops/bench/soak.sh                     # 3600 s, 32 validators at 60x, samples every 30 s
#   ops/bench/soak.sh --duration 600      # a shorter run; any other flag goes to ops/demo.sh
#
# "Full speed": 32 simulated validators at 60x offer ~6 tasks/s, more than the two CPU-gated
# workers of the demo finish, so the workers stay busy and the puller keeps its backlog full.
# The run directory is target/soak/<UTC time>; its database is dropped after the report
# unless --keep-db is given. Needs what ops/demo.sh needs.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=3600
KEEP_DB=0
PASS=()
while [ $# -gt 0 ]; do
    case $1 in
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --keep-db) KEEP_DB=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) PASS+=("$1"); shift ;;
    esac
done

RUN=${SOAK_RUN_DIR:-target/soak/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$(dirname "$RUN")"
status=0
ops/demo.sh --release --validators 32 --time-scale 60 --sample-secs 30 \
    --duration "$DURATION" --run-dir "$RUN" "${PASS[@]}" || status=$?
[ -f "$RUN/resources.tsv" ] || { echo "soak: the fleet never started (see $RUN/logs)" >&2; exit 1; }
report_status=0
python3 ops/bench/soak_report.py "$RUN" || report_status=$?
if [ "$KEEP_DB" -eq 0 ] && [ -f "$RUN/splatfleet.toml" ]; then
    db=$(sed -n 's/^dbname = "\(.*\)"$/\1/p' "$RUN/splatfleet.toml")
    [ -z "$db" ] || psql -h "${SPLATFLEET_TEST_PG_HOST:-127.0.0.1}" -p "${SPLATFLEET_TEST_PG_PORT:-5432}" \
        -U "${SPLATFLEET_TEST_PG_USER:-postgres}" -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
fi
[ "$status" -eq 0 ] || { echo "soak: the fleet run failed (exit $status; see $RUN/logs)" >&2; exit "$status"; }
exit "$report_status"
