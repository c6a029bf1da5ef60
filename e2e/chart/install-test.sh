# Sourced by e2e/chart/test.sh when KUBECONFIG is set and VIGIL_CHART_INSTALL=1: a real
# `helm install` of the chart into the local cluster (e2e/cluster/up.sh), with the operator image
# built from the debug binary by e2e/images/build.sh (buildah + the cluster's containerd).
#
# Checks: both operator pods become Ready (probes on /readyz, /healthz, the webhook port), one of
# them holds the leader Lease, the webhook refuses an invalid Backfill, the operator reconciles a
# RecorderPool (which proves its ClusterRole covers the Role it grants the recorders: Kubernetes
# refuses the Role otherwise), and `helm upgrade` keeps the webhook certificate (lookup) and so
# does not restart the pods.
#
# Isolation in a shared cluster: the webhook only sees the test namespace (namespaceSelector on a
# label of it). The operator itself is cluster-wide (it has no namespace flag yet), so the test
# refuses to run while RecorderPools exist elsewhere: it would place their cameras too.
# Uses from test.sh: check, check_fails, K (kubectl), HELM, NS, OUT, CHART, failed.
# shellcheck shell=bash disable=SC2154

INSTALL_RELEASE=vigil-chart-test
INSTALL_REF=localhost/vigil/operator:chart-test

install_preflight() {
  local others
  others=$("${K[@]}" get recorderpools --all-namespaces --no-headers 2>/dev/null | grep -v "^$NS " || true)
  if [ -n "$others" ]; then
    echo "RecorderPools exist in other namespaces; a second operator would act on them:"
    echo "$others"
    return 1
  fi
  if "$HELM" status "$INSTALL_RELEASE" -n "$NS" >/dev/null 2>&1; then
    echo "release $INSTALL_RELEASE already exists"; return 1
  fi
}

build_operator_image() {
  local bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug/vigil-operator
  cargo build --quiet -p vigil-operator --bin vigil-operator
  [ -x "$bin" ] || { echo "no $bin"; return 1; }
  # A copy without debug info: a 10x smaller image, built and imported in seconds.
  mkdir -p "$OUT/bin"
  objcopy --strip-debug "$bin" "$OUT/bin/vigil-operator"
  bash e2e/images/build.sh --ref "$INSTALL_REF" operator-chart-test "$OUT/bin/vigil-operator"
}

helm_install() {
  "${K[@]}" label namespace "$NS" "vigil.dev/chart-test=$NS" --overwrite
  "$HELM" "$@" "$INSTALL_RELEASE" "$CHART" -n "$NS" --wait --timeout 180s \
    --set image.repository="${INSTALL_REF%:*}" --set image.tag="${INSTALL_REF##*:}" \
    --set image.pullPolicy=Never \
    --set recorder.image.repository=localhost/vigil/recorder --set recorder.image.tag=chart-test \
    --set recorder.image.pullPolicy=Never \
    --set-string "webhook.namespaceSelector.matchLabels.vigil\.dev/chart-test=$NS" \
    --set operator.logLevel=info
}

pods_ready() {
  "${K[@]}" -n "$NS" rollout status deployment/"$INSTALL_RELEASE-operator" --timeout=120s
  local ready
  ready=$("${K[@]}" -n "$NS" get deployment "$INSTALL_RELEASE-operator" -o jsonpath='{.status.readyReplicas}')
  echo "ready replicas: $ready"
  [ "$ready" = 2 ]
}

