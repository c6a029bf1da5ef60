#!/usr/bin/env bash
# The install path a user takes, on the local cluster (e2e/cluster/up.sh): `helm install` of the
# chart with the quickstart RecorderPool enabled, in one go (the pool is created while the
# admission webhook that validates it is still starting), then two Cameras; checks that the
# operator elects a leader, the pool's recorders come up Ready, both cameras are recorded into
# S3, and that `helm uninstall` leaves nothing cluster-wide behind.
#
# Needs: a running cluster (KUBECONFIG set, e.g. `source /var/lib/vigil-cluster/env`), the debug
# binaries built (`cargo build -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-access`),
# buildah/ctr (deps.sh), the moto venv and the camera simulator.
# Prints "quickstart: N passed, M failed" (counted by e2e/test.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
HOST=${VIGIL_HOST_IP:?VIGIL_HOST_IP is not set (source the cluster env)}
NS=vigil-install-test
SYSTEM_NS=vigil-install-system
RELEASE=vigil-install
BUCKET=vigil-install
WORK=$(mktemp -d -t vigil-install-XXXXXX)
PY=${VIGIL_MOTO_PYTHON:-$CACHE/venv/bin/python}
passed=0 failed=0

log() { printf '[install] %s\n' "$*"; }
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); log "FAILED: $*"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }

# shellcheck source=e2e/chart/helm.sh
source e2e/chart/helm.sh
install_helm
export HELM_CACHE_HOME=$WORK/helm HELM_CONFIG_HOME=$WORK/helm HELM_DATA_HOME=$WORK/helm

pids=()
cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    log "diagnostics:"
    kubectl get pods,deployments -n "$SYSTEM_NS" -o wide 2>&1 | sed 's/^/  /' || true
    kubectl get pods,recorderpools,cameras -n "$NS" -o wide 2>&1 | sed 's/^/  /' || true
    kubectl -n "$SYSTEM_NS" logs deployment/"$RELEASE"-operator --all-containers --tail=60 2>&1 | sed 's/^/  /' || true
    kubectl -n "$NS" logs -l vigil.dev/pool=main --tail=30 2>&1 | sed 's/^/  /' || true
  fi
  "$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
  kubectl delete namespace "$NS" "$SYSTEM_NS" --wait=false >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
  echo "quickstart: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
}
trap cleanup EXIT

# A previous run that was interrupted.
"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
kubectl delete namespace "$NS" "$SYSTEM_NS" --wait=true --timeout=120s >/dev/null 2>&1 || true

log "images (buildah, imported into containerd)"
mkdir -p "$WORK/bin"
for b in vigil-operator vigil-recorder vigil-jobs vigil-access; do
  [ -x "$TARGET/$b" ] || { fail "binary $TARGET/$b missing (cargo build first)"; exit 1; }
  objcopy --strip-debug "$TARGET/$b" "$WORK/bin/$b"
done
bash e2e/images/build.sh --ref localhost/vigil/operator:install operator-install "$WORK/bin/vigil-operator" | tail -n1
bash e2e/images/build.sh --ref localhost/vigil/recorder:install recorder-install \
  "$WORK/bin/vigil-recorder" "$WORK/bin/vigil-jobs" "$WORK/bin/vigil-access" | tail -n1

log "S3 server (moto) and 2 simulated cameras on $HOST"
S3_PORT=$(free_port) RTSP_PORT=$(free_port) CONTROL_PORT=$(free_port)
"$PY" -m moto.server -H "$HOST" -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
pids+=($!)
export AWS_ACCESS_KEY_ID=install AWS_SECRET_ACCESS_KEY=install-secret AWS_DEFAULT_REGION=us-east-1
s3() { "$PY" - "$@" <<'PYEOF'
import sys, boto3
endpoint, op, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint)
if op == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif op == "count":
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".mp4"))
    print(n)
