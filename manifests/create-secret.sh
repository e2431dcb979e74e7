#!/usr/bin/env bash
# Create the `jitsi-config` Secret (see base/secret.template.yaml) with random passwords, once per cluster.
#
#   manifests/create-secret.sh            # namespace jitsi, current kubectl context
#   NAMESPACE=other manifests/create-secret.sh
#
# Keys: JICOFO_AUTH_PASSWORD (focus@auth.<XMPP_DOMAIN>) and JVB_AUTH_PASSWORD (jvb@auth.<XMPP_DOMAIN>).
# Every shard's Prosody registers both accounts from this Secret at start; focus and bridges log in with
# them. The passwords never appear on a command line (they go through a mode-600 temporary file).
# If the Secret exists, nothing is changed. To rotate: delete it, run this again, then restart every
# shard's prosody, focus and bridge pods (bridges drain first: `kubectl rollout restart`).
set -euo pipefail
ns=${NAMESPACE:-jitsi}

if kubectl -n "$ns" get secret jitsi-config >/dev/null 2>&1; then
  echo "secret $ns/jitsi-config exists; leaving it unchanged"
  exit 0
fi

password() { # 32 characters from the kernel's CSPRNG, alphanumeric (safe in Lua, HOCON and shells)
  local p=""
  while [ ${#p} -lt 32 ]; do
    p+=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${p:0:32}"
}

umask 077
envfile=$(mktemp)
trap 'rm -f "$envfile"' EXIT
{
  echo "JICOFO_AUTH_PASSWORD=$(password)"
  echo "JVB_AUTH_PASSWORD=$(password)"
} > "$envfile"

# The namespace is part of the kustomization too; creating it here lets the Secret exist before the
# first `kubectl apply -k`, so pods start without a CreateContainerConfigError round.
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
kubectl -n "$ns" create secret generic jitsi-config --from-env-file="$envfile"
echo "created secret $ns/jitsi-config"
