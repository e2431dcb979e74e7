#!/usr/bin/env bash
# Installs the browser harness's npm packages (pinned by package-lock.json) without running any
# install scripts, so nothing tries to download a browser: tests use the system Chromium.
# Idempotent: does nothing when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"
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
