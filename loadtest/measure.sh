#!/usr/bin/env bash
# Runs load levels against a local deployment (Prosody + our release bridge + focus on loopback) and
# prints one Markdown table row per level from the JSON reports (see loadtest/REPORT.md).
#
#   loadtest/measure.sh [-d DURATION] [-o DIR] [-x 'EXTRA LOADTEST ARGS'] [-r] LEVEL...
#     LEVEL = CONFERENCESxPARTICIPANTS, e.g. 1x2 5x4 10x5 1x20 1x40; -r: only print the table of
#     the reports already in DIR
#   e.g. loadtest/measure.sh -d 60s -o /tmp/lt 1x2 5x4 10x5 1x20 1x40
#        loadtest/measure.sh -x '--simulcast false' -o /tmp/lt-720p 1x20
#
# Builds the release binaries first (CARGO_TARGET_DIR is honoured; NO_BUILD=1 skips). Every level
# writes DIR/<level>.json and DIR/<level>.md. Exit status: non-zero if any level had failures.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=60s
out=loadtest-results
extra=
report_only=0
while getopts "d:o:x:r" opt; do
  case $opt in
    d) duration=$OPTARG ;;
    o) out=$OPTARG ;;
    x) extra=$OPTARG ;;
    r) report_only=1 ;;
    *) sed -n '2,13p' "$0" >&2; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '2,13p' "$0" >&2; exit 64; }

target="${CARGO_TARGET_DIR:-target}"
if [ "${NO_BUILD:-0}" != 1 ] && [ $report_only = 0 ]; then
  cargo build --release --locked -p bridge -p focus -p loadtest
fi
bin="$target/release/loadtest"
mkdir -p "$out"

status=0
levels=("$@")
[ $report_only = 1 ] && levels=()
for level in "${levels[@]}"; do
  conferences=${level%x*}
  participants=${level#*x}
  echo "== $level: $conferences conference(s) × $participants participants, $duration" >&2
  # shellcheck disable=SC2086 # $extra is a list of arguments
  "$bin" --conferences "$conferences" --participants "$participants" --duration "$duration" \
    --json "$out/$level.json" --markdown "$out/$level.md" $extra >"$out/$level.txt" 2>"$out/$level.log" \
    || status=$?
  tail -n 4 "$out/$level.txt" >&2
done

echo
echo "| level | joined | join ms median / p95 | bridge CPU (cores) | bridge µs CPU per packet (in+out) | bridge RSS MiB | bridge pps in / out | bridge Mbps out | loss % | bridge UDP drops | focus CPU s (run) / RSS MiB | load generator CPU (cores) | machine busy % |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for level in "$@"; do
  jq -r --arg level "$level" '
    def f(n): (. * pow(10; n) | round) / pow(10; n);
    .summary as $s | .server as $v | ($v.bridge // {}) as $b |
    "| \($level) | \($s.connected)/\($s.participants) | \($s.join_ms.join.median | f(0)) / \($s.join_ms.join.p95 | f(0)) "
    + "| \($s.costs.bridge_cpu_cores | f(3)) | \($s.costs.bridge_us_per_packet | f(1)) | \($s.costs.bridge_rss_mib | f(1)) "
    + "| \(($b.packets_received_pps // 0) | f(0)) / \(($b.packets_sent_pps // 0) | f(0)) "
    + "| \(($b.bytes_sent_mbps // 0) | f(1)) | \($s.media.loss_pct_overall | f(3)) | \($s.costs.bridge_udp_drops) "
    + "| \($s.costs.focus_run_cpu_seconds | f(2)) / \($s.costs.focus_run_rss_max_mib | f(1)) "
    + "| \($s.costs.loadgen_cpu_pct / 100 | f(2)) | \($v.machine_busy_pct | f(0)) |"
  ' "$out/$level.json"
done
exit $status
