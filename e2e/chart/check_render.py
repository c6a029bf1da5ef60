#!/usr/bin/env python3
"""Checks a `helm template` render of charts/vigil against what the operator binary expects.

Usage: check_render.py MODE RENDERED.yaml [CHART_DIR]
  MODE: default     chart defaults (webhook on, quickstart and ServiceMonitor off)
        full        quickstart + serviceMonitor enabled (see test.sh for the values)
        nowebhook   webhook.enabled=false
        playback    playback.enabled=true, playback.pool=cams/main
        federation  playback as federation parent and child (see test.sh)
        rendezvous  rendezvous.enabled=true, tlsSecret=rv-tls, namespace=cams, serviceMonitor (test.sh)

Prints one line per failed assertion; exit status 1 if any failed. Needs PyYAML; uses openssl to
check the generated webhook certificate.
"""

import base64
import hashlib
import os
import subprocess
import sys
import tempfile

import yaml

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
    return cond


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name_suffix=None):
    found = [d for d in by_kind(docs, kind)
             if name_suffix is None or d["metadata"]["name"].endswith(name_suffix)]
    expect(len(found) == 1, "expected exactly one %s%s, found %d" % (
        kind, " *%s" % name_suffix if name_suffix else "", len(found)))
    return found[0] if found else None


def check_common(docs, chart_dir, webhook=True):
    chart = yaml.safe_load(open(os.path.join(chart_dir, "Chart.yaml")))
    app_version = str(chart["appVersion"])

    for d in docs:
        md = d.get("metadata", {})
        expect("name" in md, "object without a name: %r" % d.get("kind"))
        labels = md.get("labels") or {}
        expect(labels.get("app.kubernetes.io/managed-by") == "Helm",
               "%s/%s lacks the standard labels" % (d.get("kind"), md.get("name")))

    dep = one(docs, "Deployment", "-operator")
    if not dep:
        return
    spec = dep["spec"]
    expect(spec["replicas"] == 2, "operator replicas %r != 2" % spec["replicas"])
    pod = spec["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    op = containers.get("vigil-operator")
    if expect(op is not None, "no container vigil-operator"):
        expect(op["args"] == ["run"], "operator args %r != ['run']" % op["args"])
        expect(op["image"].endswith(":" + app_version),
               "operator image %s does not default to appVersion %s" % (op["image"], app_version))
        env = {e["name"]: e for e in op.get("env", [])}
        for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            expect(env.get(name, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path,
                   "%s is not from the downward API (%s)" % (name, path))
        rec = env.get("VIGIL_RECORDER_IMAGE", {}).get("value", "")
        expect(rec.endswith("/vigil-recorder:" + app_version),
               "VIGIL_RECORDER_IMAGE %r is not the recorder at appVersion" % rec)
        expect(env.get("VIGIL_RECORDER_IMAGE_PULL_POLICY", {}).get("value") == "IfNotPresent",
               "VIGIL_RECORDER_IMAGE_PULL_POLICY missing")
        ports = {p["name"]: p["containerPort"] for p in op.get("ports", [])}
        expect(ports.get("http") == 8080, "operator port http != 8080: %r" % ports)
        expect(op.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness != /readyz")
        expect(op.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness != /healthz")
        expect(op.get("resources", {}).get("requests"), "operator has no resource requests")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        expect(sc.get("readOnlyRootFilesystem") is True, "%s: root filesystem not read-only" % c["name"])
        expect(sc.get("runAsNonRoot") is True, "%s: runAsNonRoot not set" % c["name"])
        expect(sc.get("allowPrivilegeEscalation") is False, "%s: privilege escalation allowed" % c["name"])
        expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "%s: capabilities not dropped" % c["name"])
        expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "%s: no RuntimeDefault seccomp" % c["name"])
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532,
           "pod securityContext is not non-root 65532: %r" % psc)

    sa = one(docs, "ServiceAccount")
    if sa:
        expect(pod.get("serviceAccountName") == sa["metadata"]["name"], "pod does not use the chart's ServiceAccount")
    crb = one(docs, "ClusterRoleBinding")
    cr = one(docs, "ClusterRole")
    if cr and crb and sa:
        expect(crb["roleRef"]["name"] == cr["metadata"]["name"], "ClusterRoleBinding binds another role")
        expect(crb["subjects"][0]["name"] == sa["metadata"]["name"], "ClusterRoleBinding binds another subject")
        check_rbac(cr)

    svc = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-operator-metrics")]
    if expect(len(svc) == 1, "no metrics Service"):
        expect(svc[0]["spec"]["ports"][0]["targetPort"] == "http", "metrics Service does not target port http")
        expect(svc[0]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"],
               "metrics Service selector != Deployment selector")

    if webhook:
        check_webhook(docs, dep, containers)
    else:
        expect("webhook" not in containers, "webhook container rendered with webhook.enabled=false")
        expect(not by_kind(docs, "ValidatingWebhookConfiguration"), "webhook configuration rendered while disabled")


def rule_allows(rules, group, resource, verb):
    for r in rules:
        if group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]:
            return True
    return False


