#!/usr/bin/env bash
# One load level with the bridge's CPU split into user and kernel time per forwarded packet
# (loadtest/REPORT.md, "Bridge CPU per forwarded packet"): the bridge pinned to CPU 0 (so it runs one
# media worker), the load generator to CPU 1; the bridge's utime/stime read from /proc/<pid>/stat
# over 22 s inside the 30 s window; /metrics read at both ends (jitsi_jvb_udp_*: datagrams per
# recvmmsg / sendmmsg, GSO messages). With `perf-record`, `perf record -g -F 999` of the bridge for
# 12 s of the window (OUT.perf.data; `perf report -i OUT.perf.data --no-children --sort sym`), and
# the share of its samples in the receive softirq (`net_rx_action` on the kernel stack): on loopback
# that is the delivery of the bridge's datagrams into the receivers' sockets, which runs in the
# sender's context — work a deployment does on the receiving machines (loadtest/REPORT.md).
# CPU 0's whole busy time (wall time not idle, /proc/stat) over the same 22 s is printed too ("CPU 0 busy"): the
# bridge plus the interrupt and softirq work that ran on its CPU — meaningful as long as nothing
# else runs there (another session's build does).
# With `netns`, `loadtest --split-netns` (root): the bridge in a network namespace of its own,
# joined to the load generator's by a veth pair with RPS on each end, so that the kernel's receive
# work for the datagrams the bridge sends runs on CPU 1, not on the bridge's CPU (loadtest/REPORT.md,
# "How the split-namespace mode works"); "CPU 0 busy" is then the honest SFU-machine cost.
#
#   loadtest/cpu-split.sh BIN_DIR OUT [perf-record] [netns] -- LOADTEST ARGS
#   e.g. loadtest/cpu-split.sh target/release /tmp/cs/1x40-1 -- --conferences 1 --participants 40
#
# Each media worker's own CPU (threads `media-N`, /proc/<pid>/task) is printed too. For 2 workers:
#   JVB_MEDIA_WORKERS=2 SFU_CPUS=0,1 LOADGEN_CPUS=0,1 loadtest/cpu-split.sh … (CPU 0 busy is then
#   not the bridge's alone; the per-worker figures are).
#
# BIN_DIR holds `loadtest`, `bridge` and `focus`. On a machine shared with other sessions, Linux
# autogroup scheduling shares the CPU per session and `nice` alone does nothing against them: the
# script raises its own session's autogroup to nice -10 (root), which covers only the processes it
# starts (loadtest, Prosody, bridge, focus).
set -euo pipefail
echo -10 >/proc/$$/autogroup 2>/dev/null || echo "autogroup nice not set (not root?)" >&2
bin=$1; out=$2; shift 2
rec=0
split=()
if [ "${1:-}" = perf-record ]; then rec=1; shift; fi
if [ "${1:-}" = netns ]; then split=(--split-netns); shift; fi
[ "${1:-}" = -- ] && shift
# taskset execs loadtest: $lt is loadtest's pid (and names its namespaces, lt-sfu-$lt).
taskset -c "${LOADGEN_CPUS:-1}" "$bin/loadtest" --bin-dir "$bin" --sfu-cpus "${SFU_CPUS:-0}" \
  "${split[@]}" --duration 30s \
  --json "$out.json" "$@" >"$out.txt" 2>"$out.log" &
lt=$!
until grep -q "joins settled" "$out.log" 2>/dev/null; do
  sleep 0.5
  kill -0 $lt 2>/dev/null || { echo "loadtest ended early: $out.log" >&2; exit 1; }