elif op == "gaps":
    # Holes in each camera's stored footage (segment keys <startMs>-<endMs>-<origin>.mp4)
    # between sys.argv[5] and the end of its last segment; prints "camera max_gap_ms segments".
    since = int(sys.argv[5])
    cams = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        for o in page.get("Contents", []):
            parts = o["Key"].split("/")
            name = parts[-1]
            if not name.endswith(".mp4"):
                continue
            start, end = name.split("-")[:2]
            cams.setdefault(parts[-6], []).append((int(start), int(end)))
    for cam, ivs in sorted(cams.items()):
        ivs.sort()
        reach, worst = None, 0
        for a, b in ivs:
            if reach is not None and b > since and a > reach:
                worst = max(worst, a - max(reach, since))
            reach = b if reach is None else max(reach, b)
        print(cam, worst, len(ivs))
PYEOF
}
made=0
for _ in $(seq 1 100); do s3 "http://$HOST:$S3_PORT" mkbucket "$BUCKET" 2>/dev/null && { made=1; break; }; sleep 0.2; done
[ "$made" = 1 ] || { fail "moto did not start (see $WORK/moto.log)"; exit 1; }
/usr/bin/python3 e2e/camera-sim/camera_sim.py --bind "$HOST" --rtsp-port "$RTSP_PORT" --control-port "$CONTROL_PORT" \
  --camera name=front,codec=h264,bitrate=800,fps=15,gop=15,width=320,height=240 \
  --camera name=back,codec=h264,bitrate=800,fps=15,gop=15,width=320,height=240 \
  >"$WORK/sim.out" 2>"$WORK/sim.log" &
pids+=($!)
for _ in $(seq 1 120); do grep -q READY "$WORK/sim.out" 2>/dev/null && break; sleep 0.5; done
grep -q READY "$WORK/sim.out" || { fail "camera simulator did not start"; exit 1; }

log "helm install with the quickstart pool (one command; the webhook is not serving yet when it starts)"
kubectl create namespace "$NS" >/dev/null
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
start=$(date +%s)
if "$HELM" install "$RELEASE" charts/vigil -n "$SYSTEM_NS" --create-namespace --wait --timeout 240s \
  --set image.repository=localhost/vigil/operator --set image.tag=install --set image.pullPolicy=Never \
  --set recorder.image.repository=localhost/vigil/recorder --set recorder.image.tag=install \
  --set recorder.image.pullPolicy=Never --set operator.watchNamespace="$NS" \
  --set quickstart.enabled=true --set quickstart.namespace="$NS" --set quickstart.replicas=2 \
  --set quickstart.capacityKbps=20000 --set quickstart.localBufferMib=256 \
  --set quickstart.segmentSeconds=4 \
  --set quickstart.storage.s3.bucket="$BUCKET" \
  --set quickstart.storage.s3.endpoint="http://$HOST:$S3_PORT" --set quickstart.storage.s3.pathStyle=true \
  --set quickstart.s3Credentials.create=true --set quickstart.s3Credentials.accessKeyId=install \
  --set quickstart.s3Credentials.secretAccessKey=install-secret >"$WORK/helm.log" 2>&1; then
  ok "helm install with quickstart pool ($(( $(date +%s) - start )) s)"
else
  sed 's/^/  /' "$WORK/helm.log"; fail "helm install with quickstart pool"; exit 1
fi