def check_rbac(cr):
    rules = cr["rules"]
    for r in rules:
        for field in ("apiGroups", "resources", "verbs"):
            expect("*" not in r.get(field, []), "ClusterRole has a wildcard in %s: %r" % (field, r))
        expect("escalate" not in r["verbs"] and "bind" not in r["verbs"] and "impersonate" not in r["verbs"],
               "ClusterRole has escalate/bind/impersonate: %r" % r)
    # What the operator code calls (operator/src/controller, leader.rs).
    need = [
        ("vigil.dev", "cameras", "get list watch patch update"),
        ("vigil.dev", "recorderpools", "get list watch patch update"),
        ("vigil.dev", "backfills", "get list watch patch update create"),
        ("vigil.dev", "cameras/status", "get patch update"),
        ("vigil.dev", "recorderpools/status", "get patch update"),
        ("vigil.dev", "backfills/status", "get patch update"),
        ("coordination.k8s.io", "leases", "get list watch create update patch delete"),
        ("", "pods", "get list watch"),
        # Metadata only: the pool reconcile watches which Secrets exist (no value is read).
        ("", "secrets", "get list watch"),
        ("apps", "deployments", "get list watch create patch update"),
        ("", "services", "get list watch create patch update"),
        ("", "serviceaccounts", "get list watch create patch update"),
        ("rbac.authorization.k8s.io", "roles", "get list watch create patch update"),
        ("rbac.authorization.k8s.io", "rolebindings", "get list watch create patch update"),
        ("", "events", "create patch"),
        ("events.k8s.io", "events", "create patch"),
        ("batch", "jobs", "get list watch create delete"),
        ("batch", "cronjobs", "get list watch create patch update"),
        ("policy", "poddisruptionbudgets", "get list watch create patch update"),
    ]
    for group, resource, verbs in need:
        for verb in verbs.split():
            expect(rule_allows(rules, group, resource, verb),
                   "ClusterRole lacks %s %s.%s" % (verb, resource, group or "core"))
    # The Role the operator creates for each pool's recorders (operator/src/controller/children.rs):
    # Kubernetes lets the operator grant only what it holds itself.
    granted = [
        ("vigil.dev", "cameras", "get list watch"),
        ("vigil.dev", "recorderpools", "get list watch"),
        ("vigil.dev", "cameras/status", "get patch update"),
        ("", "secrets", "get"),
        ("vigil.dev", "backfills", "get create"),
        ("coordination.k8s.io", "leases", "get create update patch"),
        ("", "events", "create patch"),
        ("events.k8s.io", "events", "create patch"),
    ]
    for group, resource, verbs in granted:
        for verb in verbs.split():
            expect(rule_allows(rules, group, resource, verb),
                   "ClusterRole cannot grant the recorders %s %s.%s" % (verb, resource, group or "core"))
    # Least privilege: nothing beyond these.
    allowed = {(g, r): set(v.split()) for g, r, v in need}
    for r in rules:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                extra = set(r["verbs"]) - allowed.get((g, res), set())
                expect(not extra, "ClusterRole grants more than needed: %s on %s.%s" % (
                    sorted(extra), res, g or "core"))


