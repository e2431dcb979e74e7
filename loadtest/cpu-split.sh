#!/usr/bin/env bash
# One load level with the bridge's CPU split into user and kernel time per forwarded packet
# (loadtest/REPORT.md, "Bridge CPU per forwarded packet"): the bridge pinned to CPU 0 (so it runs one
# media worker), the load generator to CPU 1; the bridge's utime/stime read from /proc/<pid>/stat
# over 22 s inside the 30 s window; /metrics read at both ends (jitsi_jvb_udp_*: datagrams per
# recvmmsg / sendmmsg, GSO messages). With `perf-record`, `perf record -F 1999` of the bridge for
# 12 s of the window (OUT.perf.data; `perf report -i OUT.perf.data --no-children --sort sym`).
#
#   loadtest/cpu-split.sh BIN_DIR OUT [perf-record] -- LOADTEST ARGS
#   e.g. loadtest/cpu-split.sh target/release /tmp/cs/1x40-1 -- --conferences 1 --participants 40
#
# BIN_DIR holds `loadtest`, `bridge` and `focus`. On a machine shared with other sessions, Linux
# autogroup scheduling shares the CPU per session and `nice` alone does nothing against them: the
# script raises its own session's autogroup to nice -10 (root), which covers only the processes it
# starts (loadtest, Prosody, bridge, focus).
set -euo pipefail
echo -10 >/proc/$$/autogroup 2>/dev/null || echo "autogroup nice not set (not root?)" >&2
bin=$1; out=$2; shift 2
rec=0
if [ "${1:-}" = perf-record ]; then rec=1; shift; fi
[ "${1:-}" = -- ] && shift
taskset -c 1 "$bin/loadtest" --bin-dir "$bin" --sfu-cpus 0 --duration 30s --json "$out.json" "$@" \
  >"$out.txt" 2>"$out.log" &
lt=$!
until grep -q "joins settled" "$out.log" 2>/dev/null; do
  sleep 0.5
  kill -0 $lt 2>/dev/null || { echo "loadtest ended early: $out.log" >&2; exit 1; }
done
pid=$(pgrep -P $lt -x bridge)
port=$(tr '\0' '\n' </proc/$pid/environ | grep ^JVB_REST_PORT= | cut -d= -f2)
sleep 7 # 5 s warm-up, then inside the window
cpu() { awk '{print $14, $15}' /proc/$pid/stat; }
read -r ut0 st0 < <(cpu)
curl -s "localhost:$port/metrics" >"$out.metrics0" || true
t0=$(date +%s.%N)
if [ $rec = 1 ]; then
  perf record -F 1999 -p $pid -o "$out.perf.data" -- sleep 12 >/dev/null 2>&1
  sleep 10
else
  sleep 22
fi
t1=$(date +%s.%N)
read -r ut1 st1 < <(cpu)
curl -s "localhost:$port/metrics" >"$out.metrics1" || true
wait $lt || true
echo "$ut0 $st0 $ut1 $st1 $t0 $t1" >"$out.cpu"
python3 - "$out" "$(getconf CLK_TCK)" <<'PY'
import json, sys
o, hz = sys.argv[1], float(sys.argv[2])
ut0, st0, ut1, st1, t0, t1 = map(float, open(o + ".cpu").read().split())
j = json.load(open(o + ".json"))
m, c = j["summary"]["media"], j["summary"]["costs"]
pps, dt = m["received_pps"], t1 - t0
u, k = (ut1 - ut0) / hz / dt, (st1 - st0) / hz / dt
def metrics(n):
    d = {}
    for line in open(f"{o}.metrics{n}"):
        if line.startswith("jitsi_jvb_udp_"):
            key, v = line.split()
            d[key[len("jitsi_jvb_udp_"):-len("_total")]] = float(v)
    return d
io = ""
try:
    a, b = metrics(0), metrics(1)
    d = {key: b[key] - a[key] for key in a}
    io = (f"; {d['datagrams_received'] / d['recv_calls']:.1f} datagrams per recvmmsg, "
          f"{d['datagrams_sent'] / d['send_calls']:.1f} per sendmmsg, "
          f"{d['gso_messages'] / d['datagrams_sent']:.3f} GSO messages per datagram sent")
except (OSError, KeyError, ZeroDivisionError, ValueError):
    pass
print(f"{o}: {pps:.0f} forwarded pps, loss {m['loss_pct_overall']:.3f} %, report "
      f"{c['sfu_us_per_forwarded_packet']:.2f} µs/packet; over {dt:.0f} s: user {u / pps * 1e6:.2f} "
      f"+ kernel {k / pps * 1e6:.2f} = {(u + k) / pps * 1e6:.2f} µs per forwarded packet{io}")
PY
