#!/usr/bin/env bash
# Builds the bridge and focus images with podman where no image registry is reachable and the image
# build cannot download a Rust toolchain (the CI machines): makes the Debian base image the Dockerfiles'
# runtime stage names (FROM debian:…-slim) locally with debootstrap, once, then builds each image from
# its own Dockerfile with the prebuilt binary handed in as the `build` stage (a named build context
# replaces the stage of that name, so the Rust stage is skipped). Only Debian's package mirror is used.
#
#   manifests/docker/build-local.sh --binaries DIR [--tag TAG] [--prefix PREFIX]
#
#   --binaries DIR  directory holding the `bridge` and `focus` executables (e.g. target/release); the
#                   copies put in the images lose their debug info, as in the Dockerfiles' build stage
#   --tag, --prefix images are PREFIX/bridge:TAG and PREFIX/focus:TAG (localhost/jitsi-rs, 0.1.0)
#
# Environment: CONTAINERS_CONF (default: podman/containers.conf next to this script); PODMAN_ROOT=DIR
# keeps images and containers under DIR/storage and DIR/run instead of podman's default store;
# DEBIAN_MIRROR (default http://deb.debian.org/debian). Needs root (debootstrap), podman, runc,
# debootstrap, objcopy (scripts/install-deps.sh installs them). Prints each image's size and what it adds to
# the base. Safe to run concurrently and again: the base is made once, unchanged layers are reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

binaries='' tag=0.1.0 prefix=localhost/jitsi-rs
while [ $# -gt 0 ]; do
  case $1 in
    --binaries) binaries=${2:?--binaries needs a directory}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    *) echo "build-local.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$binaries" ] || { echo "build-local.sh: --binaries DIR is required" >&2; exit 2; }
binaries=$(cd "$binaries" && pwd)

export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/podman/containers.conf}
podman=(podman)
if [ -n "${PODMAN_ROOT:-}" ]; then
  mkdir -p "$PODMAN_ROOT"
  podman+=(--root "$PODMAN_ROOT/storage" --runroot "$PODMAN_ROOT/run")
fi
for tool in podman runc debootstrap objcopy; do
  command -v "$tool" >/dev/null || { echo "build-local.sh: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One build at a time per store (tests may call this in parallel).
lock=${PODMAN_ROOT:-/var/lib/containers}/.jitsi-rs-build-local.lock
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9

# The runtime stage's base: the last FROM of the Dockerfile.
runtime_base() { awk 'toupper($1) == "FROM" { image = $2 } END { print image }' "$1"; }

# Makes IMAGE (debian:<major>.<minor>-slim) from the same Debian release with debootstrap, trimmed the
# way Debian's slim images are (no manuals, docs or locales; package lists and caches emptied).
make_base() {
  local image=$1 version major suite root
  version=${image#*:}
  major=${version%%.*}
  case "$image:$major" in
    debian:*-slim:12 | docker.io/library/debian:*-slim:12) suite=bookworm ;;
    *) echo "build-local.sh: cannot make base image $image locally (only debian:12.x-slim)" >&2; exit 1 ;;
  esac
  root=$tmp/rootfs
  echo "build-local.sh: making $image with debootstrap --variant=minbase $suite"
  debootstrap --variant=minbase "$suite" "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
    >"$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$root"/usr/share/{man,info,locale}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
  echo "build-local.sh: debootstrap made Debian $(cat "$root/etc/debian_version") for $image"
  tar -C "$root" -c . | "${podman[@]}" import --quiet --change 'CMD ["bash"]' - "docker.io/library/$image" >/dev/null
  rm -rf "$root"
}

size() { "${podman[@]}" image inspect --format '{{.Size}}' "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

for name in bridge focus; do
  dockerfile=$here/$name.Dockerfile
  base=$(runtime_base "$dockerfile")
  base=${base#docker.io/library/}
  "${podman[@]}" image exists "docker.io/library/$base" || make_base "$base"
  [ -x "$binaries/$name" ] || { echo "build-local.sh: $binaries/$name is missing or not executable" >&2; exit 1; }
  mkdir -p "$tmp/$name/out"
  objcopy --strip-debug "$binaries/$name" "$tmp/$name/out/$name"
  image=$prefix/$name:$tag
  # --format docker: OCI image configs have no HEALTHCHECK. --pull=never: the base is local.
  "${podman[@]}" build --quiet --format docker --pull=never \
    --build-context "build=$tmp/$name" \
    --ignorefile "$dockerfile.dockerignore" \
    -f "$dockerfile" -t "$image" "$repo" >/dev/null
  total=$(size "$image")
  echo "build-local.sh: $image: $(mb "$total"), $(mb $((total - $(size "docker.io/library/$base")))) on top of $base"
done