def check_webhook(docs, dep, containers):
    wh = containers.get("webhook")
    if expect(wh is not None, "no webhook container"):
        expect(wh["args"] == ["webhook", "--listen", "0.0.0.0:8443", "--tls-cert", "/certs/tls.crt",
                              "--tls-key", "/certs/tls.key"], "webhook args %r" % wh["args"])
        expect(wh["image"] == containers["vigil-operator"]["image"], "webhook runs another image")
        expect(any(m["mountPath"] == "/certs" for m in wh.get("volumeMounts", [])), "no /certs mount")
    secret = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-webhook-tls")]
    vwc = one(docs, "ValidatingWebhookConfiguration")
    svc = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhook")]
    if not (expect(len(secret) == 1, "no webhook TLS Secret") and vwc and expect(len(svc) == 1, "no webhook Service")):
        return
    secret, svc = secret[0], svc[0]
    expect(secret["type"] == "kubernetes.io/tls", "webhook Secret is not kubernetes.io/tls")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"].get("volumes", [])}
    expect(vols.get("webhook-tls", {}).get("secret", {}).get("secretName") == secret["metadata"]["name"],
           "pods do not mount the webhook Secret")
    port = svc["spec"]["ports"][0]
    expect(port["port"] == 443 and port["targetPort"] == "webhook", "webhook Service is not 443 -> webhook")
    expect(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"], "webhook Service selector")

    hooks = vwc["webhooks"]
    expect(len(hooks) == 1, "expected one webhook")
    h = hooks[0]
    expect(h["admissionReviewVersions"] == ["v1"], "admissionReviewVersions")
    expect(h["sideEffects"] == "None", "sideEffects")
    expect(h["failurePolicy"] == "Fail", "failurePolicy default is not Fail")
    cc = h["clientConfig"]
    expect(cc["service"] == {"name": svc["metadata"]["name"], "namespace": svc["metadata"]["namespace"],
                             "path": "/validate", "port": 443}, "clientConfig.service %r" % cc["service"])
    rule = h["rules"][0]
    expect(rule["apiGroups"] == ["vigil.dev"] and rule["apiVersions"] == ["v1alpha1"]
           and sorted(rule["operations"]) == ["CREATE", "UPDATE"]
           and sorted(rule["resources"]) == ["backfills", "cameras", "recorderpools"], "rules %r" % rule)

    # One certificate, everywhere: Secret, caBundle, and the pods' restart checksum.
    data = secret["data"]
    expect(cc.get("caBundle") == data["ca.crt"], "caBundle != the Secret's ca.crt")
    checksum = dep["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/webhook-tls")
    expect(checksum == hashlib.sha256(data["tls.crt"].encode()).hexdigest(),
           "checksum/webhook-tls does not match the Secret's certificate")
    ns = svc["metadata"]["namespace"]
    dns = "%s.%s.svc" % (svc["metadata"]["name"], ns)
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("ca.crt", "tls.crt", "tls.key"):
            with open(os.path.join(tmp, key), "wb") as f:
                f.write(base64.b64decode(data[key]))
        v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(tmp, "ca.crt"),
                            "-verify_hostname", dns, os.path.join(tmp, "tls.crt")],
                           capture_output=True, text=True)
        expect(v.returncode == 0, "serving certificate does not verify for %s: %s" % (dns, v.stdout + v.stderr))
        pub_crt = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", os.path.join(tmp, "tls.crt")],
                                 capture_output=True, text=True).stdout
        pub_key = subprocess.run(["openssl", "pkey", "-pubout", "-in", os.path.join(tmp, "tls.key")],
                                 capture_output=True, text=True).stdout
        expect(pub_crt and pub_crt == pub_key, "tls.key does not belong to tls.crt")


