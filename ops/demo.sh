#!/usr/bin/env bash
# The one-command demo: a whole fleet on this machine against simulated validators.
#
#   ops/demo.sh [--tasks N] [--timeout SECS] [--profile release|debug] [--no-build]
#               [--run-dir DIR] [--drop-db]
#               [--duration SECS] [--validators N] [--time-scale X] [--sample-secs N]
#               [--workers N] [--gpus N] [--gaussians N] [--cached-generator]
#               [--models DIR] [--threshold X] [--margin X] [--render-size PX] [--require-gpu]
#               [--score-by-size] [--bin-dir DIR] [--no-dev-up]
#
# It runs ops/dev-up.sh, builds the binaries, then starts as separate processes, all reading
# one generated config in a run directory (target/demo/<UTC time>/, every process's log there):
#   splatfleet-sim validators   8 simulated SN17 validators, time scaled 60x (5 s cooldowns)
#   splatfleet-sim generator    x2, the sample generation service, one per "GPU"
#   splatfleet-puller           pulls tasks from the validators
#   splatfleet-worker --gpu 0   and --gpu 1: generate, gate (CUDA when present, else the CPU
#                               reference renderer), store artifacts, publish results
# The workers gate in gate_mode = "validator" (the validator's own score on their renders) with
# tiny random-weight models written once per run (splatfleet-sim models --tiny RUN/models) and a
# demo threshold those models' scores of the sample generator's answers meet (DEMO_THRESHOLD).
#   splatfleet-submitter        signs and submits, records feedback in PostgreSQL
# It shows progress until N tasks have a completed submission or the time limit passes, stops
# the puller, lets the tasks in flight finish, prints the acceptance report and the contact
# sheets' directory, and stops every process it started (also on Ctrl-C). Exit 0 only when N
# tasks were done; 1 otherwise (the logs say why).
#
# Each run uses its own queue prefix (demo_<time>) and its own database (splatfleet_demo_<time>);
# the database is kept for inspection unless --drop-db is given, the queues and exchanges are
# deleted.
#
# The run directory also gets summary.env (the counts, for scripts), report.txt, and
# metrics/<process>.prom, each role's /metrics as scraped at the end of the run.
#
# Long runs (ops/bench/soak.sh): --duration SECS runs the fleet for that long instead of up to a
# task count (exit 0 when every process stayed up throughout); --validators and --time-scale
# change the simulated network (default 8 at 60x); --sample-secs N appends, every N seconds,
# each process's memory, CPU time, threads and open files to resources.tsv, the database's size
# and row counts to database.tsv, and this run's queue depths to queues.tsv.
#
# The GPU fleet bench (ops/bench/gpu_fleet.sh): --workers N worker processes (default 2) over
# --gpus G GPUs (default one per worker; worker i runs --gpu i%G, one generation service per
# GPU), --gaussians N per generated model (--cached-generator: one model written once, served
# at once), --models DIR (real-size models instead of the tiny ones) with --threshold X and
# --margin X ([worker.scorer]; a negative margin passes random-weight models that score 0), the
# gate at --render-size PX (default 128, 48 in debug), --require-gpu, --score-by-size (the
# simulated validators score by payload size, not by decoding the SPZ), binaries from
# --bin-dir DIR (no build), and --no-dev-up when RabbitMQ and PostgreSQL are already up. With
# --sample-secs and nvidia-smi present, gpu.tsv gets the device's memory and each process's.
#
# Environment: DEMO_TASKS, DEMO_TIMEOUT_SECS, DEMO_PROFILE (same as the flags), DEMO_THRESHOLD
# ([worker.scorer] threshold of the tiny models, default 0.55), CARGO_TARGET_DIR,
# SPLATFLEET_TEST_PG_{HOST,PORT,USER,PASSWORD} and SPLATFLEET_TEST_AMQP_URL (where PostgreSQL and
# RabbitMQ are; defaults: ops/dev-up.sh's on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

