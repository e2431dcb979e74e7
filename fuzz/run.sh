#!/usr/bin/env bash
# Builds the fuzz targets once and runs every one of them — each [[bin]] of fuzz/Cargo.toml, as
# `cargo fuzz list` reports them, so targets added later run too — on its committed seed corpus.
#
#   fuzz/run.sh [SECONDS]          each target for SECONDS (default 60); new inputs are kept in
#                                  fuzz/work/<target> (ignored by git) for the next run
#   fuzz/run.sh --ci SECONDS       CI: each target for SECONDS on a scratch copy; exits non-zero on
#                                  the first crash, timeout or leak, printing the input's path
#   fuzz/run.sh --only a,b ...     restrict to some targets (either mode)
#   fuzz/run.sh --cheap SECONDS    a long run on CI's cheap build (no AddressSanitizer, unoptimised)
#
# Prints a table of exec counts per target. FUZZ_JOBS targets run at once (default: nproc).
# Needs cargo-fuzz (scripts/install-deps.sh installs it); stable rustc with RUSTC_BOOTSTRAP=1
# provides the unstable sanitizer flags cargo-fuzz uses (no nightly toolchain needed).
set -euo pipefail
cd "$(dirname "$0")"
ci=false
cheap=false
only=""
secs=60
while [ $# -gt 0 ]; do
  case "$1" in
    --ci) ci=true; cheap=true; shift ;;
    --cheap) cheap=true; shift ;;
    --only) only="$2"; shift 2 ;;
    *) secs=$1; shift ;;
  esac
done
jobs=${FUZZ_JOBS:-$(nproc)}
export RUSTC_BOOTSTRAP=1
triple=x86_64-unknown-linux-gnu
if $cheap; then
  # CI: the cheapest build that still fuzzes with coverage feedback — unoptimised, no debug info,
  # debug assertions on (an integer overflow is a crash), no sanitizer. Given up against the long
  # runs: AddressSanitizer (memory errors in unsafe code and C dependencies, leaks) and execution
  # speed (several times fewer execs per second); build times in fuzz/README.md. Its own target
  # directory, so that it and the long runs' build do not overwrite each other.
  build_flags=(--dev --sanitizer none --target-dir target/ci)
  export CARGO_PROFILE_DEV_DEBUG=false CARGO_INCREMENTAL=0
  bin_dir=target/ci/$triple/debug
else
  # Long runs: release with debug assertions and AddressSanitizer (cargo-fuzz's default), one
  # codegen unit.
  build_flags=(-O --debug-assertions)
  bin_dir=target/$triple/release
fi

echo "== fuzz: building the targets"
start=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "== fuzz: build took $(( $(date +%s) - start )) s"

mapfile -t targets < <(cargo fuzz list)
if [ -n "$only" ]; then
  IFS=, read -r -a targets <<<"$only"
fi
# Logs of this run (ignored by git), kept for a look after a failure.
logs=artifacts/logs
rm -rf "$logs"
mkdir -p "$logs"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run_one() {
  local t=$1 work
  if $ci; then
    work="$scratch/$t"
  else
    work="work/$t"
  fi
  mkdir -p "$work" "corpus/$t" "artifacts/$t"
  # New inputs go to $work; the committed seeds in corpus/ are only read. The binary runs
  # directly (`cargo fuzz run` would re-enter cargo for every target).
  "$bin_dir/$t" -artifact_prefix="artifacts/$t/" "$work" "corpus/$t" \
    -max_total_time="$secs" -max_len=65536 -timeout=20 \
    -print_final_stats=1 >"$logs/$t.log" 2>&1
}

echo "== fuzz: ${#targets[@]} targets, $secs s each, $jobs at a time"
start=$(date +%s)
failed=()
pids=()
names=()
reap() {
  # Waits for the oldest running target.
  local pid=${pids[0]} t=${names[0]}
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  if ! wait "$pid"; then
    failed+=("$t")
  fi
}
for t in "${targets[@]}"; do
  while [ ${#pids[@]} -ge "$jobs" ]; do reap; done
  run_one "$t" &
  pids+=($!)
  names+=("$t")
done
while [ ${#pids[@]} -gt 0 ]; do reap; done

printf '%-18s %12s %10s %8s\n' target execs exec/s corpus
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
  units=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' "$log" | tail -1)
  printf '%-18s %12s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "${units:-?}"
done
echo "== fuzz: runs took $(( $(date +%s) - start )) s"

if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "== fuzz: $t FAILED"
    grep -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY' "$logs/$t.log" | head -5 || true
    # cargo-fuzz and libFuzzer name the input that failed.
    grep -E 'Test unit written to|Failing input' -A1 "$logs/$t.log" | head -4 || true
    echo "   reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $t <that file>)"
    echo "   log: fuzz/$logs/$t.log; its end:"
    tail -40 "$logs/$t.log" | sed 's/^/   | /'
  done
  exit 1
fi