def check_full(docs):
    pools = by_kind(docs, "RecorderPool")
    if expect(len(pools) == 1, "quickstart RecorderPool not rendered"):
        spec = pools[0]["spec"]
        expect(spec["storage"]["s3"]["endpoint"] == "http://minio.storage.svc:9000", "s3 endpoint %r" % spec["storage"])
        expect(spec["storage"]["s3"]["pathStyle"] is True, "pathStyle not passed")
        expect("local" not in spec["storage"], "both storage targets rendered")
        expect(spec["replicas"] == 2 and spec["capacityKbps"] == 100000, "replicas/capacity %r" % spec)
        expect(spec["lease"] == {"durationSeconds": 4, "renewSeconds": 1}, "lease %r" % spec.get("lease"))
        expect(spec["backfill"] == {"maxConcurrent": 2, "bandwidthMbps": 50, "edgeSettleSeconds": 15}, "backfill %r" % spec.get("backfill"))
        expect(spec.get("podOverrides", {}).get("resources", {}).get("requests", {}).get("cpu") == "250m",
               "podOverrides not passed through")
        ref = spec["storage"]["s3"]["credentialsSecretRef"]
        secrets = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == ref["name"]]
        if expect(len(secrets) == 1, "quickstart S3 Secret not rendered"):
            keys = set(secrets[0]["stringData"])
            expect(keys == {ref["usernameKey"], ref["passwordKey"]}, "S3 Secret keys %r != ref %r" % (keys, ref))
    sms = by_kind(docs, "ServiceMonitor")
    expect(len(sms) == 2, "expected 2 ServiceMonitors (operator, recorders), got %d" % len(sms))
    for sm in sms:
        expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")


