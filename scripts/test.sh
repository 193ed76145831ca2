#!/usr/bin/env bash
# Runs every test of niledr on this machine, installing what the tests need first.
# The end-to-end tests start real PostgreSQL, Redis, Knot DNS and nginx from Debian packages;
# a missing server binary fails the run (tests never skip).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The crash-safety suite SIGKILLs niledr at failpoints, which exist only with this feature; the
# same feature set for build and test keeps cargo from rebuilding niledr without it.
FEATURES=(--features niledr-orchestrator/failpoints)
echo "== build binaries used by the end-to-end tests"
cargo build --workspace --bins --locked "${FEATURES[@]}"
echo "== tests"
# Each end-to-end test starts its own topology (two PostgreSQL servers, two Redis, Knot DNS,
# PgBouncer, nginx): two at a time fits a 2-core machine.
cargo test --workspace --locked --no-fail-fast "${FEATURES[@]}" -- --test-threads=2
