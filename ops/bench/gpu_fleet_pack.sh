#!/usr/bin/env bash
# Packs what ops/bench/gpu_fleet.sh needs on a bare GPU machine that reaches no registry and has
# no Rust (issue 23), into folders git ignores:
#   .devpkg/   bin.tar.xz: the fleet's release binaries (puller, worker, submitter,
#              splatfleet-sim), stripped; services.tar.xz: this machine's RabbitMQ (its core
#              plugins and the Erlang applications they need) and PostgreSQL (server, psql,
#              shared files; no JIT), with the shared libraries they load that a CUDA image may
#              lack (libc and the loader excepted), for a private prefix as the fault suite
#              runs its private nodes
#   .whl/      the Python wheels that write the real-size random-weight scorer models
#              (open_clip 2.29.0 and transformers 4.44.2, the versions the services pin)
# Run it here, from the repository root, with Debian's rabbitmq-server and postgresql installed
# (ops/dev-up.sh installs them); then, on the device, carry .devpkg and .whl, in two calls when
# together they pass the device tool's 64 MiB a call (the sizes are printed; what a call unpacks
# stays on the machine while it is warm).
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf 'gpu_fleet_pack: %s\n' "$*"; }
die() { printf 'gpu_fleet_pack: error: %s\n' "$*" >&2; exit 1; }

PG_VERSION=${PG_VERSION:-$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)}
[ -n "$PG_VERSION" ] || die "no /usr/lib/postgresql/<version>: install postgresql (ops/dev-up.sh)"
[ -d /usr/lib/erlang ] && [ -d /usr/lib/rabbitmq ] || die "RabbitMQ or Erlang missing: install rabbitmq-server (ops/dev-up.sh)"

if [ "${1:-}" != --no-build ]; then
    say "building the release binaries (--no-build packs target/release as it is)"
    cargo build --release --locked --bins -p splatfleet-puller -p splatfleet-worker \
        -p splatfleet-submitter -p splatfleet-tests
fi
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p .devpkg "$STAGE/bin"
for b in splatfleet-puller splatfleet-worker splatfleet-submitter splatfleet-sim; do
    cp "target/release/$b" "$STAGE/bin/$b"
    strip "$STAGE/bin/$b"
done
tar -C "$STAGE/bin" -cf - . | xz -T2 -6 >.devpkg/bin.tar.xz
rm -rf "$STAGE/bin"

say "packing RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null) and PostgreSQL $PG_VERSION"
mkdir -p "$STAGE/usr/lib/postgresql" "$STAGE/usr/share/postgresql" "$STAGE/lib"
cp -a /usr/lib/erlang /usr/lib/rabbitmq "$STAGE/usr/lib/"
# Only the plugins the broker and rabbitmqctl start with (the closure of their .app
# dependencies) and the Erlang applications they need: half the size.
python3 ops/bench/rabbitmq_closure.py "$STAGE/usr/lib/rabbitmq/lib"/rabbitmq_server-*/plugins \
    "$STAGE/usr/lib/erlang/lib"
cp -a "/usr/lib/postgresql/$PG_VERSION" "$STAGE/usr/lib/postgresql/"
# The server and the four tools the bench runs; not the other clients.
find "$STAGE/usr/lib/postgresql/$PG_VERSION/bin" -type f \
    ! -name postgres ! -name initdb ! -name pg_ctl ! -name psql -delete
# JIT bitcode and the LLVM JIT are optional (jit = off) and the largest part of the server.
rm -rf "$STAGE/usr/lib/postgresql/$PG_VERSION/lib/bitcode" \
    "$STAGE/usr/lib/postgresql/$PG_VERSION/lib/llvmjit"*
cp -a "/usr/share/postgresql/$PG_VERSION" "$STAGE/usr/share/postgresql/"
# The libraries the servers and psql load, less the C library and the loader (the device's own).
{
    ldd "/usr/lib/postgresql/$PG_VERSION/bin/"{postgres,psql,initdb,pg_ctl}
    ldd /usr/lib/erlang/erts-*/bin/{beam.smp,erlexec,epmd}
    for so in /usr/lib/erlang/lib/crypto-*/priv/lib/*.so; do ldd "$so"; done
} 2>/dev/null | awk '$3 ~ /^\// { print $3 }' | sort -u \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' \
    | while read -r lib; do cp -L "$lib" "$STAGE/lib/"; done
tar -C "$STAGE" -cf - usr lib | xz -T2 -6 >.devpkg/services.tar.xz

say "downloading the model writers' wheels (Python 3.12, manylinux)"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    open_clip_torch==2.29.0 ftfy==6.3.1 wcwidth==0.2.13 transformers==4.44.2 \
    tokenizers==0.19.1 huggingface_hub==0.24.6

du -sh .devpkg/* .whl
total=$(du -scm .devpkg .whl | tail -1 | cut -f1)
say "total ${total} MiB with the working tree's few; the device tool carries at most 64 MiB a call"
[ "$total" -lt 60 ] || say "carry .devpkg in one call (step services) and .whl in the next (models...)"
