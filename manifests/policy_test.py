#!/usr/bin/env python3
"""Policy test over the rendered manifests (run by manifests/check.sh).

    policy_test.py --rendered DIR [--write-env]

DIR holds one `<overlay>.yaml` per rendered overlay (`kubectl kustomize overlays/<overlay>`) and
`prometheus-adapter.yaml` (`kubectl kustomize ops/prometheus-adapter`). The test

1. checks every overlay against the deployment rules below (bridges on hostNetwork with UDP 10000 and a
   graceful preStop, probes and limits everywhere, pinned images, no plaintext secrets, private REST
   ports, per-shard Prosody wiring, room-sticky HAProxy that finds every shard, NetworkPolicy, PDB/HPA,
   CRDs against the schemas in schemas/, PromQL that parses and names only metrics from metrics.txt);
2. checks the sources the render does not show (Dockerfiles, compose override, Secret template,
   sizing markers);
3. proves itself: every fixture in policy-fixtures/ is applied to the production render (or is a bad
   Dockerfile / compose file) and must make the named rule fire;
4. exports the env of the production shard-0 bridge and focus containers to env/*.env (--write-env),
   or fails if the committed files are stale, so the Rust entrypoint tests run the binaries with exactly
   the env the manifests set.

Exit status 0 when everything holds; 1 with one line per violation otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ADMIN_PORTS = {8080, 8888}
MEDIA_PORT = 10000
SHARDED = ("prosody", "focus", "bridge", "web")
# Minimum terminationGracePeriodSeconds of a bridge: conferences must be able to end.
MIN_BRIDGE_GRACE = {"production": 3600}
DEFAULT_MIN_BRIDGE_GRACE = 300
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
SENSITIVE = re.compile(r"(PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|_KEY)$|(PASSWORD|SECRET)", re.I)
PLACEHOLDER = re.compile(r"^(|CHANGE_?ME[-_A-Za-z0-9]*|<[^>]*>)$")
METRIC_NAME = re.compile(r"\bjitsi_(?:jvb|jicofo)_[a-z0-9_]+\b")
SIZING_MARKER = "# sized from measurement: see README"
# Groups kubernetes-validate knows; anything else is a CRD and needs a schema in schemas/.
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}


# --------------------------------------------------------------------------------------------------
# Loading and small helpers


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ident(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def base_name(name: str) -> str:
    """Name without kustomize's 10-character content-hash suffix (configMapGenerator)."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def pod_template(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return {"metadata": doc.get("metadata", {}), "spec": doc.get("spec", {})}
    if kind in WORKLOAD_KINDS:
        return doc.get("spec", {}).get("template")
    return None


def workloads(docs: list[dict]):
    for d in docs:
        t = pod_template(d)
        if t is not None:
            yield d, t.get("metadata", {}).get("labels", {}) or {}, t.get("spec", {}) or {}


def component(labels: dict) -> str | None:
    return labels.get("app.kubernetes.io/name")


def containers(spec: dict, init: bool = True):
    for c in spec.get("containers", []) or []:
        yield c, False
    if init:
        for c in spec.get("initContainers", []) or []:
            yield c, True


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """Label-selector semantics (matchLabels + matchExpressions); a plain map is matchLabels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    for d in docs:
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
            return d
    return None


def resolve_env(docs: list[dict], container: dict) -> dict[str, str]:
    """The env a container starts with, as the kubelet builds it. Values the cluster supplies at run
    time become placeholders: ${HOST_IP}, ${POD_IP}, ${POD_NAME}, ${SECRET_<KEY>}."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []) or []:
        ref = src.get("configMapRef")
        if ref:
            cm = find(docs, "ConfigMap", ref["name"])
            if cm is None:
                env["__missing__" + ref["name"]] = "configMap not in render"
                continue
            prefix = src.get("prefix", "")
            for k, v in (cm.get("data") or {}).items():
                env[prefix + k] = str(v)
        if src.get("secretRef"):
            env["__secretRef__"] = src["secretRef"]["name"]
    field_placeholders = {
        "status.hostIP": "${HOST_IP}",
        "status.podIP": "${POD_IP}",
        "metadata.name": "${POD_NAME}",
        "metadata.namespace": "${POD_NAMESPACE}",
        "spec.nodeName": "${NODE_NAME}",
    }
    for e in container.get("env", []) or []:
        name = e["name"]
        if "value" in e:
            # $(VAR) expands to an earlier variable, as in Kubernetes; $$ escapes.
            value = str(e["value"])
            value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)
            env[name] = value
            continue
        vf = e.get("valueFrom", {})
        if "fieldRef" in vf:
            env[name] = field_placeholders.get(vf["fieldRef"]["fieldPath"], "${FIELD:" + vf["fieldRef"]["fieldPath"] + "}")
        elif "secretKeyRef" in vf:
            env[name] = "${SECRET_" + vf["secretKeyRef"]["key"] + "}"
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = find(docs, "ConfigMap", ref["name"])
            env[name] = str((cm or {}).get("data", {}).get(ref["key"], "${MISSING}"))
        elif "resourceFieldRef" in vf:
            env[name] = "${RESOURCE:" + vf["resourceFieldRef"]["resource"] + "}"
        else:
            env[name] = ""
    return env


