#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each and prints libFuzzer's final exec counts.
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); stable rustc with RUSTC_BOOTSTRAP=1 provides the
# unstable sanitizer flags cargo-fuzz uses.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for t in xml_stanzas bridge_channel json_sources dependency_descriptor vp9_descriptor; do
  mkdir -p "work/$t"
  echo "== $t ($secs s)"
  # New inputs go to work/ (ignored by git); the committed seeds in corpus/ are read-only inputs.
  cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 2>&1 \
    | grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)|ERROR|panicked' || true
done
