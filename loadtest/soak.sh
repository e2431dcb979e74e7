#!/usr/bin/env bash
# Memory soak (issue 11): one local deployment (scripts/run.sh: Prosody + our release bridge + focus on
# loopback) stays up while loadtest participants join and leave in rounds for SOAK_SECONDS; a sampler
# reads the bridge's and the focus's RSS, threads, open fds and sockets (/proc) and their stats
# (/colibri/stats, the focus's /stats) every SOAK_SAMPLE seconds. After the last round and a grace
# period it records the end state and writes a Markdown report: samples every minute, the RSS slope
# (least squares over the second half of the load phase, KiB/min, of the samples taken between
# rounds, when the process holds no endpoint or participant), and what is left over.
#
#   loadtest/soak.sh REPORT.md
#
# Environment (all optional):
#   SOAK_SECONDS        load phase length (default 600); the round running at the end finishes
#   SOAK_CONFERENCES    conferences per round (default 5)
#   SOAK_PARTICIPANTS   participants per conference (default 4)
#   SOAK_ROUND          each round's measurement window after everybody joined (default 3s)
#   SOAK_SAMPLE         sampling period in seconds (default 5)
#   SOAK_GRACE          seconds after the last round before the end state is read (default 20)
#   SOAK_SETTLE         seconds between "deployment up" and the idle sample (default 5): the focus
#                       reports healthy before its component connection to Prosody is up
#   SOAK_MAX_SLOPE      KiB/min above which an RSS slope counts as growth (default 64)
#   SOAK_DATA           keep the raw samples and per-round loadtest reports in this directory
#   CARGO_TARGET_DIR    where the release `bridge`, `focus` and `loadtest` are (default: target);
#                       nothing is built here: `cargo build --release -p bridge -p focus -p loadtest`
#
# Exit status: 0 when RSS stayed flat, every participant joined and nothing was left over; 2 when the
# soak ran but one of those failed (the report says which); 1 when it could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'soak.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ $# -eq 1 ] || { sed -n '2,25p' "$0" >&2; exit 64; }
report=$1
soak_seconds=${SOAK_SECONDS:-600}
conferences=${SOAK_CONFERENCES:-5}
participants=${SOAK_PARTICIPANTS:-4}
round_window=${SOAK_ROUND:-3s}
sample_every=${SOAK_SAMPLE:-5}
grace=${SOAK_GRACE:-20}
settle=${SOAK_SETTLE:-5}
max_slope=${SOAK_MAX_SLOPE:-64}
target="${CARGO_TARGET_DIR:-target}"
loadtest_bin="$target/release/loadtest"
for b in bridge focus loadtest; do
  [ -x "$target/release/$b" ] || die "$target/release/$b missing: cargo build --release -p bridge -p focus -p loadtest"
done
for n in "$soak_seconds" "$conferences" "$participants" "$sample_every" "$grace" "$settle"; do
  [[ $n =~ ^[0-9]+$ ]] || die "not a whole number: $n"
done

if [ -n "${SOAK_DATA:-}" ]; then
  data=$SOAK_DATA keep_data=1
  mkdir -p "$data"
else
  data=$(mktemp -d -t soak.XXXXXX) keep_data=0
fi
run_pid=
sampler_pid=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  [ -z "$sampler_pid" ] || kill "$sampler_pid" 2>/dev/null || true
  # run.sh stops Prosody, the bridge and the focus on SIGTERM.
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM "$run_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  wait 2>/dev/null || true
  [ "$keep_data" = 1 ] || rm -rf "$data"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the deployment -------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
log "starting Prosody + bridge + focus (scripts/run.sh, binaries from $target/release)"
RUN_NO_BUILD=1 RUN_NO_DEMO=1 RUN_MEDIA_IP=127.0.0.1 CARGO_TARGET_DIR="$target" \
  scripts/run.sh >"$data/run.out" 2>"$data/run.log" &
run_pid=$!
for _ in $(seq 600); do
  grep -q 'up (no demo page)' "$data/run.log" && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$data/run.log" >&2; die "scripts/run.sh exited"; }
  sleep 0.1
