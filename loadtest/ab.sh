#!/usr/bin/env bash
# Two bridge builds alternated at the same load levels (loadtest/REPORT.md, "Two builds alternated"):
# each run goes through cpu-split.sh (bridge on CPU 0, load generator on CPU 1, µs of bridge CPU per
# forwarded packet), and `perf stat` counts the media worker's `epoll_wait`, `recvmmsg`,
# `sendmmsg` and context switches over 10 s inside the window. Rounds alternate which build goes
# first, so a drift of the machine falls on both.
#
#   loadtest/ab.sh A_BRIDGE B_BRIDGE OUT ROUNDS LEVEL...
#     LEVEL = CONFERENCESxPARTICIPANTS, e.g. 1x5 10x5 1x40
#   e.g. loadtest/ab.sh /tmp/old/bridge target/release/bridge /tmp/ab 3 1x5 10x5 1x40
#
# The load generator and the focus come from target/release (CARGO_TARGET_DIR honoured; build them
# first). Writes OUT/{a,b}-LEVEL-ROUND.{txt,json,syscalls,…} and prints one summary line per run.
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,13p' "$0" >&2; exit 64; }
here="$(cd "$(dirname "$0")" && pwd)"
release="$(cd "$here/.." && realpath "${CARGO_TARGET_DIR:-target}")/release"
a=$(realpath "$1"); b=$(realpath "$2"); out=$3; rounds=$4; shift 4
mkdir -p "$out/bin-a" "$out/bin-b"
# cpu-split.sh wants a directory with `bridge`, `focus` and `loadtest`.
for v in a b; do
  ln -sf "$release/loadtest" "$out/bin-$v/loadtest"
  ln -sf "$release/focus" "$out/bin-$v/focus"
done
ln -sf "$a" "$out/bin-a/bridge"
ln -sf "$b" "$out/bin-b/bridge"
for r in $(seq 1 "$rounds"); do
  for level in "$@"; do
    c=${level%x*}; p=${level#*x}
    if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for v in $order; do
      name=$out/$v-$level-$r
      (
        sleep 14 # joins settled and cpu-split.sh's warm-up begun
        pid=$(pgrep -x bridge | head -1)
        tid=$(grep -l '^media-0$' /proc/"$pid"/task/*/comm | cut -d/ -f5)
        perf stat -t "$tid" -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvmmsg' \
          -e 'syscalls:sys_enter_sendmmsg,context-switches' -- sleep 10 2>"$name.syscalls" >/dev/null
      ) &
      "$here/cpu-split.sh" "$out/bin-$v" "$name" -- --conferences "$c" --participants "$p" 2>&1 | tail -n 1
      wait
      awk -v n="$(basename "$name")" '/syscalls|context/ { sub("syscalls:sys_enter_", "", $2); s = s sprintf(" %s %.0f/s", $2, $1 / 10) }
        END { print n ":" s }' "$name.syscalls"
    done
  done
done