done
pid=$(pgrep -P $lt -x bridge)
env_of() { tr '\0' '\n' </proc/$pid/environ | grep "^$1=" | cut -d= -f2; }
port=$(env_of JVB_REST_PORT)
host=$(env_of JVB_REST_HOST)
# The bridge's REST address is reachable only inside its namespace in netns mode.
in_ns=()
[ ${#split[@]} = 1 ] && in_ns=(ip netns exec "lt-sfu-$lt")
metrics() { "${in_ns[@]}" curl -s "$host:$port/metrics" >"$1" || true; }
sleep 7 # 5 s warm-up, then inside the window
# utime stime of the bridge, then CPU 0's idle + iowait ticks from /proc/stat: its busy time is
# the wall time not idle (the tickless kernel measures idle exactly; the busy fields are sampled per
# tick and miss the bridge's sub-tick bursts).
cpu() {
  awk '{print $14, $15}' /proc/$pid/stat
  awk '$1 == "cpu0" {print $5 + $6}' /proc/stat
}
# utime + stime of each media worker thread, as "name ticks" lines.
workers() {
  for t in /proc/$pid/task/*; do
    c=$(cat "$t/comm" 2>/dev/null) || continue
    case $c in media-*) echo "$c $(awk '{print $14 + $15}' "$t/stat")" ;; esac
  done
}
{ read -r ut0 st0; read -r idle0; } < <(cpu)
workers >"$out.workers0"
metrics "$out.metrics0"
t0=$(date +%s.%N)
if [ $rec = 1 ]; then
  perf record -g -F 999 -p $pid -o "$out.perf.data" -- sleep 12 >/dev/null 2>&1
  sleep 10
else
  sleep 22
fi
t1=$(date +%s.%N)
{ read -r ut1 st1; read -r idle1; } < <(cpu)
workers >"$out.workers1"
metrics "$out.metrics1"
wait $lt || true
if [ $rec = 1 ]; then
  # One sample per blank-line-separated block of `perf script`: its frames, leaf first.
  perf script -i "$out.perf.data" -F ip,sym 2>/dev/null | awk '
    NF == 0 { if (n) { total++; if (rx) inrx++; if (seg) segs++ } n = rx = seg = 0; next }
    { n++; if ($2 == "net_rx_action") rx = 1; if ($2 == "skb_segment") seg = 1 }
    END { if (n) { total++; if (rx) inrx++; if (seg) segs++ }
          if (total) printf "perf: %d samples, %.1f %% in the receive softirq (net_rx_action), %.1f %% in skb_segment\n", total, 100 * inrx / total, 100 * segs / total }' \
    | tee "$out.softirq"
fi
echo "$ut0 $st0 $ut1 $st1 $t0 $t1 $idle0 $idle1" >"$out.cpu"
python3 - "$out" "$(getconf CLK_TCK)" <<'PY'
import json, sys
o, hz = sys.argv[1], float(sys.argv[2])
ut0, st0, ut1, st1, t0, t1, idle0, idle1 = map(float, open(o + ".cpu").read().split())
j = json.load(open(o + ".json"))
m, c = j["summary"]["media"], j["summary"]["costs"]
pps, dt = m["received_pps"], t1 - t0
u, k = (ut1 - ut0) / hz / dt, (st1 - st0) / hz / dt
busy = 1 - (idle1 - idle0) / hz / dt
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
w0 = dict(l.split() for l in open(o + ".workers0") if l.strip())
w1 = dict(l.split() for l in open(o + ".workers1") if l.strip())
per_worker = ", ".join(
    f"{n} {(float(w1[n]) - float(w0.get(n, 0))) / hz / dt:.3f} cores"
    for n in sorted(w1))
print(f"{o}: {pps:.0f} forwarded pps, loss {m['loss_pct_overall']:.3f} %, report "
      f"{c['sfu_us_per_forwarded_packet']:.2f} µs/packet; over {dt:.0f} s: user {u / pps * 1e6:.2f} "
      f"+ kernel {k / pps * 1e6:.2f} = {(u + k) / pps * 1e6:.2f} µs SFU process per forwarded packet; "
      f"CPU 0 busy {busy:.3f} cores = {busy / pps * 1e6:.2f} µs SFU CPU busy per forwarded packet{io}; "
      f"bridge {u + k:.3f} cores, workers: {per_worker}")
PY