def port_numbers(docs: list[dict], svc: dict, port: dict) -> set:
    """Numbers a Service port reaches: its port and the target port (a name resolved on the pods)."""
    nums = {port.get("port")}
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        nums.add(target)
    else:
        for _, labels, spec in workloads(docs):
            if selector_matches(svc.get("spec", {}).get("selector"), labels):
                for c, _ in containers(spec, init=False):
                    for p in c.get("ports", []) or []:
                        if p.get("name") == target:
                            nums.add(p.get("containerPort"))
        nums.add(target)
    return nums


# --------------------------------------------------------------------------------------------------
# Rules over one rendered overlay. Each returns a list of violation strings.


def check_bridges(docs, overlay):
    v = []
    min_grace = MIN_BRIDGE_GRACE.get(overlay, DEFAULT_MIN_BRIDGE_GRACE)
    found = 0
    for d, labels, spec in workloads(docs):
        if component(labels) != "bridge":
            continue
        found += 1
        w = ident(d)
        if spec.get("hostNetwork") is not True:
            v.append(f"{w}: bridge pods must run with hostNetwork: true (UDP on the node, no NodePort per pod)")
        if spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
            v.append(f"{w}: hostNetwork bridge needs dnsPolicy: ClusterFirstWithHostNet to resolve Services")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < min_grace:
            v.append(f"{w}: terminationGracePeriodSeconds {grace} < {min_grace}: conferences cannot end before SIGKILL")
        anti = (spec.get("affinity", {}).get("podAntiAffinity", {}) or {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
        one_per_node = [
            t for t in anti
            if t.get("topologyKey") == "kubernetes.io/hostname"
            and selector_matches(t.get("labelSelector"), {"app.kubernetes.io/name": "bridge", "shard": "__any_other__"})
        ]
        if not one_per_node:
            v.append(f"{w}: bridges need required podAntiAffinity on kubernetes.io/hostname matching bridges of every shard (one UDP 10000 per node)")
        main = [c for c, init in containers(spec) if not init]
        if not main:
            v.append(f"{w}: no containers")
            continue
        c = next((c for c in main if c.get("name") == "bridge"), main[0])
        env = resolve_env(docs, c)
        udp = [p for p in c.get("ports", []) or [] if p.get("protocol") == "UDP"]
        if [p.get("containerPort") for p in udp] != [MEDIA_PORT]:
            v.append(f"{w}: bridge must declare exactly UDP {MEDIA_PORT} (found {[p.get('containerPort') for p in udp]})")
        if env.get("JVB_PORT") != str(MEDIA_PORT):
            v.append(f"{w}: JVB_PORT must be {MEDIA_PORT} (found {env.get('JVB_PORT')!r})")
        pre = (c.get("lifecycle", {}) or {}).get("preStop", {}) or {}
        cmd = " ".join(map(str, (pre.get("exec") or {}).get("command", [])))
        if "graceful-shutdown" not in cmd:
            v.append(f"{w}: bridge needs a preStop hook running `bridge graceful-shutdown --wait` (found {cmd!r})")
        rest_host = env.get("JVB_REST_HOST", "")
        if rest_host not in ("${HOST_IP}", "127.0.0.1"):
            v.append(f"{w}: JVB_REST_HOST is {rest_host!r}: on hostNetwork the REST port must bind the node's internal address (status.hostIP) or 127.0.0.1, never all addresses")
        if not env.get("JVB_ADVERTISE_IPS"):
            v.append(f"{w}: JVB_ADVERTISE_IPS must be set (node address from the downward API, or public IPs)")
        for p in c.get("ports", []) or []:
            if p.get("protocol", "TCP") == "TCP" and p.get("containerPort") != int(env.get("JVB_REST_PORT", "8080") or 0):
                v.append(f"{w}: unexpected TCP port {p.get('containerPort')} on a hostNetwork bridge")
    if found == 0:
        v.append("no bridge workload in the render")
    return v


def check_containers(docs, overlay):
    v = []
    for d, _, spec in workloads(docs):
        for c, init in containers(spec):
            w = f"{ident(d)} container {c.get('name')}"
            if not init:
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        v.append(f"{w}: missing {probe}")
            res = c.get("resources", {}) or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if not (res.get(part) or {}).get(r):
                        v.append(f"{w}: missing resources.{part}.{r}")
            if not init:
                for p in c.get("ports", []) or []:
                    if p.get("hostPort") and not spec.get("hostNetwork"):
                        v.append(f"{w}: hostPort {p['hostPort']} (only the hostNetwork bridge may bind node ports)")
    return v


def check_our_containers_hardened(docs, overlay):
    """The images we build run unprivileged with a read-only root (the jitsi/* images need s6 as root)."""
    v = []
    for d, labels, spec in workloads(docs):
        if component(labels) not in ("bridge", "focus"):
            continue
        psc = spec.get("securityContext", {}) or {}
        for c, _ in containers(spec):
            sc = c.get("securityContext", {}) or {}
            w = f"{ident(d)} container {c.get('name')}"
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                v.append(f"{w}: must set runAsNonRoot")
            if sc.get("readOnlyRootFilesystem") is not True:
                v.append(f"{w}: must set readOnlyRootFilesystem: true")
            if sc.get("allowPrivilegeEscalation") is not False:
                v.append(f"{w}: must set allowPrivilegeEscalation: false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                v.append(f"{w}: must drop ALL capabilities")
        if spec.get("automountServiceAccountToken") is not False:
            v.append(f"{ident(d)}: must not mount a service-account token (it needs no API access)")
    return v


def image_problem(image: str) -> str | None:
    if not image:
        return "empty image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag (implicitly :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag in ("latest", "") or tag.startswith("latest-") or tag in ("stable", "unstable", "master", "main"):
        return f"moving tag :{tag}"
    return None


def check_images(docs, overlay):
    v = []
    for d, _, spec in workloads(docs):
        for c, _ in containers(spec):
            problem = image_problem(c.get("image", ""))
            if problem:
                v.append(f"{ident(d)} container {c.get('name')}: image {c.get('image')!r} is not pinned: {problem}")
    return v


def secret_problems(doc: dict) -> list[str]:
    v = []
    for part in ("data", "stringData"):
        for k, val in (doc.get(part) or {}).items():
            if not PLACEHOLDER.match(str(val if val is not None else "")):
                v.append(f"{ident(doc)}: {part}.{k} holds a value; Secrets in git must be empty placeholders")
    return v


def check_secrets(docs, overlay):
    v = []
    for d in docs:
        if d.get("kind") == "Secret":
            v += secret_problems(d)
        if d.get("kind") == "ConfigMap":
            for k, val in (d.get("data") or {}).items():
                if SENSITIVE.search(k) and str(val).strip():
                    v.append(f"{ident(d)}: key {k} looks secret; put it in the Secret, not a ConfigMap")
    for d, _, spec in workloads(docs):
        for c, _ in containers(spec):
            for e in c.get("env", []) or []:
                if SENSITIVE.search(e["name"]) and "value" in e and str(e["value"]).strip():
                    v.append(f"{ident(d)} container {c.get('name')}: env {e['name']} is a literal value; use secretKeyRef")
    return v


def check_exposure(docs, overlay):
    """REST admin ports (8080 bridge, 8888 focus) never reachable from outside the cluster."""
    v = []
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    for name, svc in services.items():
        spec = svc.get("spec", {})
        external = spec.get("type") in ("LoadBalancer", "NodePort") or spec.get("externalIPs")
        selected = {component(lbl) for _, lbl, _ in workloads(docs) if selector_matches(spec.get("selector"), lbl)}
        for p in spec.get("ports", []) or []:
            nums = port_numbers(docs, svc, p)
            if external and (nums & ADMIN_PORTS or "rest" in nums):
                v.append(f"Service/{name}: type {spec.get('type')} exposes admin REST port {sorted(str(n) for n in nums)}")
            if external and selected & {"focus"}:
                v.append(f"Service/{name}: type {spec.get('type')} exposes the focus")
    for d in docs:
        if d.get("kind") != "Ingress":
            continue
        backends = []
        spec = d.get("spec", {})
        if spec.get("defaultBackend"):
            backends.append(spec["defaultBackend"])
        for rule in spec.get("rules", []) or []:
            for path in (rule.get("http") or {}).get("paths", []) or []:
                backends.append(path.get("backend", {}))
        for b in backends:
            s = b.get("service")
            if not s:
                v.append(f"{ident(d)}: backend without a Service")
                continue
            svc = services.get(s["name"])
            if svc is None:
                v.append(f"{ident(d)}: backend Service {s['name']} is not in the render")
                continue
            want = s.get("port", {})
            for p in svc["spec"].get("ports", []) or []:
                if want.get("name") in (None, p.get("name")) and want.get("number") in (None, p.get("port")):
                    nums = port_numbers(docs, svc, p)
                    if nums & ADMIN_PORTS or "rest" in nums:
                        v.append(f"{ident(d)}: routes to admin REST port {sorted(str(n) for n in nums)} of Service/{s['name']}")
            selected = {component(lbl) for _, lbl, _ in workloads(docs) if selector_matches(svc["spec"].get("selector"), lbl)}
            if selected & {"bridge", "focus"}:
                v.append(f"{ident(d)}: routes to {sorted(selected & {'bridge', 'focus'})} pods (only HAProxy is public)")
    return v


def host_of(url_or_host: str) -> str:
    h = re.sub(r"^[a-z]+://", "", url_or_host)
    return re.split(r"[:/]", h, maxsplit=1)[0]


def check_shards(docs, overlay):
    v = []
    shards: dict[str, dict[str, list]] = {}
    for d, labels, spec in workloads(docs):
        comp = component(labels)
        if comp in SHARDED:
            shard = labels.get("shard")
            if shard is None:
                v.append(f"{ident(d)}: {comp} pods carry no `shard` label")
                continue
            shards.setdefault(shard, {}).setdefault(comp, []).append((d, spec))
    if len(shards) < 2:
        v.append(f"expected at least 2 shards, found {sorted(shards)}")
    for shard, comps in sorted(shards.items()):
        prosody_name = f"shard-{shard}-prosody"
        for comp in SHARDED:
            if comp not in comps:
                v.append(f"shard {shard}: no {comp} workload")
        for comp in ("prosody", "focus"):
            for d, _ in comps.get(comp, []):
                if d.get("spec", {}).get("replicas", 1) != 1:
                    v.append(f"{ident(d)}: {comp} is a per-shard singleton; replicas must be 1")
        svc = find(docs, "Service", prosody_name)
        if svc is None:
            v.append(f"shard {shard}: Service {prosody_name} missing")
        else:
            sel = svc["spec"].get("selector") or {}
            if sel.get("shard") != shard or sel.get("app.kubernetes.io/name") != "prosody":
                v.append(f"Service/{prosody_name}: must select prosody pods of shard {shard} (selector {sel})")
            if 5222 not in {p.get("port") for p in svc["spec"].get("ports", [])}:
                v.append(f"Service/{prosody_name}: no port 5222")
        zones = set()
        for comp, items in comps.items():
            for d, spec in items:
                zones.add((spec.get("nodeSelector") or {}).get("topology.kubernetes.io/zone"))
                main = [c for c, init in containers(spec) if not init]
                env = resolve_env(docs, main[0]) if main else {}
                if comp in ("focus", "bridge"):
                    xs = env.get("XMPP_SERVER", "")
                    servers = [host_of(s.strip()) for s in xs.split(",") if s.strip()]
                    if not servers or any(s != prosody_name and not s.startswith(prosody_name + ".") for s in servers):
                        v.append(f"{ident(d)}: XMPP_SERVER={xs!r} but shard {shard} must use its own Prosody {prosody_name}")
                if comp == "web":
                    bosh = env.get("XMPP_BOSH_URL_BASE", "")
                    if not host_of(bosh).startswith(prosody_name + "."):
                        v.append(f"{ident(d)}: XMPP_BOSH_URL_BASE={bosh!r} but shard {shard} must proxy to {prosody_name} (FQDN: nginx ignores search domains)")
        if None in zones or len(zones) != 1:
            v.append(f"shard {shard}: every workload needs the same topology.kubernetes.io/zone nodeSelector (found {sorted(map(str, zones))})")
    # No workload selector may match another workload's pods (shards must not adopt each other's pods).
    wl = [(d, lbl) for d, lbl, _ in workloads(docs) if d.get("kind") != "Pod"]
    for d, _ in wl:
        sel = d.get("spec", {}).get("selector")
        for other, lbl in wl:
            if other is not d and selector_matches(sel, lbl):
                v.append(f"{ident(d)}: its selector also matches the pods of {ident(other)}")
    return v


def haproxy_config(docs) -> tuple[dict | None, str | None]:
    for d, labels, spec in workloads(docs):
        if component(labels) == "haproxy":
            for vol in spec.get("volumes", []) or []:
                cm_name = (vol.get("configMap") or {}).get("name")
                if cm_name:
                    cm = find(docs, "ConfigMap", cm_name)
                    if cm and "haproxy.cfg" in (cm.get("data") or {}):
                        return d, cm["data"]["haproxy.cfg"]
            return d, None
    return None, None


def check_haproxy(docs, overlay):
    v = []
    sts, cfg = haproxy_config(docs)
    if sts is None:
        return ["no HAProxy workload in the render"]
    if cfg is None:
        return [f"{ident(sts)}: no haproxy.cfg ConfigMap mounted"]
    lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in cfg.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    # Room variable: set from url_param(room) directly or via a txn variable.
    room_vars = {m.group(1) for ln in lines for m in [re.match(r"http-request set-var\((\S+)\)\s+url_param\(room\)", ln)] if m}
    room_exprs = {"url_param(room)", "urlp(room)"} | {f"var({x})" for x in room_vars}
    tables = [ln for ln in lines if ln.startswith("stick-table ")]
    sticks = [ln for ln in lines if re.match(r"stick (on|match|store-request) ", ln)]
    if not any(re.search(r"\btype string\b", t) for t in tables):
        v.append("haproxy.cfg: no `stick-table type string` for room names")
    if not any(any(expr in s for expr in room_exprs) for s in sticks):
        v.append("haproxy.cfg: no `stick on` keyed on the `room` URL parameter")
    peers_ref = [m.group(1) for t in tables for m in [re.search(r"\bpeers (\S+)", t)] if m]
    if not peers_ref:
        v.append("haproxy.cfg: the stick table is not replicated (`peers` missing)")
    sections = {}
    cur = None
    for ln in lines:
        head = ln.split()[0]
        if head in ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers"):
            cur = (head, ln.split()[1] if len(ln.split()) > 1 else "")
            sections[cur] = []
        elif cur:
            sections[cur].append(ln)
    replicas = sts.get("spec", {}).get("replicas", 1)
    gov = sts.get("spec", {}).get("serviceName")
    ns = sts.get("metadata", {}).get("namespace", "jitsi")
    for p in peers_ref:
        peer_lines = [ln.split() for ln in sections.get(("peers", p), []) if ln.startswith(("peer ", "server "))]
        names = {pl[1] for pl in peer_lines}
        want = {f"{sts['metadata']['name']}-{i}" for i in range(replicas)}
        if names != want:
            v.append(f"haproxy.cfg: peers {p} lists {sorted(names)} but the HAProxy pods are {sorted(want)}")
        for pl in peer_lines:
            if len(pl) > 2 and not pl[2].startswith(f"{pl[1]}.{gov}.{ns}.svc."):
                v.append(f"haproxy.cfg: peer {pl[1]} address {pl[2]} is not its pod DNS name under Service {gov}")
    if replicas < 2:
        v.append(f"{ident(sts)}: HAProxy needs at least 2 replicas (peers)")
    templates = [ln.split() for ln in lines if ln.startswith("server-template ")]
    if not templates:
        v.append("haproxy.cfg: no server-template: shards are not discovered through DNS")
    web_pods = [(d, lbl) for d, lbl, _ in workloads(docs) if component(lbl) == "web"]
    total_web = sum(d.get("spec", {}).get("replicas", 1) for d, _ in web_pods)
    for t in templates:
        m = re.match(r"_([a-z0-9-]+)\._tcp\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.", t[3]) if len(t) > 3 else None
        if not m or "resolvers" not in t:
            v.append(f"haproxy.cfg: server-template {' '.join(t[1:4])} must resolve an SRV record _port._tcp.svc.ns.svc.<domain> through `resolvers`")
            continue
        port_name, svc_name, svc_ns = m.groups()
        r = re.match(r"(?:(\d+)-)?(\d+)$", t[2])
        slots = (int(r.group(2)) - int(r.group(1) or 1) + 1) if r else 0
        if slots < total_web:
            v.append(f"haproxy.cfg: server-template has {slots} slots for {total_web} shard web pods")
        svc = find(docs, "Service", svc_name)
        if svc is None or svc.get("metadata", {}).get("namespace", ns) != svc_ns:
            v.append(f"haproxy.cfg: SRV Service {svc_name}.{svc_ns} is not in the render")
            continue
        if svc["spec"].get("clusterIP") != "None":
            v.append(f"Service/{svc_name}: must be headless for per-shard SRV answers")
        if port_name not in {p.get("name") for p in svc["spec"].get("ports", [])}:
            v.append(f"Service/{svc_name}: no port named {port_name} for _{port_name}._tcp")
        for d, lbl in web_pods:
            if not selector_matches(svc["spec"].get("selector"), lbl):
                v.append(f"Service/{svc_name}: does not select {ident(d)}, so HAProxy will never find that shard")
            if d.get("kind") == "StatefulSet" and d["spec"].get("serviceName") != svc_name:
                v.append(f"{ident(d)}: serviceName must be {svc_name} (stable SRV targets)")
    return v


def allows_port(rule: dict, names: set) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port") in names for p in ports)


def check_networkpolicy(docs, overlay):
    v = []
    nps = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    if not any(
        d["spec"].get("podSelector") in ({}, None) and "Ingress" in (d["spec"].get("policyTypes") or []) and not d["spec"].get("ingress")
        for d in nps
    ):
        v.append("no default-deny ingress NetworkPolicy in the namespace")
    for d, labels, spec in workloads(docs):
        if component(labels) != "focus":
            continue
        covering = [np for np in nps if selector_matches(np["spec"].get("podSelector"), labels)]
        if not covering:
            v.append(f"{ident(d)}: no NetworkPolicy selects the focus (REST 8888 must be explicitly limited)")
        for np in covering:
            for rule in np["spec"].get("ingress", []) or []:
                if not allows_port(rule, {8888, "rest"}):
                    continue
                peers = rule.get("from")
                if not peers:
                    v.append(f"{ident(np)}: opens focus REST 8888 to everyone")
                for peer in peers or []:
                    if "ipBlock" in peer:
                        v.append(f"{ident(np)}: opens focus REST 8888 to an ipBlock {peer['ipBlock'].get('cidr')}")
                    ns_sel = peer.get("namespaceSelector")
                    if ns_sel is not None and not ns_sel:
                        v.append(f"{ident(np)}: opens focus REST 8888 to every namespace")
    return v


def check_pdb_hpa(docs, overlay, adapter_docs):
    v = []
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for d, labels, _ in workloads(docs):
        if component(labels) in ("bridge", "focus", "prosody"):
            if not any(selector_matches(p["spec"].get("selector"), labels) for p in pdbs):
                v.append(f"{ident(d)}: no PodDisruptionBudget covers it")
    hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"]
    served = set()
    for a in adapter_docs:
        if a.get("kind") == "ConfigMap" and "config.yaml" in (a.get("data") or {}):
            for rule in (yaml.safe_load(a["data"]["config.yaml"]) or {}).get("rules", []):
                served.add((rule.get("name") or {}).get("as") or rule.get("seriesQuery", "").split("{")[0])
    for d, labels, _ in workloads(docs):
        if component(labels) != "bridge":
            continue
        targeting = [h for h in hpas if h["spec"]["scaleTargetRef"].get("name") == d["metadata"]["name"]
                     and h["spec"]["scaleTargetRef"].get("kind") == d["kind"]]
        if not targeting:
            v.append(f"{ident(d)}: no HorizontalPodAutoscaler scales it")
        elif "replicas" in d.get("spec", {}):
            v.append(f"{ident(d)}: sets spec.replicas although an HPA owns it (every apply would reset the scale)")
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        if find(docs, ref.get("kind"), ref.get("name")) is None:
            v.append(f"{ident(h)}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not in the render")
        for m in h["spec"].get("metrics", []) or []:
            if m.get("type") in ("Pods", "Object", "External"):
                name = m[m["type"].lower()]["metric"]["name"]
                if name not in served:
                    v.append(f"{ident(h)}: metric {name} is not served by any prometheus-adapter rule (ops/prometheus-adapter)")
    return v


def schema_path(doc: dict) -> Path:
    return HERE / "schemas" / doc["apiVersion"].replace("/", "_") / f"{doc['kind']}.json"


def is_crd(doc: dict) -> bool:
    api = doc.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    return not (group in BUILTIN_GROUPS or group.endswith(".k8s.io"))


def validate_schema(doc: dict, schema_file: Path, what: str) -> list[str]:
    import jsonschema

    if not schema_file.exists():
        return [f"{what}: no schema {schema_file.relative_to(HERE)}; CRDs must be validated (add a minimal schema)"]
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{what}: schema {schema_file.relative_to(HERE)}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check_crds(docs, overlay):
    v = []
    for d in docs:
        if is_crd(d):
            v += validate_schema(d, schema_path(d), ident(d))
    return v


def promql_problems(expr: str, where: str, known: set) -> list[str]:
    import promql_parser

    v = []
    try:
        promql_parser.parse(expr)
    except Exception as e:  # noqa: BLE001 - the parser raises ValueError, report whatever it says
        v.append(f"{where}: PromQL does not parse: {e}: {expr!r}")
    for name in METRIC_NAME.findall(expr):
        if name not in known:
            v.append(f"{where}: metric {name} is not in metrics.txt (the binaries' contract)")
    return v


def known_metrics() -> set:
    return {ln.strip() for ln in (HERE / "metrics.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def check_promql(docs, overlay, adapter_docs=()):
    v = []
    known = known_metrics()
    rules = dashboards = 0
    for d in docs:
        if d.get("kind") == "PrometheusRule":
            for g in d.get("spec", {}).get("groups", []):
                for r in g.get("rules", []):
                    rules += 1
                    v += promql_problems(r.get("expr", ""), f"{ident(d)} {r.get('alert') or r.get('record')}", known)
        if d.get("kind") == "ConfigMap" and (d.get("metadata", {}).get("labels") or {}).get("grafana_dashboard"):
            for key, text in (d.get("data") or {}).items():
                try:
                    dash = json.loads(text)
                except json.JSONDecodeError as e:
                    v.append(f"{ident(d)} {key}: dashboard is not JSON: {e}")
                    continue
                dashboards += 1
                for p in dash.get("panels", []):
                    for t in p.get("targets", []) or []:
                        v += promql_problems(t.get("expr", ""), f"{ident(d)} panel {p.get('title')!r}", known)
    if rules == 0:
        v.append("no PrometheusRule in the render")
    if dashboards == 0:
        v.append("no Grafana dashboard ConfigMap in the render")
    for a in adapter_docs:
        if a.get("kind") == "ConfigMap" and "config.yaml" in (a.get("data") or {}):
            config = yaml.safe_load(a["data"]["config.yaml"])
            v += validate_schema(config, HERE / "schemas/prometheus-adapter/config.json", f"{ident(a)} config.yaml")
            for rule in config.get("rules", []):
                series = rule.get("seriesQuery", "").split("{")[0]
                q = rule.get("metricsQuery", "").replace("<<.Series>>", series)
                q = q.replace("<<.LabelMatchers>>", 'namespace="jitsi",pod="p"').replace("<<.GroupBy>>", "pod")
                v += promql_problems(q, f"{ident(a)} rule {(rule.get('name') or {}).get('as')}", known)
                v += promql_problems(rule.get("seriesQuery", ""), f"{ident(a)} seriesQuery", known)
    return v


# docker-jitsi-meet's Prosody image keeps the internal MUC (the bridge brewery) to accounts of
# XMPP_AUTH_DOMAIN (`muc_filter_access` with `muc_filter_whitelist`) from stable-10008 on; before, any
# anonymous user could enter the brewery and pose as a bridge or take the focus out of it (issue 11).
PROSODY_MIN_RELEASE = 10008


def check_prosody_brewery_access(docs, overlay):
    v = []
    for d, _, spec in workloads(docs):
        for c, _ in containers(spec):
            image = c.get("image", "")
            name = image.split("@", 1)[0].rsplit("/", 1)[-1]
            if not name.startswith("prosody:"):
                continue
            tag = name.split(":", 1)[1]
            m = re.fullmatch(r"stable-(\d+)(-\d+)?", tag)
            if not m or int(m.group(1)) < PROSODY_MIN_RELEASE:
                v.append(
                    f"{ident(d)}: Prosody image {image!r} must be a docker-jitsi-meet release >= "
                    f"stable-{PROSODY_MIN_RELEASE} (its internal MUC admits only XMPP_AUTH_DOMAIN accounts)"
                )
            env = resolve_env(docs, c)
            if env.get("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi") == env.get(
                "XMPP_MUC_DOMAIN", "muc.meet.jitsi"
            ):
                v.append(f"{ident(d)}: XMPP_INTERNAL_MUC_DOMAIN must not be the conference MUC domain (the brewery would be open to participants)")
    return v


RENDER_CHECKS = [
    check_bridges,
    check_prosody_brewery_access,
    check_containers,
    check_our_containers_hardened,
    check_images,
    check_secrets,
    check_exposure,
    check_shards,
    check_haproxy,
    check_networkpolicy,
    check_crds,
]


def check_render(docs, overlay, adapter_docs):
    v = []
    for check in RENDER_CHECKS:
        v += check(docs, overlay)
    v += check_pdb_hpa(docs, overlay, adapter_docs)
    v += check_promql(docs, overlay, adapter_docs)
    return v


# --------------------------------------------------------------------------------------------------
# Sources the render does not show


def dockerfile_problems(path: Path, binary: str, ports: set) -> list[str]:
    v = []
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    stages = {ln.split()[3] for ln in lines if ln.upper().startswith("FROM ") and len(ln.split()) > 3}
    if len(froms) < 2:
        v.append(f"{path.name}: not multi-stage (build with the Rust toolchain, ship a small runtime)")
    for image in froms:
        if image in stages:
            continue
        problem = image_problem(image)
        if problem:
            v.append(f"{path.name}: base image {image} is not pinned: {problem}")
    final = lines[max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")):] if froms else lines
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        v.append(f"{path.name}: the runtime stage must switch to a non-root USER")
    hc = [ln for ln in final if ln.upper().startswith("HEALTHCHECK ")]
    if not hc or f'"{binary}", "healthcheck"' not in hc[-1].replace("/usr/local/bin/", ""):
        v.append(f"{path.name}: HEALTHCHECK must run `{binary} healthcheck` (no curl in the image)")
    exposed = {p for ln in final if ln.upper().startswith("EXPOSE ") for p in ln.split()[1:]}
    for p in ports - exposed:
        v.append(f"{path.name}: EXPOSE {p} missing")
    return v


def compose_problems(path: Path) -> list[str]:
    v = []
    doc = yaml.safe_load(path.read_text()) or {}
    services = doc.get("services") or {}
    for svc, binary in (("jvb", "bridge"), ("jicofo", "focus")):
        s = services.get(svc)
        if not s:
            v.append(f"{path.name}: no `{svc}` service override")
            continue
        image = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(s.get("image", "")))
        if image_problem(image) or not image.split("/")[-1].startswith(binary + ":"):
            v.append(f"{path.name}: {svc} image {s.get('image')!r} must be our pinned {binary} image")
        test = s.get("healthcheck", {}).get("test", [])
        if not (isinstance(test, list) and test[-1:] == ["healthcheck"] and test[-2].endswith(binary)):
            v.append(f"{path.name}: {svc} healthcheck must run `{binary} healthcheck` (found {test})")
        if "ports" in s:
            v.append(f"{path.name}: {svc} must keep the upstream ports (Compose appends override ports)")
    return v


def sizing_marker_problems() -> list[str]:
    """Every resources block we wrote carries the marker the lead updates from measurements."""
    v = []
    for f in sorted((HERE / "base").rglob("*.yaml")) + sorted((HERE / "overlays").rglob("*.yaml")):
        lines = f.read_text().splitlines()
        for i, ln in enumerate(lines):
            following = "\n".join(lines[i + 1:i + 4])
            if re.match(r"^\s*resources:\s*$", ln) and re.search(r"^\s*(requests|limits):", following, re.M):
                window = "\n".join(lines[i + 1:i + 3])
                if SIZING_MARKER not in window:
                    v.append(f"{f.relative_to(HERE)}:{i + 1}: resources without `{SIZING_MARKER}`")
    return v


def check_sources() -> list[str]:
    v = []
    v += dockerfile_problems(HERE / "docker/bridge.Dockerfile", "bridge", {"10000/udp", "8080/tcp"})
    v += dockerfile_problems(HERE / "docker/focus.Dockerfile", "focus", {"8888/tcp"})
    v += compose_problems(HERE / "docker/docker-compose.override.yml")
    for d in load_docs(HERE / "base/secret.template.yaml"):
        v += secret_problems(d)
    v += sizing_marker_problems()
    return v


# --------------------------------------------------------------------------------------------------
# Self-test: every fixture must make its rule fire


def deep_merge(base, patch):
    """JSON-merge-patch with strategic-merge for lists of named objects (containers, env, ports)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, pv in patch.items():
            if pv is None:
                out.pop(k, None)
            elif k in out:
                out[k] = deep_merge(out[k], pv)
            else:
                out[k] = pv
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [dict(x) for x in base]
        for p in patch:
            idx = next((i for i, x in enumerate(out) if x["name"] == p["name"]), None)
            if idx is None:
                out.append(p)
            else:
                out[idx] = deep_merge(out[idx], p)
        return out
    return patch


def apply_fixture(baseline: list[dict], fixture: Path) -> list[dict]:
    header = dict(re.findall(r"^# (mode|remove): (.+)$", fixture.read_text(), re.M))
    docs = copy.deepcopy(baseline)
    if "remove" in header:
        kind, name = header["remove"].strip().split("/", 1)
        docs = [d for d in docs if not (d.get("kind") == kind and base_name(d["metadata"]["name"]) == name)]
    for fd in load_docs(fixture):
        if header.get("mode", "merge").strip() == "add":
            docs.append(fd)
            continue
        for i, d in enumerate(docs):
            if d.get("kind") == fd.get("kind") and base_name(d["metadata"]["name"]) == fd["metadata"]["name"]:
                merged = deep_merge(d, {k: val for k, val in fd.items() if k != "metadata"})
                docs[i] = merged
                break
        else:
            raise SystemExit(f"fixture {fixture.name}: {ident(fd)} matches nothing in the baseline render")
    return docs


def self_test(baseline: list[dict], adapter_docs: list[dict]) -> list[str]:
    v = []
    fixtures = [f for f in sorted((HERE / "policy-fixtures").glob("*"))
                if f.suffix in (".yaml", ".yml") or f.name.endswith(".Dockerfile")]
    ran = 0
    for f in fixtures:
        m = re.search(r"^# expect: (.+)$", f.read_text(), re.M)
        if not m:
            v.append(f"policy-fixtures/{f.name}: no `# expect:` line")
            continue
        expect = m.group(1).strip()
        if f.suffix == ".yaml":
            found = check_render(apply_fixture(baseline, f), "production", adapter_docs)
        elif f.name.endswith(".Dockerfile"):
            found = dockerfile_problems(f, "bridge", {"10000/udp", "8080/tcp"})
        elif f.suffix == ".yml":
            found = compose_problems(f)
        else:
            continue
        ran += 1
        if not any(expect in x for x in found):
            v.append(f"self-test: policy-fixtures/{f.name} should violate a rule mentioning {expect!r}; the policy found {found or 'nothing'}")
    if ran < 10:
        v.append(f"self-test: only {ran} fixtures ran; expected the full set in policy-fixtures/")
    print(f"policy self-test: {ran} fixtures, each caught by its rule" if not v else "policy self-test: FAILED")
    return v


# --------------------------------------------------------------------------------------------------
# Env export for the entrypoint tests


ENV_HEADER = """\
# GENERATED by manifests/policy_test.py --write-env from `kubectl kustomize overlays/production`,
# {what}. manifests/check.sh fails when this file is stale.
# It is the exact environment the manifests give the container (envFrom ConfigMaps resolved, then env).
# Values Kubernetes fills in at run time are placeholders a test substitutes:
#   ${{HOST_IP}} node address (status.hostIP; 127.0.0.1 on loopback), ${{POD_NAME}} pod name,
#   ${{SECRET_<KEY>}} key of the jitsi-config Secret (the test's Prosody account password).
# A loopback test changes only what loopback needs: XMPP_SERVER/XMPP_PORT (its own Prosody), JVB_PORT,
# JVB_REST_PORT, JICOFO_REST_PORT (free ports), JICOFO_REST_HOST and JVB_MEDIA_HOST (127.0.0.1: no
# candidate on another interface), and STUN off (JVB_DISABLE_STUN=true: no network here); everything
# else is used as written.
"""


def env_files(prod_docs: list[dict]) -> dict[str, str]:
    out = {}
    for comp, wl_name in (("bridge", "shard-0-bridge"), ("focus", "shard-0-focus")):
        d = find(prod_docs, "Deployment", wl_name)
        if d is None:
            raise SystemExit(f"env export: Deployment {wl_name} not in the production render")
        c = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == comp)
        env = resolve_env(prod_docs, c)
        body = "".join(f"{k}={env[k]}\n" for k in sorted(env))
        out[f"{comp}.env"] = ENV_HEADER.format(what=f"Deployment {wl_name}, container {comp}") + body
    return out


# --------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rendered", type=Path, required=True, help="directory of <overlay>.yaml renders")
    ap.add_argument("--write-env", action="store_true", help="rewrite env/*.env instead of checking them")
    args = ap.parse_args()

    adapter_path = args.rendered / "prometheus-adapter.yaml"
    assert adapter_path.exists(), f"{adapter_path} missing: render ops/prometheus-adapter first"
    adapter_docs = load_docs(adapter_path)
    renders = {p.stem: load_docs(p) for p in sorted(args.rendered.glob("*.yaml")) if p.stem != "prometheus-adapter"}
    assert {"production", "development"} <= set(renders), f"renders found: {sorted(renders)}"

    violations = []
    for overlay, docs in renders.items():
        found = check_render(docs, overlay, adapter_docs)
        violations += [f"[{overlay}] {x}" for x in found]
        print(f"policy: overlay {overlay}: {len(docs)} objects, {len(found)} violations")
    src = check_sources()
    violations += [f"[sources] {x}" for x in src]
    print(f"policy: sources (Dockerfiles, compose override, Secret template, sizing markers): {len(src)} violations")
    violations += self_test(renders["production"], adapter_docs)

    for name, text in env_files(renders["production"]).items():
        path = HERE / "env" / name
        if args.write_env:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"policy: wrote {path.relative_to(HERE)}")
        elif not path.exists() or path.read_text() != text:
            violations.append(f"[env] env/{name} is stale: run `manifests/check.sh --write-env` and commit it")

    assert not violations, "policy violations:\n  " + "\n  ".join(violations)
    print("policy: all rules hold")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
