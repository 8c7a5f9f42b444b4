#!/usr/bin/env bash
# The GPU fleet, end to end, on one GPU (issue 23; results in ops/BENCH.md). On a bare machine
# with an NVIDIA GPU, CUDA's driver and python3 with torch, from the repository root:
#
#   ops/bench/gpu_fleet_pack.sh                 # here, with Rust: fills .devbin .devpkg .whl
#   ops/bench/gpu_fleet.sh                      # there: everything, then the report
#
# What it does, each step skipped when already done on this machine:
#   services  unpacks .devpkg/bin.tar.xz into .devbin and .devpkg/services.tar.xz into
#             $WORK/pkg, and starts a private PostgreSQL
#             (as nobody, trust auth, synchronous_commit off) and RabbitMQ on 127.0.0.1's
#             default ports, as the fault suite starts its private nodes
#   models    writes the validator's scorer models at their real sizes with random weights,
#             through the libraries that define them (kernels/bench: transformers' DINOv2,
#             open_clip's convnext_large_d, LLM2CLIP's ViT-L/14-336), into $WORK/models
#   sweep     for each --sizes S (gaussians) and --workers W: ops/demo.sh with W workers on
#             GPU 0 (require_gpu, gate_mode validator at 16 views of 518, threshold 0 and margin
#             -0.05 so the random-weight models' scores of 0 pass: a task is one attempt, its
#             views downloaded for the preview as a real pass's are), one cached generation service serving an object-shaped
#             model of S gaussians, --validators simulated validators at --time-scale (more
#             tasks offered than the GPU finishes), for --secs seconds
#   soak      --soak-secs at 4 workers and --soak-size, host and device memory sampled every
#             30 s; `soak-start` runs it detached (setsid) and `soak-wait` waits for it, for a
#             device tool that limits one command to 10 minutes
#   report    ops/bench/gpu_fleet_report.py over every run in $WORK/runs into $OUT/report.md
#
#   ops/bench/gpu_fleet.sh [STEP...] [--sizes "200000 500000 1000000"] [--workers "1 2 4"]
#       [--secs 40] [--validators 96] [--time-scale 120] [--soak-secs 600]
#       [--soak-size 500000]
# STEP is any of services models sweep soak soak-start soak-wait report (default: all but the
# soak-start/soak-wait pair, in that order). OUT (default /tmp/gpu_fleet_out) and WORK (default
# /tmp/gpu_fleet) place the report and the runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
OUT=${OUT:-/tmp/gpu_fleet_out}
WORK=${WORK:-/tmp/gpu_fleet}
SIZES="200000 500000 1000000"
WORKER_COUNTS="1 2 4"
SECS=40
VALIDATORS=96
TIME_SCALE=120
SOAK_SECS=600
SOAK_SIZE=500000
STEPS=()
say() { printf 'gpu_fleet: %s\n' "$*"; }
die() { printf 'gpu_fleet: error: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) SIZES=${2:?}; shift 2 ;;
        --workers) WORKER_COUNTS=${2:?}; shift 2 ;;
        --secs) SECS=${2:?}; shift 2 ;;
        --validators) VALIDATORS=${2:?}; shift 2 ;;
        --time-scale) TIME_SCALE=${2:?}; shift 2 ;;
        --soak-secs) SOAK_SECS=${2:?}; shift 2 ;;
        --soak-size) SOAK_SIZE=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        services|models|sweep|soak|soak-start|soak-wait|report) STEPS+=("$1"); shift ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ ${#STEPS[@]} -gt 0 ] || STEPS=(services models sweep soak report)
mkdir -p "$OUT" "$WORK/runs"
PKG=$WORK/pkg
# Ports of the private services (the defaults, on the bare device; others to try it beside
# running services); demo.sh is pointed at them.
PG_PORT=${GPU_FLEET_PG_PORT:-5432}
AMQP_PORT=${GPU_FLEET_AMQP_PORT:-5672}
EPMD_PORT=${GPU_FLEET_EPMD_PORT:-4369}
export SPLATFLEET_TEST_PG_PORT=$PG_PORT PGPORT=$PG_PORT
export SPLATFLEET_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
export SPLATFLEET_PTX_CACHE=$WORK/ptx
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- services -------------------------------------------------------------------------------
pg_bin() { ls -d "$PKG"/usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1; }
service_env() { # the environment the carried servers and psql run in
    export LD_LIBRARY_PATH=$PKG/lib
    export PATH=$(pg_bin):$PKG/usr/lib/erlang/bin:$PKG/usr/lib/rabbitmq/bin:$PATH
}
as_nobody() {
    if command -v runuser >/dev/null; then runuser -u nobody -- "$@"
    else setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; fi
}
start_services() {
    # Any one missing (a .devbin carried for the kernel checks holds only the worker) means
    # unpacking them all: they are one build.
    local b missing=
    for b in splatfleet-puller splatfleet-worker splatfleet-submitter splatfleet-sim; do
        [ -x ".devbin/$b" ] || missing=1
    done
    if [ -n "$missing" ]; then
        [ -f .devpkg/bin.tar.xz ] || die ".devpkg/bin.tar.xz missing: run ops/bench/gpu_fleet_pack.sh here and carry .devpkg"
        mkdir -p .devbin && xz -dc .devpkg/bin.tar.xz | tar -C .devbin -xf - || die "unpacking the binaries failed"
    fi
    if [ ! -d "$PKG/usr/lib/erlang" ]; then
        [ -f .devpkg/services.tar.xz ] || die ".devpkg/services.tar.xz missing: run ops/bench/gpu_fleet_pack.sh here and carry .devpkg"
        mkdir -p "$PKG"
        xz -dc .devpkg/services.tar.xz | tar -C "$PKG" -xf - || die "unpacking the services failed"
        # Erlang's launch scripts name their root; point them at the private prefix.
        for erl in "$PKG"/usr/lib/erlang/bin/erl "$PKG"/usr/lib/erlang/erts-*/bin/erl \
            "$PKG"/usr/lib/erlang/bin/start "$PKG"/usr/lib/erlang/erts-*/bin/start; do
            [ -f "$erl" ] && sed -i "s|ROOTDIR=/usr/lib/erlang|ROOTDIR=$PKG/usr/lib/erlang|" "$erl"
        done
    fi
    service_env
    if ! port_open $PG_PORT; then
        local data=$WORK/pgdata
        if [ ! -d "$data" ]; then
            mkdir -p "$data" && chown nobody "$data" "$WORK" 2>/dev/null
            chmod 755 "$WORK"
            as_nobody "$(pg_bin)/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-sync \
                >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; die "initdb failed"; }
        fi
        mkdir -p "$WORK/pgsock" && chown nobody "$WORK/pgsock"
        as_nobody env LD_LIBRARY_PATH="$LD_LIBRARY_PATH" "$(pg_bin)/pg_ctl" -D "$data" -w \
            -l "$WORK/pgsock/postgres.log" -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 \
            -c max_connections=200 -c synchronous_commit=off -c jit=off" start \
            || { tail -20 "$WORK/pgsock/postgres.log"; die "PostgreSQL did not start"; }
    fi
    if ! port_open $AMQP_PORT; then
        local dir=$WORK/rabbit
        mkdir -p "$dir/log" "$dir/mnesia"
        printf '[].\n' >"$dir/enabled_plugins"
        printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users = none\n' $AMQP_PORT >"$dir/rabbitmq.conf"
        : >"$dir/rabbitmq-env.conf"
        HOME=$dir RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf \
            RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_MNESIA_BASE=$dir/mnesia \
            RABBITMQ_LOG_BASE=$dir/log RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
            ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000)) setsid rabbitmq-server >"$dir/server.log" 2>&1 </dev/null &
        for _ in $(seq 120); do port_open $AMQP_PORT && break; sleep 1; done
        port_open $AMQP_PORT || { tail -30 "$dir/server.log"; die "RabbitMQ did not start"; }
    fi
    say "PostgreSQL on :$PG_PORT and RabbitMQ on :$AMQP_PORT are up"
}

