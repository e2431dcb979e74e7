#!/usr/bin/env bash
# The one command that runs every test: installs what the tests need, then format, lint, and all tests
# (unit, Prosody integration, browser end-to-end, manifest checks). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest (debug build: unit + integration tests)"
cargo nextest run --workspace --locked --profile ci
if [ -x scripts/test-release.sh ]; then
  echo "== release-build tests"
  scripts/test-release.sh
fi
echo "== fuzz: every target for a bounded time on its seed corpus (fails on any crash)"
fuzz/run.sh --ci "${FUZZ_SECONDS:-20}"
if [ -x manifests/check.sh ]; then
  echo "== manifests"
  manifests/check.sh
fi
echo "== all tests passed"
