#!/usr/bin/env bash
# The one command that runs every test: installs what the tests need, then format, lint, and all tests
# (unit, Prosody integration, browser end-to-end, container images, manifest checks). Exits non-zero on
# the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest (debug build: unit + integration tests)"
# The container tests run in their own step below.
cargo nextest run --workspace --locked --profile ci -E 'not binary(container_images)'
echo "== containers: build the bridge and focus images with podman and run them (focus/tests/container_images.rs)"
containers_started=$SECONDS
cargo nextest run -p focus --locked --profile ci --test container_images
echo "== containers: $((SECONDS - containers_started)) s"
if [ -x scripts/test-release.sh ]; then
  echo "== release-build tests"
  scripts/test-release.sh
fi
echo "== fuzz: every target for a bounded time on its seed corpus (fails on any crash)"
fuzz/run.sh --ci "${FUZZ_SECONDS:-15}"
if [ -x manifests/check.sh ]; then
  echo "== manifests"
  manifests/check.sh
fi
echo "== all tests passed"