# --- models ---------------------------------------------------------------------------------
CLIP_DIR=CLIP-convnext_large_d.laion2B-s26B-b102K-augreg
make_models() {
    local m=$WORK/models
    if [ -f "$m/.complete" ]; then say "models already in $m"; return 0; fi
    say "writing real-size random-weight models into $m"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/py" .whl/*.whl >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; die "pip failed"; }
    export PYTHONPATH=$WORK/py HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
    rm -rf "$m" && mkdir -p "$m/$CLIP_DIR" "$WORK/img"
    python3 kernels/bench/scorer_reference.py make-models "$m" || die "quality models"
    python3 kernels/bench/alignment_compare.py clipreal --out "$m/$CLIP_DIR" --seed 1 || die "CLIP model"
    python3 kernels/bench/alignment_compare.py vocab --out "$m/$CLIP_DIR" || die "CLIP vocabulary"
    # The script writes the model, then scores views (its outlier filter needs six or more).
    python3 -c "from PIL import Image; [Image.new('RGB', (64, 64), (30 * i, 90, 160)).save('$WORK/img/v%d.png' % i) for i in range(8)]"
    python3 kernels/bench/llm2clip_reference.py --out "$m" --size real --seed 1 \
        --prompt "$WORK/img/v0.png" --views "$WORK"/img/v*.png \
        >/dev/null || die "LLM2CLIP model"
    touch "$m/.complete"
    du -sh "$m"
}

