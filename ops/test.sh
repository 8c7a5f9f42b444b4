#!/usr/bin/env bash
# The test command: brings up RabbitMQ, PostgreSQL and promtool (ops/dev-up.sh), then runs
# every workspace test against them, then the ops checks: shell scripts (shellcheck, when
# installed), Prometheus config, alert unit tests (promtool), systemd units
# (systemd-analyze verify, when installed) and the demo itself with a few tasks, whose exit
# status, summary and every role's scraped /metrics (promtool check metrics) are checked.
#
# Extra arguments go to `cargo test` (e.g. a test name filter). SPLATFLEET_TEST_SKIP_DEMO=1
# leaves the demo run out; SPLATFLEET_TEST_DEMO_TASKS sets its size (default 8).
#
# The demo runs the debug binaries `cargo test` has just built (`--profile debug`): a release
# build would add ten minutes on a 2-core CI machine, and what the demo checks (processes,
# queues, records, report) does not depend on the optimisation level; its config renders
# smaller gate views in debug so the unoptimised CPU renderer keeps up.
set -euo pipefail
cd "$(dirname "$0")/.."

ops/dev-up.sh

command -v cargo >/dev/null || { echo "test: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
if cargo fmt --version >/dev/null 2>&1; then
    echo "test: cargo fmt --check"
    cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
    echo "test: cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi
echo "test: cargo test"
cargo test --workspace --locked "$@"

echo "test: ops checks"
if command -v shellcheck >/dev/null; then
    echo "test: shellcheck ops/*.sh"
    shellcheck ops/*.sh .ci/run
fi

echo "test: promtool check config, test rules"
promtool check config ops/prometheus/prometheus.yml
promtool test rules ops/prometheus/tests/*.yml

TARGET_DIR=${CARGO_TARGET_DIR:-target}
if command -v systemd-analyze >/dev/null; then
    echo "test: systemd-analyze verify ops/systemd/*"
    units=$(mktemp -d)
    # verify wants ExecStart's binary to exist: point the units at the ones just built.
    for unit in ops/systemd/*.service; do
        sed "s#/usr/local/bin/\(splatfleet-[a-z]*\)#$(realpath "$TARGET_DIR")/debug/\1#" \
            "$unit" >"$units/$(basename "$unit")"
    done
    cp "$units/splatfleet-worker@.service" "$units/splatfleet-worker@0.service"
    # The generator template runs the operator's own service: verify it with a stand-in.
    sed 's#^ExecStart=.*#ExecStart=/bin/true#; s#^WorkingDirectory=.*#WorkingDirectory=/#' \
        ops/systemd/splatfleet-generator@.service >"$units/splatfleet-generator@0.service"
    # verify reports unknown keys and bad values as warnings with exit status 0: any output fails.
    problems=$(cd "$units" && systemd-analyze verify --man=no ./splatfleet-puller.service \
        ./splatfleet-submitter.service ./splatfleet-worker@0.service \
        ./splatfleet-generator@0.service 2>&1) || true
    rm -rf "$units"
    if [ -n "$problems" ]; then
        printf 'test: systemd-analyze verify found problems:\n%s\n' "$problems" >&2
        exit 1
    fi
fi

if [ "${SPLATFLEET_TEST_SKIP_DEMO:-0}" != 1 ]; then
    tasks=${SPLATFLEET_TEST_DEMO_TASKS:-8}
    run="$TARGET_DIR/demo/test-$(date -u +%Y%m%dT%H%M%SZ)-$$"
    echo "test: ops/demo.sh --tasks $tasks --profile debug (run directory $run)"
    started=$SECONDS
    ops/demo.sh --tasks "$tasks" --profile debug --timeout 170 --run-dir "$run" --drop-db
    took=$((SECONDS - started))
    completed=0 tasks_submitted=0 tasks_accepted=0 contact_sheets=0 tasks_open=-1 run_seconds=0
    # shellcheck source=/dev/null
    . "$run/summary.env"
    check() { "$@" || { echo "test: demo check failed: $*  ($(tr '\n' ' ' <"$run/summary.env"))" >&2; exit 1; }; }
    check [ "$completed" = 1 ]
    check [ "$tasks_submitted" -ge "$tasks" ]
    check [ "$tasks_accepted" -ge 1 ]
    check [ "$contact_sheets" -ge 1 ]
    check [ "$tasks_open" -eq 0 ]
    check grep -q acceptance_rate "$run/report.txt"
    check [ "$(grep -c '^5' "$run/report.txt")" -ge 1 ]
    # Every process the demo started stopped cleanly when asked (SIGTERM drains, exit 0;
    # the simulators die of the signal: 143).
    check [ -z "$(grep -v -e '^\(puller\|worker-[01]\|submitter\) exit 0$' \
        -e '^\(validators\|generator-[01]\) exit 143$' "$run/exits.txt")" ]
    # The puller's queue gauges saw both workers on the tasks queue and the submitter on results.
    check grep -q '^splatfleet_broker_queue_consumers{queue="[^"]*\.tasks"} 2$' "$run/metrics/puller.prom"
    check grep -q '^splatfleet_broker_queue_consumers{queue="[^"]*\.results"} 1$' "$run/metrics/puller.prom"
    check grep -q '^splatfleet_worker_gpu_backend{backend="\(cuda\|cpu\)"} 1$' "$run/metrics/worker-0.prom"
    for role in puller worker-0 worker-1 submitter; do
        check grep -q "splatfleet_build_info" "$run/metrics/$role.prom"
        echo "test: promtool check metrics < $run/metrics/$role.prom"
        promtool check metrics <"$run/metrics/$role.prom"
    done
    echo "test: demo ok: $tasks_submitted tasks, $tasks_accepted accepted, in ${run_seconds}s (${took}s with the build check)"
fi
echo "test: all passed"
