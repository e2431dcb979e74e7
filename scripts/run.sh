#!/usr/bin/env bash
# The main job: a complete local Jitsi deployment on this machine —
#   Prosody (installed if missing, configured in a temp dir), our bridge, our focus, and a demo page
#   (lib-jitsi-meet). Open the printed URL in two tabs of any browser and talk to yourself.
# Ctrl-C (or SIGTERM) stops everything and removes the temp dir.
#
# Like JVB, the bridge's media port listens on every interface and advertises the machine's
# non-loopback addresses: browsers never use 127.0.0.1 for WebRTC (only a test flag,
# --allow-loopback-in-peer-connection, makes them), so a loopback-only media port would leave every
# remote video black. XMPP, the bridge/focus REST APIs and the demo page stay on 127.0.0.1.
#
# Environment (all optional):
#   RUN_ROOM         room name of the demo link (default: demo)
#   RUN_WEB_PORT     demo page port (default 8000, or a free one)
#   RUN_MEDIA_PORT   the bridge's UDP media port (default 10000, or a free one)
#   RUN_MEDIA_IP     address(es) the bridge advertises to browsers, comma-separated (default: this
#                    machine's non-loopback addresses). A 127.x address also binds the media port
#                    there only — then just browsers started with the loopback test flag connect.
#   RUN_LISTEN_IP    address for the demo page and Prosody's WebSocket (default 127.0.0.1; set a LAN
#                    address to open the page from another device — browsers only give a camera to
#                    http pages on localhost, so that device needs https in front, or a browser flag)
#   RUN_NO_BUILD=1   use the already built release binaries
#   RUN_NO_DEMO=1    no demo page (and no npm packages): Prosody, bridge and focus only, e.g. for
#                    loadtest/soak.sh, which reads the ports from the lines this script logs
#   CARGO_TARGET_DIR where cargo puts the binaries (default: target)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'run.sh: %s\n' "$*" >&2; }

# ---- dependencies -------------------------------------------------------------------------------
if ! command -v prosody >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  log "installing dependencies (Prosody, Node.js …)"
  scripts/install-deps.sh
fi
[ "${RUN_NO_DEMO:-0}" = 1 ] || e2e/install.sh >/dev/null

target="${CARGO_TARGET_DIR:-target}"
if [ "${RUN_NO_BUILD:-0}" != 1 ]; then
  log "building (release)"
  cargo build --release --locked -p bridge -p focus
fi
bridge_bin="$target/release/bridge"
focus_bin="$target/release/focus"

# ---- ports ----------------------------------------------------------------------------------------
# A port on 127.0.0.1: the preferred one if it is free, else any free one.
port() { # $1 = preferred, $2 = tcp|udp
  node -e '
    const [pref, proto] = [Number(process.argv[1]), process.argv[2]];
    const tryPort = (p, next) => {
      if (proto === "udp") {
        const s = require("dgram").createSocket("udp4");
        s.once("error", next);
        s.bind(p, "127.0.0.1", () => { const a = s.address().port; s.close(); console.log(a); });
      } else {
        const s = require("net").createServer();
        s.once("error", next);
        s.listen(p, "127.0.0.1", () => { const a = s.address().port; s.close(); console.log(a); });
      }
    };
    tryPort(pref, () => tryPort(0, (e) => { console.error(e); process.exit(1); }));
  ' "$1" "$2"
}

c2s=$(port 5222 tcp)
component=$(port 5347 tcp)
http=$(port 5280 tcp)
media=$(port "${RUN_MEDIA_PORT:-10000}" udp)
bridge_rest=$(port 8080 tcp)
focus_rest=$(port 8888 tcp)
web=$(port "${RUN_WEB_PORT:-8000}" tcp)
room="${RUN_ROOM:-demo}"
listen_ip="${RUN_LISTEN_IP:-127.0.0.1}"

# The addresses the bridge advertises: RUN_MEDIA_IP, else every global-scope interface address (what
# the bridge itself would pick, listed here to print them and to warn when there is none).
machine_ips() {
  if command -v ip >/dev/null 2>&1; then
    ip -o addr show scope global 2>/dev/null | awk '{ split($4, a, "/"); print a[1] }'
  else
    hostname -I 2>/dev/null | tr ' ' '\n'
  fi | grep -v -e '^$' -e '^127\.' -e '^::1$' -e '^fe80:' || true
}
if [ -n "${RUN_MEDIA_IP:-}" ]; then
  media_ips="$RUN_MEDIA_IP"
