#!/usr/bin/env bash
# Side by side: our bridge (with our focus and Prosody) and Janus (Debian `janus`, VideoRoom),
# the same synthetic participants and load levels, run alternately, then one table of every run
# (`loadtest --compare`; see loadtest/REPORT.md § Side by side with Janus).
#
#   loadtest/compare.sh [-d DURATION] [-o DIR] [-n ROUNDS] [-f FIRST] [-c SFU_CPUS] [-l LOADGEN_CPUS] [-s] [-r] LEVEL...
#     LEVEL = CONFERENCESxPARTICIPANTS[:SENDERS], e.g. 1x5 1x10 1x20:10
#     -n rounds (default 2): each round runs every level with both SFUs, the SFU that goes first
#        alternating from round to round; -f: number of the first round (default 1: more rounds
#        into the same DIR later)
#     -c / -l: CPUs of the SFU process (default 1) and of the load generator with the focus and
#        Prosody (default 0), so that both SFUs get the same core; -c '' -l '' disables pinning
#     -s: split network namespaces (`loadtest --split-netns`, root; needs -c): the kernel's
#        receive work for each side's datagrams runs on that side's CPUs, and the table adds the
#        SFU CPUs' whole busy time per forwarded packet (loadtest/REPORT.md, "How the
#        split-namespace mode works")
#     -r: only print the table of the reports already in DIR
#   e.g. loadtest/compare.sh -d 30s -o /tmp/side-by-side 1x5 1x10 1x20:10
#
# Builds the release binaries first (CARGO_TARGET_DIR is honoured; NO_BUILD=1 skips). Every run
# writes DIR/<level>-<sfu>-<round>.{json,md,txt,log}.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=30s
out=side-by-side
rounds=2
first=1
sfu_cpus=1
loadgen_cpus=0
report_only=0
split=()
while getopts "d:o:n:f:c:l:sr" opt; do
  case $opt in
    d) duration=$OPTARG ;;
    o) out=$OPTARG ;;
    n) rounds=$OPTARG ;;
    f) first=$OPTARG ;;
    c) sfu_cpus=$OPTARG ;;
    l) loadgen_cpus=$OPTARG ;;
    s) split=(--split-netns) ;;
    r) report_only=1 ;;
    *) sed -n '2,21p' "$0" >&2; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || [ $report_only = 1 ] || { sed -n '2,21p' "$0" >&2; exit 64; }
[ ${#split[@]} = 0 ] || [ -n "$sfu_cpus" ] || { echo "-s needs the SFU's CPUs (-c)" >&2; exit 64; }

target="${CARGO_TARGET_DIR:-target}"
if [ "${NO_BUILD:-0}" != 1 ] && [ $report_only = 0 ]; then
  cargo build --release --locked -p bridge -p focus -p loadtest
fi
bin="$target/release/loadtest"
mkdir -p "$out"

pin=()
[ -n "$loadgen_cpus" ] && pin=(taskset -c "$loadgen_cpus")
sfu_pin=()
[ -n "$sfu_cpus" ] && sfu_pin=(--sfu-cpus "$sfu_cpus")

status=0
if [ $report_only = 0 ]; then
  for round in $(seq "$first" $((first + rounds - 1))); do
    if [ $((round % 2)) = 1 ]; then order=(jitsi janus); else order=(janus jitsi); fi
    for level in "$@"; do
      cp=${level%%:*}
      conferences=${cp%x*}
      participants=${cp#*x}
      senders=$participants
      [ "$level" != "$cp" ] && senders=${level#*:}
      for sfu in "${order[@]}"; do
        name="${level/:/s}-$sfu-$round"
        echo "== round $round, $level ($senders senders), $sfu, $duration" >&2
        "${pin[@]}" "$bin" --sfu "$sfu" "${sfu_pin[@]}" "${split[@]}" --conferences "$conferences" \
          --participants "$participants" --senders "$senders" --duration "$duration" \
          --json "$out/$name.json" --markdown "$out/$name.md" >"$out/$name.txt" 2>"$out/$name.log" \
          || status=$?
        grep -E '^(participants|SFU|media received)' "$out/$name.txt" >&2 || tail -n 3 "$out/$name.log" >&2
      done
    done
  done
fi

echo
mapfile -t reports < <(printf "%s\n" "$out"/*.json | sort -V)
"$bin" --compare "${reports[@]}"
exit $status
