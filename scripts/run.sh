#!/usr/bin/env bash
# The main job: builds (release) and starts the local deployment.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p bridge
exec target/release/bridge "$@"
