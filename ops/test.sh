#!/usr/bin/env bash
# The test command: brings up RabbitMQ and PostgreSQL (ops/dev-up.sh), then runs every
# workspace test against them. Extra arguments go to `cargo test` (e.g. a test name filter).
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