def check_network_policies(docs, cluster):
    """Egress of recorder and backfill Job pods: DNS, everything but link-local, loopback and the
    cluster's ranges; the operator passes the ranges on (VIGIL_CLUSTER_NETWORKS)."""
    nps = by_kind(docs, "NetworkPolicy")
    keys = sorted(e["key"] for n in nps for e in n["spec"]["podSelector"]["matchExpressions"])
    expect(keys == ["vigil.dev/backfill", "vigil.dev/pool"], "NetworkPolicy selectors %r" % keys)
    for n in nps:
        expect(n["spec"]["policyTypes"] == ["Egress"], "NetworkPolicy must restrict egress only")
        rules = n["spec"]["egress"]
        expect(any({p["port"] for p in r.get("ports", [])} == {53} and "to" not in r for r in rules),
               "no DNS egress rule")
        blocks = [t["ipBlock"] for r in rules for t in r.get("to", []) if "ipBlock" in t]
        v4 = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
        if expect(len(v4) == 1, "no 0.0.0.0/0 egress block"):
            want = {"169.254.0.0/16", "127.0.0.0/8"} | {c for c in cluster if ":" not in c}
            expect(want <= set(v4[0]["except"]), "egress except %r lacks %r" % (v4[0]["except"], want))
        v6 = [b for b in blocks if b["cidr"] == "::/0"]
        if expect(len(v6) == 1, "no ::/0 egress block"):
            want = {"fe80::/10"} | {c for c in cluster if ":" in c}
            expect(want <= set(v6[0]["except"]), "v6 egress except %r lacks %r" % (v6[0]["except"], want))
    env = {e["name"]: e.get("value") for d in by_kind(docs, "Deployment")
           if d["metadata"]["name"].endswith("-operator")
           for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    expect(env.get("VIGIL_CLUSTER_NETWORKS") == (",".join(cluster) or None),
           "operator VIGIL_CLUSTER_NETWORKS %r" % env.get("VIGIL_CLUSTER_NETWORKS"))


def check_playback(docs, pool_ns, pool):
    """playback.enabled=true: `vigil-access serve --pool`, its Service, least-privilege RBAC."""
    name = lambda d: d["metadata"]["name"]
    pb = lambda kind: [d for d in by_kind(docs, kind) if name(d).endswith("-playback")]
    deps = pb("Deployment")
    if not expect(len(deps) == 1, "no playback Deployment"):
        return
    pod = deps[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    expect(c["image"].split("@")[0].split(":")[0].endswith("/vigil-recorder"), "playback image %s" % c["image"])
    expect(c.get("command") == ["/usr/local/bin/vigil-access"], "playback command %r" % c.get("command"))
    expect(c["args"][0] == "serve" and "--pool=%s" % pool in c["args"], "playback args %r" % c["args"])
    expect("--no-auth" not in c["args"], "playback auth is off by default")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}.get("http")
    expect(("--listen=0.0.0.0:%s" % port) in c["args"], "listen port != container port")
    expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe")
    expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe")
    expect(c["securityContext"].get("readOnlyRootFilesystem") is True, "playback root filesystem is writable")
    svc = pb("Service")
    if expect(len(svc) == 1, "no playback Service"):
        expect(svc[0]["spec"]["selector"] == deps[0]["spec"]["selector"]["matchLabels"], "playback Service selector")
        expect(svc[0]["spec"]["ports"][0]["targetPort"] == "http", "playback Service targetPort")
    sa = pb("ServiceAccount")
    expect(len(sa) == 1 and pod["serviceAccountName"] == name(sa[0]), "playback ServiceAccount")
    cr, role = pb("ClusterRole"), pb("Role")
    if expect(len(cr) == 1 and len(role) == 1, "playback ClusterRole/Role"):
        got = sorted((g, r, v) for rule in cr[0]["rules"] for g in rule["apiGroups"]
                     for r in rule["resources"] for v in rule["verbs"])
        expect(got == [("authentication.k8s.io", "tokenreviews", "create"),
                       ("authorization.k8s.io", "subjectaccessreviews", "create")],
               "playback ClusterRole grants %r" % got)
        expect(role[0]["metadata"]["namespace"] == pool_ns, "playback Role not in the pool's namespace")
        got = sorted((g, r, v) for rule in role[0]["rules"] for g in rule["apiGroups"]
                     for r in rule["resources"] for v in rule["verbs"])
        expect(got == [("", "secrets", "get"), ("coordination.k8s.io", "leases", "get"),
                       ("vigil.dev", "cameras", "get"), ("vigil.dev", "cameras", "list"),
                       # Manual recording and posted events are written to the Camera.
                       ("vigil.dev", "cameras", "patch"),
                       ("vigil.dev", "recorderpools", "get"), ("vigil.dev", "recorderpools", "list")],
               "playback Role grants %r" % got)
    # Live view (on by default): the token Secret in the pool's namespace (where the operator
    # mounts it into recorders) and in the access point's; mounted where --live-token-file reads
    # it; the WebRTC UDP port on the container and the Service.
    secrets = [d for d in by_kind(docs, "Secret") if name(d) == "vigil-live-token"]
    expect(pool_ns in [d["metadata"]["namespace"] for d in secrets], "no live token Secret in the pool's namespace")
    expect(all(d.get("data", {}).get("token") for d in secrets), "live token Secret without a token")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])}
    expect(vols.get("live-token") == "vigil-live-token"
           and "--live-token-file=%s/token" % mounts.get("live-token") in c["args"],
           "live token not mounted where --live-token-file reads it")
    udp = {p["name"]: p for p in c["ports"]}.get("webrtc")
    if expect(udp is not None and udp["protocol"] == "UDP", "no WebRTC UDP container port"):
        expect("--webrtc-udp=0.0.0.0:%s" % udp["containerPort"] in c["args"], "--webrtc-udp != container port")
        if svc:
            expect(any(p["protocol"] == "UDP" and p["targetPort"] == "webrtc" for p in svc[0]["spec"]["ports"]),
                   "no WebRTC UDP port on the playback Service")
    for kind, ref in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = pb(kind)
        if expect(len(b) == 1, "no playback " + kind):
            expect(b[0]["roleRef"]["kind"] == ref and b[0]["subjects"][0]["name"] == name(sa[0]) if sa else False,
                   "playback %s binds something else" % kind)


