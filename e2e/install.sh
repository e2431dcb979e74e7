#!/usr/bin/env bash
# Installs the browser harness's npm packages (pinned by package-lock.json) without running any
# install scripts, so nothing tries to download a browser: tests use the system Chromium.
# Idempotent: does nothing when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"

# lib-jitsi-meet, the reference client (upstream 7d34d537, Dec 2021, published as
# @lyno/lib-jitsi-meet): `npm install` fails for it (github: dependencies), so fetch the tarball with
# `npm pack`, check its integrity, and keep only the browser bundle in vendor/.
LJM_SPEC=@lyno/lib-jitsi-meet@2.6726.2
LJM_INTEGRITY=sha512-cTrKBgy4ZHD6vyFTOAOx5ylyzjWs3ft6MLhmchu9zRq7uLr8omD4lE2fmSfoyoSqMjFc/3sU9XLYXiJ21hqQuw==
if [ ! -f vendor/lib-jitsi-meet.min.js ] || [ "$(cat vendor/.ljm-integrity 2>/dev/null)" != "$LJM_INTEGRITY" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "$LJM_SPEC" --loglevel=error >/dev/null)
  tgz=$(ls "$tmp"/*.tgz)
  got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
  if [ "$got" != "$LJM_INTEGRITY" ]; then
    echo "e2e/install.sh: $LJM_SPEC integrity mismatch: $got" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p vendor
  tar -xzf "$tgz" -C "$tmp" package/lib-jitsi-meet.min.js
  mv "$tmp/package/lib-jitsi-meet.min.js" vendor/lib-jitsi-meet.min.js
  echo "$LJM_INTEGRITY" > vendor/.ljm-integrity
  rm -rf "$tmp"
  echo "e2e/install.sh: $LJM_SPEC fetched"
fi

stamp=node_modules/.install-stamp
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/playwright-core ]; then
  echo "e2e/install.sh: up to date"
  exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
command -v chromium >/dev/null 2>&1 || echo "e2e/install.sh: warning: chromium not installed (scripts/install-deps.sh installs it)" >&2
echo "e2e/install.sh: ok"