TASKS=${DEMO_TASKS:-40}
TIMEOUT=${DEMO_TIMEOUT_SECS:-}
PROFILE=${DEMO_PROFILE:-release}
BUILD=1
DROP_DB=0
RUN=
VALIDATORS=8
TIME_SCALE=60
GAUSSIANS=8000
# [worker.scorer] threshold for the tiny random-weight models: measured on the sample
# generator's 8 k-gaussian answers, their predicted scores lie at about 0.64-0.70 (16 views at
# 48 and 128 px); pass at threshold + margin (0.05) = 0.60. The real validator's is 0.6.
DEMO_THRESHOLD=${DEMO_THRESHOLD:-0.55}
DEMO_MARGIN=0.05
DURATION=0
SAMPLE_SECS=0
WORKERS=2
GPUS=
MODELS=
RENDER_SIZE=
REQUIRE_GPU=false
SCORE_BY_SIZE=0
CACHED_GENERATOR=0
DEV_UP=1
BIN=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        --tasks) TASKS=${2:?--tasks needs a number}; shift 2 ;;
        --tasks=*) TASKS=${1#*=}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --profile) PROFILE=${2:?--profile needs release or debug}; shift 2 ;;
        --profile=*) PROFILE=${1#*=}; shift ;;
        --release) PROFILE=release; shift ;;
        --debug) PROFILE=debug; shift ;;
        --no-build) BUILD=0; shift ;;
        --run-dir) RUN=${2:?--run-dir needs a directory}; shift 2 ;;
        --run-dir=*) RUN=${1#*=}; shift ;;
        --drop-db) DROP_DB=1; shift ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --validators) VALIDATORS=${2:?--validators needs a number}; shift 2 ;;
        --validators=*) VALIDATORS=${1#*=}; shift ;;
        --time-scale) TIME_SCALE=${2:?--time-scale needs a number}; shift 2 ;;
        --time-scale=*) TIME_SCALE=${1#*=}; shift ;;
        --sample-secs) SAMPLE_SECS=${2:?--sample-secs needs seconds}; shift 2 ;;
        --sample-secs=*) SAMPLE_SECS=${1#*=}; shift ;;
        --workers) WORKERS=${2:?--workers needs a number}; shift 2 ;;
        --gpus) GPUS=${2:?--gpus needs a number}; shift 2 ;;
        --gaussians) GAUSSIANS=${2:?--gaussians needs a number}; shift 2 ;;
        --cached-generator) CACHED_GENERATOR=1; shift ;;
        --models) MODELS=${2:?--models needs a directory}; shift 2 ;;
        --threshold) DEMO_THRESHOLD=${2:?--threshold needs a number}; shift 2 ;;
        --margin) DEMO_MARGIN=${2:?--margin needs a number}; shift 2 ;;
        --render-size) RENDER_SIZE=${2:?--render-size needs pixels}; shift 2 ;;
        --require-gpu) REQUIRE_GPU=true; shift ;;
        --score-by-size) SCORE_BY_SIZE=1; shift ;;
        --bin-dir) BIN=${2:?--bin-dir needs a directory}; BUILD=0; shift 2 ;;
        --no-dev-up) DEV_UP=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $TASKS =~ ^[1-9][0-9]*$ ]] || die "--tasks must be a positive number, not '$TASKS'"
[[ $DURATION =~ ^[0-9]+$ ]] || die "--duration must be a number of seconds, not '$DURATION'"
[[ $VALIDATORS =~ ^[1-9][0-9]*$ ]] || die "--validators must be a positive number, not '$VALIDATORS'"
[[ $TIME_SCALE =~ ^[1-9][0-9]*$ ]] || die "--time-scale must be a positive whole number, not '$TIME_SCALE'"
[[ $SAMPLE_SECS =~ ^[0-9]+$ ]] || die "--sample-secs must be a number of seconds, not '$SAMPLE_SECS'"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number, not '$WORKERS'"
[ -n "$GPUS" ] || GPUS=$WORKERS
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus must be a positive number, not '$GPUS'"
[[ $GAUSSIANS =~ ^[1-9][0-9]*$ ]] || die "--gaussians must be a positive number, not '$GAUSSIANS'"
[ -z "$RENDER_SIZE" ] || [[ $RENDER_SIZE =~ ^[1-9][0-9]*$ ]] || die "--render-size must be a positive number of pixels, not '$RENDER_SIZE'"
[ -z "$MODELS" ] || [ -d "$MODELS" ] || die "--models $MODELS is not a directory"
# About 1.5 tasks a second come from 8 validators with 5 s cooldowns; leave room for a slow machine.
[ -n "$TIMEOUT" ] || TIMEOUT=$((120 + TASKS * 3))
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$TIMEOUT'"
case $PROFILE in
    release) CARGO_PROFILE_ARGS=(--release); PROFILE_DIR=release ;;
    debug|dev) CARGO_PROFILE_ARGS=(); PROFILE_DIR=debug ;;
    *) die "--profile must be release or debug, not '$PROFILE'" ;;