done
grep -q 'up (no demo page)' "$data/run.log" || { cat "$data/run.log" >&2; die "deployment did not come up"; }
c2s=$(sed -n 's/.*Prosody on 127\.0\.0\.1:\([0-9]*\) (XMPP).*/\1/p' "$data/run.log")
bridge_rest=$(sed -n 's/.*(REST 127\.0\.0\.1:\([0-9]*\)).*/\1/p' "$data/run.log")
focus_rest=$(sed -n 's/.*focus REST 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$data/run.log")
bridge_pid=$(pgrep -P "$run_pid" -x bridge || true)
focus_pid=$(pgrep -P "$run_pid" -x focus || true)
if [ -z "$c2s" ] || [ -z "$bridge_rest" ] || [ -z "$focus_rest" ] || [ -z "$bridge_pid" ] || [ -z "$focus_pid" ]; then
  cat "$data/run.log" >&2; die "could not read ports and pids from scripts/run.sh"
fi
bridge_stats="http://127.0.0.1:$bridge_rest/colibri/stats"
focus_stats="http://127.0.0.1:$focus_rest/stats"
log "bridge pid $bridge_pid ($bridge_stats), focus pid $focus_pid ($focus_stats), XMPP 127.0.0.1:$c2s"

# ---- sampling -------------------------------------------------------------------------------------
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo NA; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sockets() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
json_field() { # $1 = url, $2 = jq filter, $3 = pid serving it (another deployment may reuse its port)
  kill -0 "$3" 2>/dev/null || { echo NA; return; }
  curl -fsS --max-time 2 "$1" 2>/dev/null | jq -r "$2" 2>/dev/null || echo NA
}
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
columns="t_s phase bridge_rss_kib bridge_threads bridge_fds bridge_sockets focus_rss_kib focus_threads focus_fds focus_sockets bridge_conferences bridge_endpoints focus_conferences focus_participants load1"
sample() { # $1 = phase
  printf '%s %s %s %s %s %s %s %s %s %s %s %s %s %s %s\n' "$(elapsed)" "$1" \
    "$(status_kib "$bridge_pid" VmRSS)" "$(status_kib "$bridge_pid" Threads)" "$(fds "$bridge_pid")" "$(sockets "$bridge_pid")" \
    "$(status_kib "$focus_pid" VmRSS)" "$(status_kib "$focus_pid" Threads)" "$(fds "$focus_pid")" "$(sockets "$focus_pid")" \
    "$(json_field "$bridge_stats" '.conferences' "$bridge_pid")" "$(json_field "$bridge_stats" '.endpoints' "$bridge_pid")" \
    "$(json_field "$focus_stats" '.conferences' "$focus_pid")" "$(json_field "$focus_stats" '.participants' "$focus_pid")" \
    "$(cut -d' ' -f1 /proc/loadavg)"
}
sleep "$settle"
echo "$columns" >"$data/samples.txt"
sample idle >>"$data/samples.txt"
start_load=$(cut -d' ' -f1-3 /proc/loadavg)
( while :; do sleep "$sample_every"; sample load; done ) >>"$data/samples.txt" &
sampler_pid=$!

# ---- rounds ---------------------------------------------------------------------------------------
command_line="$loadtest_bin --xmpp 127.0.0.1:$c2s --conferences $conferences --participants $participants --duration $round_window --warmup 1s --join-rate 10 --room-prefix soak"
log "load phase: ${soak_seconds}s of rounds: $command_line"
echo "round start_s end_s exit participants connected failed loss_pct join_median_ms" >"$data/rounds.txt"
round=0
load_start=$(elapsed)
while awk -v e="$(elapsed)" -v s="$load_start" -v d="$soak_seconds" 'BEGIN { exit !(e - s < d) }'; do
  round=$((round + 1))
  r_start=$(elapsed)
  rc=0
  "$loadtest_bin" --xmpp "127.0.0.1:$c2s" --conferences "$conferences" --participants "$participants" \
    --duration "$round_window" --warmup 1s --join-rate 10 --room-prefix soak \
    --json "$data/round-$round.json" >"$data/round-$round.txt" 2>"$data/round-$round.log" || rc=$?
  summary=$(jq -r '.summary | "\(.participants) \(.connected) \(.failed) \(.media.loss_pct_overall * 1000 | round / 1000) \(.join_ms.join.median | round)"' \
    "$data/round-$round.json" 2>/dev/null || echo "NA NA NA NA NA")
  echo "$round $r_start $(elapsed) $rc $summary" >>"$data/rounds.txt"
  if ! kill -0 "$bridge_pid" 2>/dev/null || ! kill -0 "$focus_pid" 2>/dev/null; then
    log "the bridge or the focus exited during round $round"; break
  fi
done
load_end=$(elapsed)
log "load phase over after $round rounds; ${grace}s grace"
sleep "$grace"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
sample end >>"$data/samples.txt"
end_load=$(cut -d' ' -f1-3 /proc/loadavg)
# What the bridge and the focus still hold open, by kind (for the report).
for p in bridge focus; do
  pid_var="${p}_pid"
  find "/proc/${!pid_var}/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null \
    | sed -e 's/:\[[0-9]*\]$//' -e 's#^/.*#file#' | sort | uniq -c | awk '{ printf "%s×%s ", $1, $2 }' >"$data/$p-fds-end.txt" || true
done
alive=yes
if ! kill -0 "$bridge_pid" 2>/dev/null || ! kill -0 "$focus_pid" 2>/dev/null; then alive=no; fi

# ---- analysis -------------------------------------------------------------------------------------
# Least-squares slope of column $1 (KiB) against time, in KiB/min, over load samples with t in [$2, $3]
# (and, if $4 names a column, only those where it is 0).
slope() {
  awk -v c="$1" -v from="$2" -v to="$3" -v z="${4:-}" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $2 == "load" && $1 >= from && $1 <= to && $col[c] != "NA" && (z == "" || $col[z] == "0") {
      n++; x = $1 / 60; y = $col[c]; sx += x; sy += y; sxx += x * x; sxy += x * y
    }
    END { d = n * sxx - sx * sx; if (n < 3 || d == 0) print "NA"; else printf "%.1f", (n * sxy - sx * sy) / d }
  ' "$data/samples.txt"
}
# Value of column $1 in the first sample of phase $2 (first|last within that phase: $3).
value() {
  awk -v c="$1" -v ph="$2" -v which="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $2 == ph { v = $col[c]; if (which == "first" && !seen) { first = v; seen = 1 } }
    END { print (which == "first" ? first : v) }
  ' "$data/samples.txt"
}
column_max() {
  awk -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col[c] != "NA" && $col[c] + 0 > m { m = $col[c] + 0 } END { print m + 0 }' "$data/samples.txt"
}
half=$(awk -v s="$load_start" -v e="$load_end" 'BEGIN { printf "%.1f", s + (e - s) / 2 }')
kib_mib() { awk -v k="$1" 'BEGIN { if (k == "NA" || k == "") print "NA"; else printf "%.1f", k / 1024 }'; }

verdicts=()
status=0
# The verdict reads the RSS between rounds (the process holds no endpoint / participant): samples
# taken mid-round swing by a few MiB with how many participants happen to be in, which a 10-minute
# least-squares fit over every sample turns into a slope of either sign.
quiet_bridge=bridge_endpoints
quiet_focus=focus_participants
for p in bridge focus; do
  quiet="quiet_$p"
  s=$(slope "${p}_rss_kib" "$half" "$load_end" "${!quiet}")
  declare "${p}_slope=$s"
  declare "${p}_slope_every=$(slope "${p}_rss_kib" "$half" "$load_end")"
  declare "${p}_slope_all=$(slope "${p}_rss_kib" "$load_start" "$load_end")"
  if [ "$s" = NA ] || awk -v s="$s" -v m="$max_slope" 'BEGIN { exit !(s > m) }'; then
    verdicts+=("**$p RSS grows**: $s KiB/min between rounds over the second half (limit $max_slope)"); status=2
  fi
  for c in fds sockets threads; do
    a=$(value "${p}_$c" idle first); b=$(value "${p}_$c" end first)
    if [ "$a" != "$b" ]; then
      verdicts+=("**$p $c**: $a before the load, $b at the end"); status=2
    fi
  done
done
for c in bridge_conferences bridge_endpoints focus_conferences focus_participants; do
  v=$(value "$c" end first)
  if [ "$v" != 0 ]; then verdicts+=("**$c left at the end: $v**"); status=2; fi
done
[ "$alive" = yes ] || { verdicts+=("**the bridge or the focus exited**"); status=2; }
read -r planned connected failed_rounds < <(awk 'NR > 1 { p += $5; c += $6; if ($4 != 0) f++ } END { print p + 0, c + 0, f + 0 }' "$data/rounds.txt")
if [ "$planned" != "$connected" ]; then verdicts+=("**$((planned - connected)) of $planned participants did not connect**"); status=2; fi
[ ${#verdicts[@]} -gt 0 ] || verdicts=("flat and clean: RSS slopes within $max_slope KiB/min, fds, sockets, threads back to their idle values, no endpoint, conference or participant left")

# ---- report ---------------------------------------------------------------------------------------
{
  echo "# Memory soak: $conferences × $participants loadtest participants joining and leaving for $soak_seconds s"
  echo
  echo "Written by \`loadtest/soak.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), worktree commit \`$commit\` at the start,"
  echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), shared with other work:"
  echo "load average (1/5/15 min) $start_load at the start, $end_load at the end."
  echo
  echo "Command: \`CARGO_TARGET_DIR=$target SOAK_SECONDS=$soak_seconds loadtest/soak.sh $report\`"
  echo
  echo "One deployment for the whole soak (\`scripts/run.sh\` with \`RUN_NO_DEMO=1 RUN_MEDIA_IP=127.0.0.1\`:"
  echo "Prosody, release \`bridge\` pid $bridge_pid, release \`focus\` pid $focus_pid). Each round runs"
  echo "\`$command_line\`:"
  echo "$((conferences * participants)) participants join new rooms at 10/s, send and receive audio and simulcast video for 1 s warm-up + $round_window,"
  echo "then leave; the next round starts when loadtest has exited. Sampling every ${sample_every} s: VmRSS and"
  echo "Threads (\`/proc/<pid>/status\`), open fds and sockets (\`/proc/<pid>/fd\`), the bridge's"
  echo "\`/colibri/stats\` conferences/endpoints, the focus's \`/stats\` conferences/participants."
  echo
  echo "## Result"
  echo
  for v in "${verdicts[@]}"; do echo "- $v"; done
  echo
  echo "Rounds: $round ($(awk -v s="$load_start" -v e="$load_end" 'BEGIN { printf "%.0f", e - s }') s of load), $connected of $planned participants connected,"
  echo "$failed_rounds round(s) with a non-zero loadtest exit. Median join time per round (ms):"
  echo "$(awk 'NR > 1 && $9 != "NA" { print $9 }' "$data/rounds.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR]; else print "NA" }')."
  echo
  echo "| process | RSS idle MiB | RSS after 1st min MiB | RSS end (after grace) MiB | RSS max MiB | slope 2nd half, between rounds KiB/min | slope 2nd half, every sample KiB/min | slope whole load KiB/min | fds idle → end | sockets idle → end | threads idle → end |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for p in bridge focus; do
    sv="${p}_slope"; se="${p}_slope_every"; sa="${p}_slope_all"
    first_min=$(awk -v c="${p}_rss_kib" -v s="$load_start" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      $2 == "load" && $1 >= s + 60 { print $col[c]; exit }' "$data/samples.txt")
    echo "| $p | $(kib_mib "$(value "${p}_rss_kib" idle first)") | $(kib_mib "$first_min") | $(kib_mib "$(value "${p}_rss_kib" end first)") | $(kib_mib "$(column_max "${p}_rss_kib")") | ${!sv} | ${!se} | ${!sa} | $(value "${p}_fds" idle first) → $(value "${p}_fds" end first) | $(value "${p}_sockets" idle first) → $(value "${p}_sockets" end first) | $(value "${p}_threads" idle first) → $(value "${p}_threads" end first) |"
  done
  echo
  echo "End state, ${grace} s after the last round: bridge \`/colibri/stats\` conferences $(value bridge_conferences end first), endpoints $(value bridge_endpoints end first);"
  echo "focus \`/stats\` conferences $(value focus_conferences end first), participants $(value focus_participants end first)."
  echo "Open fds at the end — bridge: $(cat "$data/bridge-fds-end.txt"); focus: $(cat "$data/focus-fds-end.txt")."
  echo
  echo "## Samples (about one a minute; t from the first sample, load starts at ${load_start} s, ends at ${load_end} s)"
  echo
  echo "| t s | phase | bridge RSS KiB | bridge fds | bridge sockets | bridge threads | focus RSS KiB | focus fds | focus sockets | bridge conferences / endpoints | focus conferences / participants | load avg 1 min |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    function row() {
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n", $1, $2,
        $col["bridge_rss_kib"], $col["bridge_fds"], $col["bridge_sockets"], $col["bridge_threads"],
        $col["focus_rss_kib"], $col["focus_fds"], $col["focus_sockets"],
        $col["bridge_conferences"], $col["bridge_endpoints"], $col["focus_conferences"], $col["focus_participants"], $col["load1"]
    }
    $2 != "load" || $1 >= next_t { row(); if ($2 == "load") next_t = (int($1 / 60) + 1) * 60 }
  ' "$data/samples.txt"
  echo
  echo "Slopes: least squares of VmRSS against time over the load-phase samples ($(($(wc -l <"$data/samples.txt") - 1)) samples in all; \"2nd half\" = $half s ≤ t ≤ $load_end s;"
  echo "\"between rounds\" = only the samples where the bridge held no endpoint (bridge) / the focus no participant (focus): the verdict)."
} >"$report"
log "report written to $report"
cat "$report" >&2
[ "$keep_data" = 0 ] || log "raw data in $data"
exit $status
