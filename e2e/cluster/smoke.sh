#!/usr/bin/env bash
# Proves the local cluster works end to end. Builds a tiny image (static busybox) with
# e2e/images/build.sh, then in namespace vigil-smoke:
#   - a 2-replica Deployment (busybox httpd) gets Ready pods with distinct pod IPs,
#   - a Job uses its ServiceAccount token to call the API server through the `kubernetes`
#     Service ClusterIP (in-cluster config path) and fetches from the Deployment's Service,
#   - from the host: the token secret carries our CA, the API server certificate verifies for
#     10.96.0.1 and kubernetes.default.svc, the Service answers on its ClusterIP and on
#     127.0.0.1:<nodePort>, and `kubectl logs` / `kubectl exec` work.
# Prints one line per check and PASS or FAIL; exits non-zero on failure.
#
# Usage: e2e/cluster/smoke.sh [--keep]   (--keep leaves the namespace for inspection)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
NS=vigil-smoke
T0=$SECONDS
export KUBECONFIG=$ADMIN_KUBECONFIG
k() { "$KUBECTL" "$@"; }

FAILED=0
ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; FAILED=1; }
finish() {
  if [ "$FAILED" = 0 ]; then
    echo "PASS: cluster smoke test ($((SECONDS - T0))s)"
    exit 0
  fi
  echo "FAIL: cluster smoke test (logs: $LOGS; namespace $NS kept for inspection)"
  exit 1
}

[ -f "$ADMIN_KUBECONFIG" ] && [ "$(k --request-timeout=5s get --raw /readyz 2>/dev/null)" = ok ] ||
  { bad "API server not answering; start the cluster with e2e/cluster/up.sh"; finish; }

IMG=$(bash "$REPO_ROOT/e2e/images/build.sh" smoke /bin/busybox | tail -1)
ok "image $IMG built and imported"

if k get namespace "$NS" >/dev/null 2>&1; then
  k delete namespace "$NS" --wait=true --timeout=90s >/dev/null
fi
k create namespace "$NS" >/dev/null
sa_token() { [ -n "$(k -n "$NS" get serviceaccount default -o 'jsonpath={.secrets[0].name}' 2>/dev/null)" ]; }
wait_until 30 "ServiceAccount token in $NS" sa_token || { bad "no ServiceAccount token in $NS"; finish; }

# --- Deployment + Service -------------------------------------------------------------------------
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: $IMG
        imagePullPolicy: Never
        # Serves the image's /etc (so /passwd) on 8080, as the image's nonroot user.
        args: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
        ports: [{ containerPort: 8080 }]
        readinessProbe:
          tcpSocket: { port: 8080 }
          periodSeconds: 1
        securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  type: NodePort
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
EOF
if k -n "$NS" rollout status deployment/web --timeout=90s >/dev/null; then
  ok "deployment web rolled out"
else
  bad "deployment web did not become ready"
  k -n "$NS" get pods -o wide
  k -n "$NS" describe pods | tail -30
  finish
fi
ips=$(k -n "$NS" get pods -l app=web -o 'jsonpath={range .items[*]}{.status.podIP}{"\n"}{end}')
n_ips=$(grep -cE '^10\.244\.0\.[0-9]+$' <<<"$ips" || true)
n_distinct=$(sort -u <<<"$ips" | grep -c . || true)
if [ "$n_ips" = 2 ] && [ "$n_distinct" = 2 ]; then
  ok "2 web pods with pod IPs: $(tr '\n' ' ' <<<"$ips")"
else
  bad "expected 2 distinct pod IPs in $POD_SUBNET, got: $(tr '\n' ' ' <<<"$ips")"
fi

# --- Job: in-cluster API access through the kubernetes Service ------------------------------------
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: { name: api-check }
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 120
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: check
        image: $IMG
        imagePullPolicy: Never
        securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false }
        args:
        - sh
        - -c
        - |
          set -e
          SA=/var/run/secrets/kubernetes.io/serviceaccount
          TOKEN=\$(busybox cat \$SA/token)
          URL=https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT
          echo "api server via \$URL"
          # busybox wget cannot verify certificates; the host side checks the CA and the SANs.
          busybox wget -q -O /tmp/api --no-check-certificate --header "Authorization: Bearer \$TOKEN" \$URL/api
          busybox grep -q '"kind": "APIVersions"' /tmp/api
          echo "API-OK authenticated GET /api"
          # Without the token the same request is forbidden: the token is what authenticated us.
          if busybox wget -q -O /dev/null --no-check-certificate \$URL/api 2>/dev/null; then
            echo "anonymous GET /api unexpectedly allowed"; exit 1
          fi
          busybox wget -q -O /tmp/ns --no-check-certificate --header "Authorization: Bearer \$TOKEN" \
            \$URL/api/v1/namespaces/$NS/serviceaccounts/default 2>/dev/null && { echo "RBAC not enforced"; exit 1; }
          echo "RBAC-OK default ServiceAccount cannot read ServiceAccounts"
          echo "web service via http://\$WEB_SERVICE_HOST:\$WEB_SERVICE_PORT"
          busybox wget -q -O /tmp/passwd http://\$WEB_SERVICE_HOST:\$WEB_SERVICE_PORT/passwd
          busybox grep -q '^nonroot:' /tmp/passwd
          echo "SERVICE-OK"