esac

say() { printf 'demo: %s\n' "$*"; }

PG_HOST=${SPLATFLEET_TEST_PG_HOST:-127.0.0.1}
PG_PORT=${SPLATFLEET_TEST_PG_PORT:-5432}
PG_USER=${SPLATFLEET_TEST_PG_USER:-postgres}
export PGPASSWORD="${SPLATFLEET_TEST_PG_PASSWORD:-${PGPASSWORD:-}}"
AMQP_URL=${SPLATFLEET_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

# --- services and binaries ----------------------------------------------------------------
[ "$DEV_UP" -eq 0 ] || ops/dev-up.sh
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
[ -n "$BIN" ] || BIN=$TARGET_DIR/$PROFILE_DIR
case $BIN in /*) ;; *) BIN=$REPO/$BIN ;; esac
if [ "$BUILD" -eq 1 ]; then
    command -v cargo >/dev/null || die "cargo not found; install Rust (https://rustup.rs)"
    say "building ($PROFILE): cargo build ${CARGO_PROFILE_ARGS[*]} --locked --bins"
    build_started=$SECONDS
    cargo build "${CARGO_PROFILE_ARGS[@]}" --locked --bins \
        -p splatfleet-puller -p splatfleet-worker -p splatfleet-submitter -p splatfleet-tests
    say "built in $((SECONDS - build_started)) s"
fi
for b in splatfleet-puller splatfleet-worker splatfleet-submitter splatfleet-sim; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing; run without --no-build"
done

# --- the run directory and its names ------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
[ -n "$RUN" ] || RUN=$TARGET_DIR/demo/$STAMP-$$
case $RUN in /*) ;; *) RUN=$REPO/$RUN ;; esac
[ ! -e "$RUN/splatfleet.toml" ] || die "$RUN already holds a run; pick another --run-dir"
mkdir -p "$RUN/logs" "$RUN/metrics"
ID=$(printf '%s_%s' "$STAMP" "$$" | tr '[:upper:]' '[:lower:]')
PREFIX=demo_$ID
DB=splatfleet_demo_$ID

psql_db() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$1" -v ON_ERROR_STOP=1 -Atqc "$2"; }

# --- processes and their cleanup ----------------------------------------------------------
declare -A PIDS=()   # name -> pid
ORDER=()             # names in start order
started_at=$SECONDS

start() { # start NAME COMMAND...: runs COMMAND in the background, logging to logs/NAME.log
    local name=$1; shift
    "$@" >"$RUN/logs/$name.log" 2>&1 &
    PIDS[$name]=$!
    ORDER+=("$name")
}

alive() { kill -0 "$1" 2>/dev/null; }

stop() { # stop NAME [GRACE_SECS]: SIGTERM, wait, SIGKILL if it will not go; prints its status
    local name=$1 grace=${2:-20} pid status
    pid=${PIDS[$name]:-}
    [ -n "$pid" ] || return 0
    unset "PIDS[$name]"
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq $((grace * 10))); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "$name (pid $pid) did not stop within ${grace}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    printf '%s exit %s\n' "$name" "$status" >>"$RUN/exits.txt"
}

cleanup_done=0
cleanup() {
    [ "$cleanup_done" -eq 0 ] || return 0
    cleanup_done=1
    local i
    # Roles first (newest first), then the stand-ins they talk to.
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
        stop "${ORDER[i]}" 20
    done
    # This run's queues and exchanges go; the database stays for queries unless --drop-db.
    SPLATFLEET_TEST_AMQP_URL=$AMQP_URL timeout 30 "$BIN/splatfleet-sim" delete-topology \
        --prefix "$PREFIX" >/dev/null 2>&1 || say "could not delete the queues of prefix $PREFIX"
}
on_exit() {
    cleanup
    if [ "$DROP_DB" -eq 1 ] && [ -n "${DB:-}" ]; then
        psql_db postgres "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
on_signal() {
    trap - INT TERM
    say "interrupted; stopping every process the demo started"
    exit 130
}
trap on_exit EXIT
trap on_signal INT TERM

fail() {
    say "FAILED: $*"
    local name
    for name in "${ORDER[@]}"; do
        printf -- '--- last lines of %s ---\n' "$RUN/logs/$name.log"
        tail -n 5 "$RUN/logs/$name.log" 2>/dev/null || true
    done
    cleanup
    say "run directory: $RUN"
    exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
CHOSEN_PORTS=" "
pick_port() { # pick_port VAR: a port nobody listens on now and not picked before, below
    # Linux's ephemeral range (32768+), where an outgoing connection could hold it by the time
    # the role binds it
    local candidate
    for _ in $(seq 100); do
        candidate=$((20000 + RANDOM % 12000))
        case $CHOSEN_PORTS in *" $candidate "*) continue ;; esac
        port_open "$candidate" && continue
        CHOSEN_PORTS+="$candidate "
        printf -v "$1" '%s' "$candidate"
        return 0
    done
    die "no free port found"
}

wait_for_line() { # wait_for_line NAME PATTERN SECS
    local name=$1 pattern=$2 secs=$3
    for _ in $(seq $((secs * 10))); do
        grep -q -- "$pattern" "$RUN/logs/$name.log" 2>/dev/null && return 0
        alive "${PIDS[$name]}" || fail "$name exited before it was ready (see $RUN/logs/$name.log)"
        sleep 0.1
    done
    fail "$name was not ready within ${secs}s (see $RUN/logs/$name.log)"
}

# scrape PORT: the /metrics text of a role (bash only: a fresh machine may lack curl; HTTP/1.0
# so the answer is neither chunked nor kept open)
scrape() {
    # shellcheck disable=SC2016 # $1 expands in the inner shell
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
        printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        tr -d "\r" <&3 | sed "1,/^\$/d"' scrape "$1" 2>/dev/null || true
}
# metric_sum TEXT NAME [LABEL_REGEX]: sum of every sample of NAME whose labels match
metric_sum() {
    printf '%s\n' "$1" | awk -v name="$2" -v labels="${3:-}" '
        $1 ~ ("^" name "({|$)") && ($1 ~ labels) { sum += $NF }
        END { printf "%d", sum }'
}

# --- the simulated outside world ----------------------------------------------------------
say "run directory $RUN"
say "queue prefix $PREFIX, database $DB"
if [ -z "$MODELS" ]; then
    MODELS=$RUN/models
    "$BIN/splatfleet-sim" models --tiny "$MODELS" >"$RUN/logs/models.log" 2>&1 \
        || die "writing tiny scorer models to $MODELS failed (see $RUN/logs/models.log)"
    say "gate validator mode, tiny random-weight models, demo threshold $DEMO_THRESHOLD (models in $MODELS)"
else
    say "gate validator mode, models in $MODELS, threshold $DEMO_THRESHOLD"
fi
psql_db postgres "CREATE DATABASE \"$DB\"" >/dev/null || die "creating database $DB failed"

KEYS=$RUN/keys
SCORING_ARGS=(--score-reference-gaussians $((GAUSSIANS / 2)))
[ "$SCORE_BY_SIZE" -eq 0 ] || SCORING_ARGS=(--score-by-size)
start validators "$BIN/splatfleet-sim" validators --count "$VALIDATORS" --base-port 0 \
    --keys-dir "$KEYS" --time-scale "$TIME_SCALE" --events "$RUN/validator-events.jsonl" \
    "${SCORING_ARGS[@]}"
wait_for_line validators "validator list:" 60
GEN_ARGS=(--gaussians "$GAUSSIANS")
[ "$CACHED_GENERATOR" -eq 0 ] || GEN_ARGS+=(--cached)
GEN_URLS=()
for ((gpu = 0; gpu < GPUS; gpu++)); do
    start "generator-$gpu" "$BIN/splatfleet-sim" generator --port 0 "${GEN_ARGS[@]}"
    wait_for_line "generator-$gpu" "generator listening on" 30
    GEN_URLS+=("$(sed -n 's/^generator listening on //p' "$RUN/logs/generator-$gpu.log" | head -1)")
done

# --- the config ---------------------------------------------------------------------------
pick_port PULLER_PORT
pick_port SUBMITTER_PORT
WORKER_PORTS=()
for ((w = 0; w < WORKERS; w++)); do pick_port port; WORKER_PORTS+=("$port"); done
# The CPU gate renders 16 views of every model; debug builds render more slowly.
if [ -z "$RENDER_SIZE" ]; then
    if [ "$PROFILE_DIR" = release ]; then RENDER_SIZE=128; else RENDER_SIZE=48; fi
fi
GEN_URL_LIST=$(printf '"%s", ' "${GEN_URLS[@]}")
PG_PASSWORD_LINE=""
[ -z "$PGPASSWORD" ] || PG_PASSWORD_LINE="password = \"$PGPASSWORD\""
CONFIG=$RUN/splatfleet.toml
cat >"$CONFIG" <<EOF
# Generated by ops/demo.sh for the run in this directory; see ops/splatfleet.example.toml.
[log]
level = "info"
format = "json"

[broker]
url = "$AMQP_URL"
prefix = "$PREFIX"
delivery_limit = 5
connect_timeout_secs = 30
reconnect_max_delay_secs = 2

[database]
host = "$PG_HOST"
port = $PG_PORT
user = "$PG_USER"
dbname = "$DB"
$PG_PASSWORD_LINE

[shutdown]
drain_timeout_secs = 15

[puller]
metrics_addr = "127.0.0.1:$PULLER_PORT"
tick_ms = 100
# Validators run 60x faster than real ones: 5 s cooldowns, so a small safety margin.
cooldown_margin_ms = 300
backoff_initial_ms = 1000
backoff_max_ms = 10000
task_deadline_secs = 120
lost_task_grace_secs = 30

[worker]
# --gpu N picks generation_endpoints[N]; the workers' metrics ports are set per process
# (SPLATFLEET__WORKER__METRICS_ADDR) since several run on this host.
generation_endpoints = [${GEN_URL_LIST%, }]
require_gpu = $REQUIRE_GPU
slots = 1
generate_timeout_ms = 20000
min_budget_ms = 20000
# Small renders keep the CPU gate ahead of the validators when no GPU is present.
gate_views = 16
gate_render_size = $RENDER_SIZE
# The validator's own score on the renders, with tiny random-weight models (written above).
gate_mode = "validator"

[worker.scorer]
models_dir = "$MODELS"
# A demo threshold the tiny models' scores meet; the real validator's is 0.6.
threshold = $DEMO_THRESHOLD
margin = $DEMO_MARGIN
# The sample generator's models have 8 k gaussians: let a pass stop the ladder.
sparse_below_gaussians = 0

[submitter]
metrics_addr = "127.0.0.1:$SUBMITTER_PORT"
concurrency = 8
submit_timeout_secs = 30
retry_initial_ms = 500
retry_max_ms = 5000

[object_store]
root = "$RUN/artifacts"

[wallet]
path = "$KEYS"
name = "miner"
hotkey = "default"

[discovery]
source = "static"
validators_file = "$KEYS/validators.toml"
EOF

# --- the fleet ----------------------------------------------------------------------------
export SPLATFLEET_CONFIG=$CONFIG
start submitter "$BIN/splatfleet-submitter" --config "$CONFIG"
for ((w = 0; w < WORKERS; w++)); do
    start "worker-$w" env SPLATFLEET__WORKER__METRICS_ADDR="127.0.0.1:${WORKER_PORTS[w]}" \
        "$BIN/splatfleet-worker" --config "$CONFIG" --gpu $((w % GPUS))
done
wait_for_line submitter '"message":"ready"' 60
for ((w = 0; w < WORKERS; w++)); do wait_for_line "worker-$w" '"message":"ready"' 180; done
start puller "$BIN/splatfleet-puller" --config "$CONFIG"
wait_for_line puller '"message":"ready"' 60
for ((w = 0; w < WORKERS; w++)); do
    backend=$(scrape "${WORKER_PORTS[w]}" | sed -n 's/^splatfleet_worker_gpu_backend{backend="\([a-z]*\)"}.*/\1/p')
    say "worker-$w renders on ${backend:-an unknown backend} on GPU $((w % GPUS)) (generation service ${GEN_URLS[w % GPUS]})"
done
say "fleet up in $((SECONDS - started_at)) s; metrics: puller :$PULLER_PORT, workers :${WORKER_PORTS[*]}, submitter :$SUBMITTER_PORT"

# --- progress -----------------------------------------------------------------------------
COUNTS_SQL="SELECT count(*),
  (SELECT count(*) FROM submissions WHERE state = 'completed'),
  (SELECT count(*) FROM submissions WHERE state = 'completed' AND NOT empty AND task_fidelity_score > 0),
  (SELECT count(*) FROM submissions WHERE state = 'completed' AND empty),
  count(*) FILTER (WHERE status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed'))
FROM tasks"
pulled=0 submitted=0 accepted=0 empties=0 open=0 generated=0
progress() {
    local row text
    row=$(psql_db "$DB" "$COUNTS_SQL" 2>/dev/null) || return 0
    IFS='|' read -r pulled submitted accepted empties open <<<"$row"
    generated=0
    for ((w = 0; w < WORKERS; w++)); do
        text=$(scrape "${WORKER_PORTS[w]}")
        generated=$((generated + $(metric_sum "$text" splatfleet_worker_results_total)))
    done
    printf 'demo: [%4ds] pulled %3d  generated %3d  submitted %3d (empty %d)  accepted %3d  / %s\n' \
        $((SECONDS - run_started)) "$pulled" "$generated" "$submitted" "$empties" "$accepted" "$target"
}
check_alive() {
    local name
    for name in "${ORDER[@]}"; do
        [ -n "${PIDS[$name]:-}" ] || continue
        alive "${PIDS[$name]}" || fail "$name exited during the run (see $RUN/logs/$name.log)"
    done
}

# sample: one row per process in resources.tsv (seconds into the run, name, pid, resident
# KiB, CPU clock ticks so far, threads, open files), one in database.tsv and one per queue of
# this run in queues.tsv (ready messages, from the puller's gauges), for ops/bench/soak.sh.
sample() {
    local t=$((SECONDS - run_started)) name pid rss cpu_threads fds row text
    for name in "${ORDER[@]}"; do
        pid=${PIDS[$name]:-}
        [ -n "$pid" ] || continue
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        [ -n "$rss" ] || continue
        # Fields after the command name's ')': utime and stime are the 12th and 13th, threads the 18th.
        cpu_threads=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{printf "%d\t%d", $12 + $13, $18}')
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$name" "$pid" "$rss" "$cpu_threads" "$fds"
    done >>"$RUN/resources.tsv"
    row=$(psql_db "$DB" "SELECT pg_database_size(current_database()),
        (SELECT count(*) FROM tasks), (SELECT count(*) FROM attempts),
        (SELECT count(*) FROM submissions),
        (SELECT count(*) FROM tasks WHERE status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed'))" \
        2>/dev/null | tr '|' '\t') || row=""
    [ -z "$row" ] || printf '%s\t%s\n' "$t" "$row" >>"$RUN/database.tsv"
    text=$(scrape "$PULLER_PORT")
    printf '%s\n' "$text" | awk -v t="$t" -F'[{}"= ]+' \
        '/^splatfleet_broker_queue_messages_ready\{/ { printf "%s\t%s\t%s\n", t, $3, $NF }' \
        >>"$RUN/queues.tsv"
    # The device's memory in use, and each compute process's where the driver tells it.
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits 2>/dev/null \
            | awk -v t="$t" -F', *' '{ printf "%s\tgpu%s\t-\t%s\n", t, $1, $2 }' >>"$RUN/gpu.tsv"
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
            | awk -v t="$t" -F', *' '$1 ~ /^[0-9]+$/ { printf "%s\tprocess\t%s\t%s\n", t, $1, $2 }' \
            >>"$RUN/gpu.tsv"
    fi
}

run_started=$SECONDS
if [ "$DURATION" -gt 0 ]; then
    deadline=$((SECONDS + DURATION)) progress_every=30 target="${DURATION}s"
    say "running for ${DURATION}s (--duration)"
else
    deadline=$((SECONDS + TIMEOUT)) progress_every=2 target=$TASKS
fi
if [ "$SAMPLE_SECS" -gt 0 ]; then
    printf 'seconds\tprocess\tpid\trss_kib\tcpu_ticks\tthreads\topen_files\n' >"$RUN/resources.tsv"
    printf 'seconds\tdatabase_bytes\ttasks\tattempts\tsubmissions\topen_tasks\n' >"$RUN/database.tsv"
    printf 'seconds\tqueue\tready\n' >"$RUN/queues.tsv"
    printf 'seconds\twhat\tpid\tused_mib\n' >"$RUN/gpu.tsv"
fi
completed=0 last_progress=-1000 last_sample=-1000
while :; do
    if [ "$SAMPLE_SECS" -gt 0 ] && [ $((SECONDS - last_sample)) -ge "$SAMPLE_SECS" ]; then
        last_sample=$SECONDS
        sample
    fi
    sleep 2
    check_alive
    if [ $((SECONDS - last_progress)) -ge "$progress_every" ]; then
        last_progress=$SECONDS
        progress
    fi
    if [ "$DURATION" -eq 0 ] && [ "$submitted" -ge "$TASKS" ]; then completed=1; break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        [ "$DURATION" -eq 0 ] || completed=1
        break
    fi
done

# Every role's metrics as they stand, for the record (ops/test.sh lints them with promtool).
scrape "$PULLER_PORT" >"$RUN/metrics/puller.prom"
for ((w = 0; w < WORKERS; w++)); do scrape "${WORKER_PORTS[w]}" >"$RUN/metrics/worker-$w.prom"; done
scrape "$SUBMITTER_PORT" >"$RUN/metrics/submitter.prom"

# No new pulls; the tasks already pulled finish (their cooldowns would suffer otherwise).
stop puller 20
drain_deadline=$((SECONDS + 45))
while [ "$open" -gt 0 ] && [ "$SECONDS" -lt "$drain_deadline" ]; do
    sleep 2
    check_alive
    progress
done
run_secs=$((SECONDS - run_started))
# The last sample: after the drain, before the processes stop (the puller already has).
[ "$SAMPLE_SECS" -eq 0 ] || sample
cleanup

# --- the report ---------------------------------------------------------------------------
printf '\n'
say "acceptance by validator (splatfleet-submitter report acceptance --since 1d --by validator):"
"$BIN/splatfleet-submitter" --config "$CONFIG" report acceptance --since 1d --by validator \
    | tee "$RUN/report.txt"
"$BIN/splatfleet-submitter" --config "$CONFIG" report acceptance --since 1d --by task-type \
    | tee -a "$RUN/report.txt"
gate_row=$(psql_db "$DB" "SELECT count(*), count(*) FILTER (WHERE gate_passed),
    coalesce(round(min(predicted_score)::numeric, 3)::text, '-'),
    coalesce(round(avg(predicted_score)::numeric, 3)::text, '-'),
    coalesce(round(max(predicted_score)::numeric, 3)::text, '-')
    FROM attempts WHERE gate_mode = 'validator'") || gate_row=""
if [ -n "$gate_row" ]; then
    IFS='|' read -r gated gate_passed p_min p_mean p_max <<<"$gate_row"
    say "gate (validator mode, demo threshold $DEMO_THRESHOLD + margin $DEMO_MARGIN): $gated attempts, $gate_passed passed; predicted score min $p_min, mean $p_mean, max $p_max"
fi
sheets=0
[ -d "$RUN/artifacts/preview" ] && sheets=$(find "$RUN/artifacts/preview" -name '*.png' | wc -l)
row=$(psql_db "$DB" "$COUNTS_SQL")
IFS='|' read -r pulled submitted accepted empties open <<<"$row"
cat >"$RUN/summary.env" <<EOF
tasks_wanted=$TASKS
tasks_pulled=$pulled
tasks_submitted=$submitted
tasks_submitted_empty=$empties
tasks_accepted=$accepted
tasks_open=$open
contact_sheets=$sheets
run_seconds=$run_secs
completed=$completed
EOF
say "contact sheets ($sheets PNGs, 4x4 views each): $RUN/artifacts/preview/"
if [ "$DROP_DB" -eq 1 ]; then db_note="$DB (dropped at exit)"; else db_note=$DB; fi
say "logs: $RUN/logs/   config: $CONFIG   database: $db_note"
say "pulled $pulled, submitted $submitted ($empties empty), accepted $accepted in ${run_secs}s"
if [ "$DURATION" -gt 0 ]; then
    say "done: ran ${DURATION}s with every process up; $submitted tasks submitted"
    exit 0
fi
if [ "$completed" -ne 1 ]; then
    say "FAILED: only $submitted of $TASKS tasks were submitted within ${TIMEOUT}s"
    exit 1
fi
say "done: $TASKS tasks in ${run_secs}s"