def grants(obj):
    return sorted((g, r, v) for rule in obj["rules"] for g in rule["apiGroups"]
                  for r in rule["resources"] for v in rule["verbs"])


def check_federation(docs):
    """playback.federation.parent and .uplink on (test.sh: Secret fed-tls, ChildDomains in
    namespace fed, ParentDomains used in cams and site): the listener's flags, port, mounted
    certificates and Service port; least-privilege RBAC for each side."""
    name = lambda d: d["metadata"]["name"]
    deps = [d for d in by_kind(docs, "Deployment") if name(d).endswith("-playback")]
    if not expect(len(deps) == 1, "no playback Deployment"):
        return
    pod = deps[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}.get("federation")
    expect(port is not None and "--federation-listen=0.0.0.0:%s" % port in args,
           "--federation-listen != the federation container port (%r)" % args)
    mount = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}.get("federation-tls")
    vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])}
    expect(vols.get("federation-tls") == "fed-tls", "federation Secret not mounted")
    for flag, key in (("cert", "tls.crt"), ("key", "tls.key"), ("client-ca", "ca.crt")):
        expect("--federation-%s=%s/%s" % (flag, mount, key) in args, "--federation-%s not the mounted %s" % (flag, key))
    expect("--federation-namespace=fed" in args, "--federation-namespace")
    expect("--federation-uplink" in args, "--federation-uplink")
    svc = [d for d in by_kind(docs, "Service") if name(d).endswith("-playback")]
    expect(svc and any(p["name"] == "federation" and p["targetPort"] == "federation" and p["protocol"] == "TCP"
                       for p in svc[0]["spec"]["ports"]), "no federation port on the playback Service")
    sa = pod["serviceAccountName"]
    roles = {(d["metadata"].get("namespace"), name(d)): d for d in by_kind(docs, "Role")}
    parent = [d for (ns, n), d in roles.items() if n.endswith("-playback-federation")]
    if expect(len(parent) == 1 and parent[0]["metadata"]["namespace"] == "fed", "federation Role in fed"):
        expect(grants(parent[0]) == [("vigil.dev", "childdomains", "get"), ("vigil.dev", "childdomains", "list"),
                                     ("vigil.dev", "childdomains", "watch"),
                                     ("vigil.dev", "childdomains/status", "patch")],
               "federation Role grants %r" % grants(parent[0]))
    cr = [d for d in by_kind(docs, "ClusterRole") if name(d).endswith("-playback-uplink")]
    if expect(len(cr) == 1, "uplink ClusterRole"):
        expect(grants(cr[0]) == [("vigil.dev", "parentdomains", "get"), ("vigil.dev", "parentdomains", "list")],
               "uplink ClusterRole grants %r (ParentDomains are only read cluster-wide)" % grants(cr[0]))
    up = sorted(ns for (ns, n) in roles if n.endswith("-playback-uplink"))
    expect(up == ["cams", "site"], "uplink Roles in %r, not the namespaces asked" % up)
    for (ns, n), d in roles.items():
        if n.endswith("-playback-uplink"):
            expect(grants(d) == [("", "secrets", "get"), ("vigil.dev", "cameras", "get"),
                                 ("vigil.dev", "cameras", "list"), ("vigil.dev", "cameras", "watch"),
                                 ("vigil.dev", "parentdomains/status", "patch")],
                   "uplink Role in %s grants %r" % (ns, grants(d)))
    for kind, ref in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for b in by_kind(docs, kind):
            if name(b).endswith(("-playback-uplink", "-playback-federation")):
                expect(b["roleRef"]["kind"] == ref and b["roleRef"]["name"] == name(b)
                       and b["subjects"][0]["name"] == sa, "%s %s binds something else" % (kind, name(b)))