holder=""
for _ in $(seq 1 60); do
  holder=$(kubectl -n "$SYSTEM_NS" get lease vigil-operator-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [ -n "$holder" ] && break; sleep 2
done
if [ -n "$holder" ] && kubectl -n "$SYSTEM_NS" get pod "$holder" >/dev/null 2>&1; then ok "operator leader $holder"; else fail "no operator leader"; fi

if kubectl -n "$NS" get recorderpool main >/dev/null 2>&1; then ok "quickstart RecorderPool exists"; else fail "quickstart RecorderPool missing"; exit 1; fi
ready=0
for _ in $(seq 1 90); do
  ready=$(kubectl -n "$NS" get deployment vigil-recorder-main -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  [ "${ready:-0}" = 2 ] && break; sleep 2
done
if [ "${ready:-0}" = 2 ]; then ok "the pool's 2 recorders are Ready"; else fail "recorders Ready: ${ready:-0}/2"; exit 1; fi

for cam in front back; do
  kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {name: $cam}
spec:
  source: {url: "rtsp://$HOST:$RTSP_PORT/$cam/live"}
  expectedBitrateKbps: 800
  pool: main
EOF
done
recording=0
for _ in $(seq 1 60); do
  recording=$(kubectl -n "$NS" get cameras -o jsonpath='{range .items[*]}{.status.state}{"\n"}{end}' | grep -c '^Recording$' || true)
  [ "$recording" = 2 ] && break; sleep 2
done
if [ "$recording" = 2 ]; then ok "both cameras Recording"; else fail "cameras Recording: $recording/2"; fi
segments=0
for _ in $(seq 1 40); do
  segments=$(s3 "http://$HOST:$S3_PORT" count "$BUCKET" "$NS/" 2>/dev/null || echo 0)
  [ "${segments:-0}" -ge 2 ] && break; sleep 3
done
if [ "${segments:-0}" -ge 2 ]; then ok "$segments segments in S3"; else fail "segments in S3: ${segments:-0}"; fi

# Planned moves on real pods: every move is make-before-break, so neither a rolling restart nor
# a scale-down may leave a hole in any camera's footage or create a Backfill.
no_holes() {
  local what=$1 since=$2 worst
  # The segments the old recorders closed while draining are uploaded within seconds.
  sleep 12
  local out; out=$(s3 "http://$HOST:$S3_PORT" gaps "$BUCKET" "$NS/" "$since" 2>&1 || true)
  printf '  %s\n' "${out//$'\n'/$'\n'  }"
  worst=$(echo "$out" | awk 'NF == 3 {print $2}' | sort -n | tail -n1)
  if [ "$(echo "$out" | awk 'NF == 3' | wc -l)" = 2 ] && [ "${worst:-999999}" -le 200 ]; then
    ok "$what: no hole over 200 ms in either camera's footage (worst ${worst} ms)"
  else
    fail "$what: holes in the footage: $out"
  fi
  local backfills; backfills=$(kubectl -n "$NS" get backfills --no-headers 2>/dev/null | wc -l)
  if [ "$backfills" = 0 ]; then ok "$what: no Backfill"; else fail "$what: $backfills Backfills"; kubectl -n "$NS" get backfills | sed 's/^/  /'; fi
}

since=$(( $(date +%s) * 1000 ))
start=$(date +%s)
kubectl -n "$NS" rollout restart deployment/vigil-recorder-main >/dev/null
if kubectl -n "$NS" rollout status deployment/vigil-recorder-main --timeout=240s >/dev/null; then
  ok "kubectl rollout restart of the recorders ($(( $(date +%s) - start )) s)"
else
  fail "rollout restart did not finish"
fi
no_holes "rolling restart" "$since"

since=$(( $(date +%s) * 1000 ))
start=$(date +%s)
kubectl -n "$NS" patch recorderpool main --type=merge -p '{"spec":{"replicas":1}}' >/dev/null
pods=2
for _ in $(seq 1 120); do
  pods=$(kubectl -n "$NS" get pods -l vigil.dev/pool=main --no-headers 2>/dev/null | grep -c vigil-recorder-main || true)
  [ "$pods" = 1 ] && break; sleep 1
done
if [ "$pods" = 1 ]; then ok "scale-down 2 → 1 recorder ($(( $(date +%s) - start )) s)"; else fail "scale-down: $pods recorder pods"; fi
no_holes "scale-down" "$since"

log "helm uninstall"
kubectl -n "$NS" delete cameras --all --wait=true --timeout=60s >/dev/null
if "$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null; then ok "helm uninstall"; else fail "helm uninstall"; fi
for obj in "validatingwebhookconfiguration/$RELEASE" "clusterrole/$RELEASE-operator" "clusterrolebinding/$RELEASE-operator"; do
  if kubectl get "$obj" >/dev/null 2>&1; then fail "$obj left after uninstall"; else ok "$obj removed"; fi
done