# --- one fleet run --------------------------------------------------------------------------
run_fleet() { # run_fleet NAME SIZE WORKERS SECS SAMPLE_SECS
    local name=$1 size=$2 workers=$3 secs=$4 sample=$5 run=$WORK/runs/$1
    rm -rf "$run"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1 >"$WORK/baseline_$name"
    say "run $name: $workers worker(s) on GPU 0, $size gaussians, ${secs}s"
    ops/demo.sh --no-dev-up --bin-dir .devbin --run-dir "$run" --duration "$secs" \
        --validators "$VALIDATORS" --time-scale "$TIME_SCALE" --workers "$workers" --gpus 1 \
        --gaussians "$size" --cached-generator --models "$WORK/models" --threshold 0 --margin -0.05 \
        --render-size 518 --require-gpu --score-by-size --sample-secs "$sample" \
        >"$WORK/runs/$name.log" 2>&1
    local status=$?
    mv "$WORK/baseline_$name" "$run/gpu_baseline_mib" 2>/dev/null
    # Also when demo.sh stopped before it made the run directory.
    mkdir -p "$run"
    printf '%s\n' "$size" >"$run/gaussians"; printf '%s\n' "$workers" >"$run/workers"
    tail -3 "$WORK/runs/$name.log"
    [ "$status" -eq 0 ] || say "run $name failed (exit $status; $WORK/runs/$name.log)"
}

for step in "${STEPS[@]}"; do
    case $step in
        services) start_services ;;
        models) make_models ;;
        sweep)
            service_env
            for size in $SIZES; do
                for w in $WORKER_COUNTS; do run_fleet "g${size}_w$w" "$size" "$w" "$SECS" 10; done
            done ;;
        soak) service_env; run_fleet "soak_g${SOAK_SIZE}_w4" "$SOAK_SIZE" 4 "$SOAK_SECS" 30 ;;
        soak-start)
            service_env
            setsid bash "$0" soak --soak-secs "$SOAK_SECS" --soak-size "$SOAK_SIZE" \
                --validators "$VALIDATORS" --time-scale "$TIME_SCALE" \
                >"$WORK/soak.out" 2>&1 </dev/null &
            echo $! >"$WORK/soak.pid"
            say "soak started detached (pid $(cat "$WORK/soak.pid"); $WORK/soak.out)" ;;
        soak-wait)
            pid=$(cat "$WORK/soak.pid" 2>/dev/null)
            while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 5; done
            tail -5 "$WORK/soak.out" ;;
        report)
            service_env
            python3 ops/bench/gpu_fleet_report.py "$WORK/runs" | tee "$OUT/report.md"
            for soak in "$WORK"/runs/soak*/; do
                [ -f "$soak/resources.tsv" ] || continue
                python3 ops/bench/soak_report.py "$soak" | tee -a "$OUT/report.md"
            done
            tar -C "$WORK/runs" -czf "$OUT/runs.tar.gz" --exclude='artifacts' --exclude='models' \
                --exclude='keys' . 2>/dev/null ;;
    esac
done