def check_rendezvous(docs, ns):
    """rendezvous.enabled (test.sh: tlsSecret rv-tls, namespace cams, port 7443): the binary's
    flags match the container ports and the mounted certificate, the Service has the TCP port and
    both UDP probe ports, RBAC is least privilege in the served namespace, and the operator hands
    recorders the Service's address."""
    name = lambda d: d["metadata"]["name"]
    deps = [d for d in by_kind(docs, "Deployment") if name(d).endswith("-rendezvous")]
    if not expect(len(deps) == 1, "no rendezvous Deployment"):
        return
    dep = deps[0]
    expect(dep["spec"]["replicas"] == 1, "rendezvous replicas != 1 (gateways and recorders must meet)")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    ports = {(p["name"], p["protocol"]): p["containerPort"] for p in c["ports"]}
    tcp = ports.get(("tunnel", "TCP"))
    expect(tcp is not None and "--listen=0.0.0.0:%s" % tcp in args, "--listen != the tunnel port (%r)" % args)
    expect(ports.get(("probe", "UDP")) == tcp, "UDP probe port != the TCP port (the binary binds the same number)")
    expect(ports.get(("probe2", "UDP")) == (tcp or 0) + 1, "second UDP probe port != port + 1")
    expect("--kubernetes" in args, "--kubernetes missing")
    expect("--namespace=%s" % ns in args, "--namespace=%s missing" % ns)
    expect("--recorder-secret=vigil-site-recorder" in args, "--recorder-secret")
    metrics = ports.get(("metrics", "TCP"))
    expect(metrics is not None and "--metrics-listen=0.0.0.0:%s" % metrics in args,
           "--metrics-listen != the metrics port (%r)" % args)
    for probe in ("livenessProbe", "readinessProbe"):
        # A TCP probe of the tunnel port would be a failed TLS handshake every few seconds.
        expect(c.get(probe, {}).get("httpGet", {}).get("port") == "metrics", "%s not on the metrics port" % probe)
    mount = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}.get("tls")
    vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])}
    expect(vols.get("tls") == "rv-tls", "rendezvous TLS Secret not mounted")
    for flag, key in (("cert-file", "tls.crt"), ("key-file", "tls.key")):
        expect("--%s=%s/%s" % (flag, mount, key) in args, "--%s not the mounted %s" % (flag, key))
    expect(pod["serviceAccountName"] == name(dep), "rendezvous service account")
    expect(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, "rendezvous root filesystem writable")
    svcs = [d for d in by_kind(docs, "Service") if name(d).endswith("-rendezvous")]
    msvc = [d for d in by_kind(docs, "Service") if name(d).endswith("-rendezvous-metrics")]
    # The unauthenticated metrics never on the tunnel Service, which may face the internet.
    if expect(len(msvc) == 1, "no rendezvous metrics Service"):
        expect(msvc[0]["spec"]["type"] == "ClusterIP", "rendezvous metrics Service not ClusterIP")
        expect([(p["name"], p["port"], p["targetPort"]) for p in msvc[0]["spec"]["ports"]] ==
               [("metrics", metrics, "metrics")], "rendezvous metrics Service ports")
    if expect(len(svcs) == 1, "no rendezvous Service"):
        sp = {(p["name"], p["protocol"]): (p["port"], p["targetPort"]) for p in svcs[0]["spec"]["ports"]}
        expect(sp == {("tunnel", "TCP"): (tcp, "tunnel"), ("probe", "UDP"): (tcp, "probe"),
                      ("probe2", "UDP"): ((tcp or 0) + 1, "probe2")}, "rendezvous Service ports %r" % sp)
    # test.sh renders it with serviceMonitor.enabled: the rendezvous ServiceMonitor scrapes the
    # metrics Service only (its selector does not match the tunnel Service's labels).
    sms = [d for d in by_kind(docs, "ServiceMonitor") if name(d).endswith("-rendezvous")]
    if expect(len(sms) == 1 and msvc and svcs, "no rendezvous ServiceMonitor"):
        sel = sms[0]["spec"]["selector"]["matchLabels"]
        matches = lambda svc: all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items())
        expect(matches(msvc[0]) and not matches(svcs[0]), "rendezvous ServiceMonitor selector %r" % sel)
        expect([e["port"] for e in sms[0]["spec"]["endpoints"]] == ["metrics"], "rendezvous ServiceMonitor port")
    # Recorders' egress policy (cluster ranges cut off) lets them reach the rendezvous pods.
    pols = [d for d in by_kind(docs, "NetworkPolicy") if name(d).endswith("-pool-egress")]
    if expect(pols, "no recorder egress NetworkPolicy"):
        for pol in pols:
            rules = [r for r in pol["spec"]["egress"]
                     if any(t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                            == "rendezvous" for t in r.get("to", []))]
            ok = len(rules) == 1 and {"protocol": "TCP", "port": tcp} in rules[0]["ports"]
            expect(ok, "%s: no egress to the rendezvous pods' port %s" % (name(pol), tcp))
    roles = [d for d in by_kind(docs, "Role") if name(d).endswith("-rendezvous")]
    expect(not [d for d in by_kind(docs, "ClusterRole") if name(d).endswith("-rendezvous")],
           "a ClusterRole for a rendezvous serving one namespace")
    if expect(len(roles) == 1 and roles[0]["metadata"].get("namespace") == ns, "rendezvous Role in %s" % ns):
        expect(grants(roles[0]) == [("", "secrets", "get"), ("", "secrets", "list"), ("", "secrets", "watch"),
                                    ("vigil.dev", "sites", "get"), ("vigil.dev", "sites", "list"),
                                    ("vigil.dev", "sites", "watch"), ("vigil.dev", "sites/status", "patch")],
               "rendezvous Role grants %r" % grants(roles[0]))
    rb = [d for d in by_kind(docs, "RoleBinding") if name(d).endswith("-rendezvous")]
    expect(len(rb) == 1 and rb[0]["roleRef"]["kind"] == "Role" and rb[0]["subjects"][0]["name"] == name(dep),
           "rendezvous RoleBinding binds something else")
    op = one(docs, "Deployment", "-operator")
    if op:
        env = {e["name"]: e.get("value") for e in op["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        svc_ns = svcs[0]["metadata"]["namespace"] if svcs else "?"
        expect(env.get("VIGIL_SITE_RENDEZVOUS") == "%s.%s.svc:%s" % (name(dep), svc_ns, tcp),
               "operator VIGIL_SITE_RENDEZVOUS %r is not the Service" % env.get("VIGIL_SITE_RENDEZVOUS"))
        expect(env.get("VIGIL_SITE_SERVER_NAME") == "vigil-rendezvous", "operator VIGIL_SITE_SERVER_NAME")


def main():
    mode, path = sys.argv[1], sys.argv[2]
    chart_dir = sys.argv[3] if len(sys.argv) > 3 else "charts/vigil"
    docs = load(path)
    if mode == "default":
        check_common(docs, chart_dir)
        expect(not by_kind(docs, "RecorderPool"), "RecorderPool rendered by default")
        expect(not by_kind(docs, "ServiceMonitor"), "ServiceMonitor rendered by default")
        check_network_policies(docs, [])
    elif mode == "full":
        check_common(docs, chart_dir)
        check_full(docs)
        check_network_policies(docs, ["10.96.0.0/12", "10.244.0.0/16", "fd00:10::/56"])
    elif mode == "nowebhook":
        check_common(docs, chart_dir, webhook=False)
    elif mode == "playback":
        # playback.enabled=true, playback.pool=cams/main (test.sh); the operator's objects are
        # checked as usual, without the playback server's.
        check_common([d for d in docs if not d["metadata"]["name"].endswith("-playback")], chart_dir)
        check_playback(docs, "cams", "cams/main")
    elif mode == "federation":
        check_federation(docs)
    elif mode == "rendezvous":
        check_common([d for d in docs if not d["metadata"]["name"].endswith("-rendezvous")], chart_dir)
        check_rendezvous(docs, "cams")
    else:
        sys.exit("unknown mode " + mode)
    for f in failures:
        print("  FAIL: " + f)
    kinds = sorted({"%s" % d["kind"] for d in docs})
    print("  %d objects (%s); %d assertion(s) failed" % (len(docs), ", ".join(kinds), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