leader_elected() {
  local holder pods
  for _ in $(seq 1 30); do
    holder=$("${K[@]}" -n "$NS" get lease vigil-operator-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
    [ -n "$holder" ] && break
    sleep 1
  done
  pods=$("${K[@]}" -n "$NS" get pods -l app.kubernetes.io/instance="$INSTALL_RELEASE" -o jsonpath='{.items[*].metadata.name}')
  echo "leader: ${holder:-none}; pods: $pods"
  [ -n "$holder" ] && grep -qw -- "$holder" <<<"$pods"
}

webhook_refuses() {
  local out
  if out=$("${K[@]}" -n "$NS" apply -f examples/invalid/backfill-window-reversed.yaml 2>&1); then
    echo "accepted: $out"; return 1
  fi
  echo "$out"
  grep -q 'admission webhook "validate.vigil.dev" denied the request' <<<"$out"
}

webhook_admits() {
  "${K[@]}" -n "$NS" apply -f - <<'EOF'
apiVersion: vigil.dev/v1alpha1
kind: RecorderPool
metadata:
  name: chart-test
spec:
  replicas: 0
  capacityKbps: 100000
  storage:
    local: {path: /var/lib/vigil/footage}
EOF
}

# The Camera objects the GitHub e2e workflow applies pass the CRD schema and the webhook.
workflow_cameras_admitted() {
  sed "s/namespace: cameras/namespace: $NS/" .github/e2e/camera-objects.yaml |
    "${K[@]}" apply --dry-run=server -f -
}

pool_reconciled() {
  local name=vigil-recorder-chart-test
  for _ in $(seq 1 60); do
    if "${K[@]}" -n "$NS" get role "$name" >/dev/null 2>&1 &&
       "${K[@]}" -n "$NS" get rolebinding "$name" >/dev/null 2>&1 &&
       "${K[@]}" -n "$NS" get deployment "$name" >/dev/null 2>&1; then
      "${K[@]}" -n "$NS" get serviceaccount,role,rolebinding,deployment,service -l vigil.dev/pool=chart-test
      return 0
    fi
    sleep 2
  done
  echo "the operator did not create the pool's workload; its logs:"
  "${K[@]}" -n "$NS" logs deployment/"$INSTALL_RELEASE-operator" -c vigil-operator --tail=30 || true
  "${K[@]}" -n "$NS" get events --sort-by=.lastTimestamp | tail -n 15 || true
  return 1
}

# Least privilege must not mean too little: the operator, having reconciled a pool and posted
# its Events, logged no "forbidden" from the API server.
operator_never_forbidden() {
  local logs
  logs=$("${K[@]}" -n "$NS" logs -l app.kubernetes.io/instance="$INSTALL_RELEASE" -c vigil-operator --tail=-1 --prefix 2>&1 || true)
  echo "$(wc -l <<<"$logs") log lines from the operator pods"
  if grep -iE 'forbidden|cannot (get|list|watch|create|patch|update|delete)' <<<"$logs"; then return 1; fi
}

upgrade_keeps_certificate() {
  local before after rs_before rs_after
  before=$("${K[@]}" -n "$NS" get secret "$INSTALL_RELEASE-webhook-tls" -o jsonpath='{.data.tls\.crt}')
  rs_before=$("${K[@]}" -n "$NS" get deployment "$INSTALL_RELEASE-operator" -o jsonpath='{.metadata.generation}')
  helm_install upgrade
  after=$("${K[@]}" -n "$NS" get secret "$INSTALL_RELEASE-webhook-tls" -o jsonpath='{.data.tls\.crt}')
  rs_after=$("${K[@]}" -n "$NS" get deployment "$INSTALL_RELEASE-operator" -o jsonpath='{.metadata.generation}')
  echo "certificate sha256 before $(sha256sum <<<"$before" | cut -c1-16), after $(sha256sum <<<"$after" | cut -c1-16); deployment generation $rs_before -> $rs_after"
  [ -n "$before" ] && [ "$before" = "$after" ] && [ "$rs_before" = "$rs_after" ]
}

helm_uninstall() {
  "$HELM" uninstall "$INSTALL_RELEASE" -n "$NS"
  # Cluster-scoped leftovers would break the next install.
  ! "${K[@]}" get validatingwebhookconfiguration "$INSTALL_RELEASE" >/dev/null 2>&1
  ! "${K[@]}" get clusterrole "$INSTALL_RELEASE-operator" >/dev/null 2>&1
}

log "real install into $NS (VIGIL_CHART_INSTALL=1)"
failed_before_install=$failed
check "install preflight (no other RecorderPools, no leftover release)" install_preflight
if [ "$failed" -eq "$failed_before_install" ]; then
  check "operator image from the debug binary (e2e/images/build.sh)" build_operator_image
  check "helm install --wait" helm_install install
  check "both operator pods Ready (probes: /readyz, /healthz, webhook port)" pods_ready
  check "one operator pod holds the leader Lease" leader_elected
  check "the webhook refuses an invalid Backfill (examples/invalid)" webhook_refuses
  check "the webhook admits a valid RecorderPool" webhook_admits
  check "the webhook admits .github/e2e/camera-objects.yaml (dry-run)" workflow_cameras_admitted
  check "the operator creates the pool's Role/RoleBinding/Deployment (RBAC covers what it grants)" pool_reconciled
  check "the operator was never refused by RBAC (no 'forbidden' in its logs)" operator_never_forbidden
  check "helm upgrade keeps the webhook certificate and does not restart the pods" upgrade_keeps_certificate
  "${K[@]}" -n "$NS" delete recorderpool chart-test --wait=false >/dev/null 2>&1 || true
  check "helm uninstall removes the cluster-scoped objects" helm_uninstall
fi