EOF
job_done() {
  local s f
  s=$(k -n "$NS" get job api-check -o 'jsonpath={.status.succeeded}' 2>/dev/null)
  f=$(k -n "$NS" get job api-check -o 'jsonpath={.status.failed}' 2>/dev/null)
  [ "${s:-0}" -ge 1 ] || [ "${f:-0}" -ge 1 ]
}
wait_until 120 "job api-check" job_done || true
job_log=$(k -n "$NS" logs job/api-check 2>&1 || true)
if [ "$(k -n "$NS" get job api-check -o 'jsonpath={.status.succeeded}')" = 1 ]; then
  ok "job api-check completed: token auth to the API server via ClusterIP $API_SERVICE_IP, RBAC, Service to pods"
else
  bad "job api-check did not complete"
  k -n "$NS" get pods -o wide
fi
if grep -q API-OK <<<"$job_log" && grep -q SERVICE-OK <<<"$job_log"; then
  ok "kubectl logs job/api-check (via the kubelet)"
else
  bad "kubectl logs job/api-check: $job_log"
fi
sed 's/^/      | /' <<<"$job_log"

# --- Host-side checks -------------------------------------------------------------------------------
secret=$(k -n "$NS" get serviceaccount default -o 'jsonpath={.secrets[0].name}')
if k -n "$NS" get secret "$secret" -o 'jsonpath={.data.ca\.crt}' | base64 -d | cmp -s - "$PKI/ca.crt"; then
  ok "ServiceAccount token secret carries the cluster CA"
else
  bad "ServiceAccount token secret's ca.crt differs from $PKI/ca.crt"
fi
if curl -sf --max-time 5 --cacert "$PKI/ca.crt" "https://$API_SERVICE_IP/version" >/dev/null &&
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --resolve "kubernetes.default.svc:443:$API_SERVICE_IP" \
    https://kubernetes.default.svc/version >/dev/null; then
  ok "API server certificate verifies for $API_SERVICE_IP and kubernetes.default.svc"
else
  bad "API server certificate does not verify through the ClusterIP"
fi
svc_ip=$(k -n "$NS" get service web -o 'jsonpath={.spec.clusterIP}')
node_port=$(k -n "$NS" get service web -o 'jsonpath={.spec.ports[0].nodePort}')
if curl -sf --max-time 5 "http://$svc_ip/passwd" | grep -q '^nonroot:'; then
  ok "host -> Service ClusterIP $svc_ip:80"
else
  bad "host -> Service ClusterIP $svc_ip:80"
fi
if curl -sf --max-time 5 "http://127.0.0.1:$node_port/passwd" | grep -q '^nonroot:'; then
  ok "host -> NodePort 127.0.0.1:$node_port"
else
  bad "host -> NodePort 127.0.0.1:$node_port"
fi
pod=$(k -n "$NS" get pods -l app=web -o 'jsonpath={.items[0].metadata.name}')
if [ "$(k -n "$NS" exec "$pod" -- busybox hostname 2>&1)" = "$pod" ]; then
  ok "kubectl exec $pod"
else
  bad "kubectl exec $pod"
fi

# Hairpin: a pod reaching a Service that may pick the pod itself (needs bridged traffic to pass
# iptables and kube-proxy to masquerade it). Six tries make hitting itself near certain.
# (Not `wget -T`: Debian busybox 1.35 segfaults on it.)
hairpin_ok=1
for _ in 1 2 3 4 5 6; do
  k -n "$NS" exec "$pod" -- busybox timeout 5 busybox wget -q -O /dev/null "http://$svc_ip/passwd" >/dev/null 2>&1 || hairpin_ok=0
done
if [ "$hairpin_ok" = 1 ]; then
  ok "pod -> its own Service (hairpin) x6"
else
  bad "pod -> its own Service (hairpin)"
fi

if [ "$FAILED" = 0 ] && [ "$KEEP" = 0 ]; then
  # The namespace controller needs ~15 s to finish; do not wait (a next run waits if needed).
  k delete namespace "$NS" --wait=false >/dev/null || bad "deleting namespace $NS"
fi
finish
