#!/usr/bin/env bash
# Add shard N to an overlay by copying its shard-0.
#
#   manifests/add-shard.sh OVERLAY N [ZONE]
#   e.g. manifests/add-shard.sh production 2 zone-c
#
# What it does:
#   1. copies overlays/OVERLAY/shard-0 to overlays/OVERLAY/shard-N, renaming every shard-0 to shard-N
#      (name prefix, XMPP_SERVER=shard-N-prosody, XMPP_BOSH_URL_BASE, DEPLOYMENTINFO_SHARD), the label
#      shard: "0" to shard: "N", and the zone nodeSelector to ZONE (default: shard-0's zone);
#   2. lists shard-N in overlays/OVERLAY/kustomization.yaml.
# Nothing else needs registering: HAProxy discovers shards through the SRV record of the headless Service
# `web`, which selects every shard's web pod, so shard-N-web-0 shows up as a new server within seconds of
# becoming healthy. The script refuses to run if HAProxy's server-template has no free slot.
#
# Then review the diff and apply:  kubectl apply -k manifests/overlays/OVERLAY
set -euo pipefail

usage() { echo "usage: $0 OVERLAY N [ZONE]   (e.g. $0 production 2 zone-c)" >&2; exit 2; }
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
overlay=$1 n=$2 zone=${3:-}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer (shard-0 is the template)" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
dir=$here/overlays/$overlay
src=$dir/shard-0
dst=$dir/shard-$n
[ -d "$src" ] || { echo "no $src to copy from" >&2; exit 1; }
[ -e "$dst" ] && { echo "$dst already exists" >&2; exit 1; }

# HAProxy has a fixed number of server slots for the SRV answers (one per shard web pod).
slots=$(awk '$1 == "server-template" { split($3, r, "-"); print (r[2] == "" ? r[1] : r[2] - r[1] + 1) }' \
  "$here/base/haproxy/haproxy.cfg")
shards=$(find "$dir" -maxdepth 1 -type d -name 'shard-[0-9]*' | wc -l)
if [ "$((shards + 1))" -gt "${slots:-0}" ]; then
  echo "HAProxy's server-template has $slots slots and $overlay already has $shards shards:" >&2
  echo "raise the range in base/haproxy/haproxy.cfg first." >&2
  exit 1
fi

old_zone=$(awk '$1 == "topology.kubernetes.io/zone:" { print $2; exit }' "$src/shard.yaml")
zone=${zone:-$old_zone}
[[ $zone =~ ^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$ ]] || { echo "bad zone name: $zone" >&2; exit 2; }

mkdir "$dst"
for f in "$src"/*; do
  sed -e "s/shard-0\\b/shard-$n/g" \
      -e "s/shard: \"0\"/shard: \"$n\"/g" \
      -e "s/^# Shard 0\\./# Shard $n./" \
      -e "s/topology.kubernetes.io\\/zone: $old_zone\$/topology.kubernetes.io\\/zone: $zone/" \
      "$f" > "$dst/$(basename "$f")"
done

# List the new shard right after the last shard in the overlay's resources.
kust=$dir/kustomization.yaml
awk -v new="shard-$n" '
  { lines[NR] = $0 }
  /^  - shard-[0-9]+$/ { last = NR; indent = $0; sub(/-.*/, "", indent) }
  END {
    if (!last) { print "no \"  - shard-N\" entry in resources" > "/dev/stderr"; exit 1 }
    for (i = 1; i <= NR; i++) { print lines[i]; if (i == last) print indent "- " new }
  }' "$kust" > "$kust.tmp"
mv "$kust.tmp" "$kust"

echo "created overlays/$overlay/shard-$n (zone $zone) and listed it in overlays/$overlay/kustomization.yaml"
echo "next: review with 'kubectl kustomize manifests/overlays/$overlay', then 'kubectl apply -k manifests/overlays/$overlay'"