else
  media_ips=$(machine_ips | paste -sd, -)
fi
media_warning=""
if [ -z "$media_ips" ]; then
  media_ips=127.0.0.1
  media_warning="This machine has no non-loopback address: browsers will not reach the bridge's media
  port on 127.0.0.1 (WebRTC never uses loopback without --allow-loopback-in-peer-connection).
  Connect the machine to a network, or set RUN_MEDIA_IP to an address browsers can reach."
fi
# Loopback-only advertising binds the media port there too (nothing else can reach it anyway); any
# other address binds all interfaces, as the bridge does by default.
case "$media_ips" in 127.*) media_host=127.0.0.1 ;; *) media_host=0.0.0.0 ;; esac

domain=meet.jitsi
auth=auth.$domain
muc=muc.$domain
internal=internal-muc.$domain
focus_domain=focus.$domain
secret=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
focus_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
jvb_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

tmp=$(mktemp -d -t jitsi-rs-run.XXXXXX)
pids=()

cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping"
    # Reverse order: demo, focus, bridge, Prosody. SIGINT: the bridge treats SIGTERM as a request for a
    # graceful shutdown (which waits for conferences to end), SIGINT as "exit now".
    for ((i=${#pids[@]}-1; i>=0; i--)); do kill -INT "${pids[$i]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_tcp() { # $1 = port, $2 = what, $3 = pid
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then log "$2 exited; its log:"; cat "$tmp/$2.log" >&2; exit 1; fi
    sleep 0.1
  done
  log "$2 did not open port $1"; cat "$tmp/$2.log" >&2; exit 1
}

wait_http_ok() { # $1 = url, $2 = what, $3 = pid
  for _ in $(seq 300); do
    if "$focus_bin" healthcheck --url "$1" --timeout 1 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then log "$2 exited; its log:"; cat "$tmp/$2.log" >&2; exit 1; fi
    sleep 0.1
  done
  log "$2 is not healthy ($1)"; tail -n 40 "$tmp/$2.log" >&2; exit 1
}

# ---- Prosody --------------------------------------------------------------------------------------
mkdir -p "$tmp/prosody/data"
cat > "$tmp/prosody/prosody.cfg.lua" <<EOF
-- written by scripts/run.sh: loopback only, no TLS
run_as_root = true
daemonize = false
pidfile = "$tmp/prosody/prosody.pid"
data_path = "$tmp/prosody/data"
interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_direct_tls_ports = {}
component_ports = { $component }
component_interfaces = { "127.0.0.1" }
http_ports = { $http }
http_interfaces = { "$listen_ip" }
https_ports = {}
legacy_ssl_ports = {}
s2s_ports = {}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_bosh_secure = true
consider_websocket_secure = true
admins = { "focus@$auth", "jvb@$auth" }
modules_enabled = { "roster", "saslauth", "disco", "ping", "register", "bosh", "websocket", "smacks", "posix" }
modules_disabled = { "s2s" }
log = { { levels = { min = "info" }, to = "file", filename = "$tmp/prosody.log" } }

VirtualHost "$domain"
  authentication = "anonymous"
VirtualHost "$auth"
  authentication = "internal_hashed"
Component "$muc" "muc"
  restrict_room_creation = true
  muc_room_locking = false
Component "$internal" "muc"
  restrict_room_creation = true
  muc_room_locking = false
  -- The brewery is for the focus and the bridge only (server admins, so owners of every room): rooms
  -- here are members-only, as docker-jitsi-meet's muc_filter_access admits only the auth domain.
  muc_room_default_members_only = true
  muc_room_default_public_jids = true
Component "$focus_domain"
  component_secret = "$secret"
EOF
prosodyctl --config "$tmp/prosody/prosody.cfg.lua" register focus "$auth" "$focus_pw" >/dev/null
prosodyctl --config "$tmp/prosody/prosody.cfg.lua" register jvb "$auth" "$jvb_pw" >/dev/null
prosody -F --config "$tmp/prosody/prosody.cfg.lua" >"$tmp/prosody.stdout" 2>&1 &
pids+=($!)
wait_tcp "$c2s" prosody "${pids[-1]}"
log "Prosody on 127.0.0.1:$c2s (XMPP), :$http (WebSocket)"

# ---- bridge ---------------------------------------------------------------------------------------
env XMPP_SERVER=127.0.0.1 XMPP_PORT="$c2s" XMPP_DOMAIN="$domain" XMPP_AUTH_DOMAIN="$auth" \
  XMPP_INTERNAL_MUC_DOMAIN="$internal" JVB_AUTH_USER=jvb JVB_AUTH_PASSWORD="$jvb_pw" \
  JVB_BREWERY_MUC=jvbbrewery JVB_MUC_NICKNAME=jvb-local JVB_PORT="$media" JVB_MEDIA_HOST="$media_host" \
  JVB_ADVERTISE_IPS="$media_ips" JVB_DISABLE_STUN=true JVB_REST_HOST=127.0.0.1 JVB_REST_PORT="$bridge_rest" COLIBRI_REST_ENABLED=true \
  "$bridge_bin" >"$tmp/bridge.log" 2>&1 &
pids+=($!)
bridge_pid=${pids[-1]}

# ---- focus ----------------------------------------------------------------------------------------
env XMPP_SERVER=127.0.0.1 XMPP_PORT="$c2s" XMPP_DOMAIN="$domain" XMPP_AUTH_DOMAIN="$auth" \
  XMPP_MUC_DOMAIN="$muc" XMPP_INTERNAL_MUC_DOMAIN="$internal" JICOFO_AUTH_PASSWORD="$focus_pw" \
  JICOFO_COMPONENT_SECRET="$secret" XMPP_COMPONENT_PORT="$component" \
  "$focus_bin" --rest-port "$focus_rest" >"$tmp/focus.log" 2>&1 &
pids+=($!)
focus_pid=${pids[-1]}
# Healthy = the focus's XMPP client and component are connected and it sees an operational bridge in the brewery.
wait_http_ok "http://127.0.0.1:$focus_rest/about/health" focus "$focus_pid"
kill -0 "$bridge_pid" 2>/dev/null || { log "bridge exited"; cat "$tmp/bridge.log" >&2; exit 1; }
log "bridge media on udp $media_host:$media, advertised as $media_ips (REST 127.0.0.1:$bridge_rest); focus REST 127.0.0.1:$focus_rest"

# ---- demo page ------------------------------------------------------------------------------------
if [ "${RUN_NO_DEMO:-0}" = 1 ]; then
  log "up (no demo page); logs in $tmp"
else
cat > "$tmp/demo.json" <<EOF
{"domain":"$domain","muc":"$muc","focus":"$focus_domain","websocketPort":$http,"room":"$room","resolution":360,"mediaPort":$media,"mediaAddresses":"$media_ips"}
EOF
node e2e/demo-server.js "$web" "$tmp/demo.json" "$listen_ip" >"$tmp/demo.url" 2>"$tmp/demo.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/demo.url" ] && break; sleep 0.1; done
url=$(cat "$tmp/demo.url")
[ -n "$url" ] || { log "demo server did not start"; cat "$tmp/demo.log" >&2; exit 1; }

cat <<EOF

  Local Jitsi deployment is up (Prosody + jitsi-rs bridge + jitsi-rs focus).

    Open in two browser tabs:  $url

  Browsers send media to the bridge at udp $media_ips port $media.
  If the other tab's video stays black, the page tells why; most often a firewall drops that
  UDP port, or the advertised address is not one the browser can reach (set RUN_MEDIA_IP).
${media_warning:+
  WARNING: $media_warning
}
  Logs: $tmp/{prosody,bridge,focus}.log   Stats: http://127.0.0.1:$focus_rest/stats
  Press Ctrl-C to stop.

EOF
fi

# Run until a signal, or until one of the processes dies.
while :; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      log "a process exited unexpectedly; logs in $tmp:"
      tail -n 20 "$tmp"/*.log >&2 || true
      exit 1
    fi
  done
  sleep 1
done
