#!/bin/sh
# The path the jitsi-videobridge package installs its drain script at, for preStop hooks, autoscaler
# sidecars and runbooks written for the jitsi/jvb image. A thin wrapper over
#   bridge graceful-shutdown --wait
# which asks the bridge to stop taking conferences (POST /colibri/shutdown, SHUTDOWN_REST_ENABLED=true)
# and returns once the bridge has no endpoints left and is shutting down, or has exited. The bridge
# exits by itself after that, so there is no process to watch or kill.
#
# Options, as callers of the upstream script pass them:
#   -h URL   the bridge's REST base URL (http://host:port). Default: JVB_REST_HOST/JVB_REST_PORT of
#            this container, read the way the bridge reads them (0.0.0.0 meaning 127.0.0.1).
#   -s       silent: print nothing unless it fails.
#   -p PID   accepted and ignored (the bridge exits on its own once drained).
#   -t SECS  accepted and ignored (no kill after a delay: see -p).
# Exit status: 0 drained, exited, or no bridge running; 1 the bridge refused the request or did not
# answer it; 2 a bad JVB_REST_HOST/JVB_REST_PORT or option.
set -u

url=
silent=
while getopts 'h:sp:t:' opt; do
  case $opt in
    h) url=$OPTARG ;;
    s) silent=1 ;;
    p | t) ;;
    *)
      echo "usage: $0 [-h URL] [-s] [-p PID] [-t SECONDS]" >&2
      exit 2
      ;;
  esac
done

set -- graceful-shutdown --wait
if [ -n "$url" ]; then
  case $url in
    *://*) ;;
    *) url="http://$url" ;;
  esac
  set -- "$@" --url "$url"
fi

if [ -z "$silent" ]; then
  exec /usr/local/bin/bridge "$@"
fi
out=$(/usr/local/bin/bridge "$@" 2>&1)
status=$?
if [ "$status" -ne 0 ]; then
  printf '%s\n' "$out" >&2
fi
exit "$status"
