#!/usr/bin/env bash
# The Vigil demo, start to finish, on one machine:
#   installs what it needs (Debian packages, Kubernetes 1.20 built once and cached), builds Vigil,
#   starts the local cluster, an S3 server (moto) and 4 simulated IP cameras with SD cards,
#   installs Vigil with Helm, declares a RecorderPool of 3 recorders and the 4 cameras,
#   shows the cameras being placed and recorded, kills a recorder, shows the failover and the
#   Backfills filling the hole from the cameras' SD cards, and ends by printing the address of
#   the web page (live grid, a camera's page with live beside its timeline, playback, export):
#   a `kubectl port-forward` to the access point's Service, and where the sign-in token is.
#
# Usage: e2e/demo.sh            run the demo (leaves it running so you can look around)
#        e2e/demo.sh --down     stop the demo's processes (and the port-forward) and remove its namespaces
#                               (the cluster keeps running: e2e/cluster/down.sh stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
DEMO=${VIGIL_DEMO_DIR:-/tmp/vigil-demo}
NS=vigil-demo
SYSTEM_NS=vigil-system
RELEASE=vigil
S3_PORT=19000
RTSP_PORT=18554
CONTROL_PORT=18555
BUCKET=vigil-demo
RECORD_SECONDS=${VIGIL_DEMO_RECORD_SECONDS:-30}
# Where the page is served on this machine (kubectl port-forward to the access point's Service).
PAGE_PORT=${VIGIL_DEMO_PORT:-18080}
PLAYBACK=$RELEASE-playback   # the access point's Deployment and Service (chart: playback.*)

t0=$(date +%s)
step() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$(( $(date +%s) - t0 ))" "$*"; }
note() { printf '       %s\n' "$*"; }
die() { printf '\n\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

stop_processes() {
  for f in "$DEMO"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "${1:-}" = "--down" ]; then
  stop_processes
  if [ -f "${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/env" ]; then
    # shellcheck disable=SC1091
    source "${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/env"
    # shellcheck source=e2e/chart/helm.sh
    source e2e/chart/helm.sh
    if install_helm 2>/dev/null; then "$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true; fi
    kubectl delete namespace "$NS" "$SYSTEM_NS" --wait=false >/dev/null 2>&1 || true
  fi
  echo "demo stopped; footage and logs stay in $DEMO; stop the cluster with: bash e2e/cluster/down.sh"
  exit 0
fi

mkdir -p "$DEMO"
stop_processes

step "1/10 dependencies (Debian packages; Kubernetes 1.20.2 built once into $CACHE, ~8 min the first time)"
bash e2e/cluster/deps.sh

step "2/10 building vigil-operator, vigil-recorder, vigil-jobs and vigil-access"
cargo build --quiet -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-access
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
mkdir -p "$DEMO/bin"
for b in vigil-operator vigil-recorder vigil-jobs vigil-access; do objcopy --strip-debug "$TARGET/$b" "$DEMO/bin/$b"; done

step "3/10 local Kubernetes cluster (etcd, API server, scheduler, controller-manager, kubelet, kube-proxy, containerd)"
bash e2e/cluster/up.sh
# shellcheck disable=SC1091
source "${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/env"
HOST=$VIGIL_HOST_IP   # this machine as the pods see it

step "4/10 container images (from scratch with buildah, imported into containerd)"
bash e2e/images/build.sh --ref localhost/vigil/operator:demo operator-demo "$DEMO/bin/vigil-operator" | tail -n1
bash e2e/images/build.sh --ref localhost/vigil/recorder:demo recorder-demo "$DEMO/bin/vigil-recorder" "$DEMO/bin/vigil-jobs" "$DEMO/bin/vigil-access" | tail -n1

step "5/10 S3 server (moto) on $HOST:$S3_PORT and 4 simulated cameras (GStreamer RTSP + ONVIF, SD card)"
PY=$CACHE/venv/bin/python
"$PY" -m moto.server -H "$HOST" -p "$S3_PORT" >"$DEMO/moto.log" 2>&1 &
echo $! >"$DEMO/moto.pid"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret AWS_DEFAULT_REGION=us-east-1
s3() { "$PY" - "$@" <<'PYEOF'
import sys, boto3
endpoint, op = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
if op == "mkbucket":
    s3.create_bucket(Bucket=sys.argv[3])
elif op == "list":
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[3], Prefix=sys.argv[4])
    for page in pages:
        for o in page.get("Contents", []):
            print(o["Size"], o["Key"])
elif op == "get":
    s3.download_file(sys.argv[3], sys.argv[4], sys.argv[5])
PYEOF
}
for _ in $(seq 1 50); do s3 "http://$HOST:$S3_PORT" mkbucket "$BUCKET" 2>/dev/null && break; sleep 0.2; done
rm -rf "$DEMO/sd"; mkdir -p "$DEMO/sd"
/usr/bin/python3 e2e/camera-sim/camera_sim.py --bind "$HOST" --rtsp-port "$RTSP_PORT" --control-port "$CONTROL_PORT" \
  --sd-dir "$DEMO/sd" \
  --camera name=lobby,codec=h264,bitrate=1500,fps=25,gop=25,width=640,height=360 \
  --camera name=loading-dock,codec=h264,bitrate=1000,fps=25,gop=25,width=640,height=360 \
  --camera name=parking,codec=h265,bitrate=800,fps=15,gop=15,width=640,height=360 \
  --camera name=server-room,codec=h264,bitrate=600,fps=15,gop=15,width=640,height=360 \
  >"$DEMO/camera-sim.out" 2>"$DEMO/camera-sim.log" &
echo $! >"$DEMO/camera-sim.pid"
for _ in $(seq 1 120); do grep -q READY "$DEMO/camera-sim.out" 2>/dev/null && break; sleep 0.5; done
grep -q READY "$DEMO/camera-sim.out" || die "camera simulator did not start (see $DEMO/camera-sim.log)"
note "cameras: rtsp://$HOST:$RTSP_PORT/<name>/live, ONVIF http://$HOST:$CONTROL_PORT/onvif/device_service"

step "6/10 helm install vigil (operator ×2 with leader election, admission webhook, CRDs, RBAC)"
# shellcheck source=e2e/chart/helm.sh
source e2e/chart/helm.sh
install_helm
export HELM_CACHE_HOME=$DEMO/helm HELM_CONFIG_HOME=$DEMO/helm HELM_DATA_HOME=$DEMO/helm
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
"$HELM" upgrade --install "$RELEASE" charts/vigil -n "$SYSTEM_NS" --create-namespace --wait --timeout 180s \
  --set image.repository=localhost/vigil/operator --set image.tag=demo --set image.pullPolicy=Never \
  --set recorder.image.repository=localhost/vigil/recorder --set recorder.image.tag=demo \
  --set recorder.image.pullPolicy=Never --set operator.watchNamespace="$NS" >/dev/null
kubectl -n "$SYSTEM_NS" get pods -o wide

step "7/10 the access point (helm: playback.enabled), a RecorderPool of 3 recorders and 4 cameras with ONVIF edge storage"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The access point (`vigil-access serve --pool`: the page, playback, export, live view) reads the
# pool's storage. Enabled before the pool is declared so that the live token Secret it creates
# is there when the recorders start (they mount it); it restarts until the pool exists.
"$HELM" upgrade "$RELEASE" charts/vigil -n "$SYSTEM_NS" --reuse-values \
  --set playback.enabled=true --set playback.pool="$NS/main" >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: s3-credentials}
stringData: {accessKeyId: demo, secretAccessKey: demo-secret}
---
apiVersion: vigil.dev/v1alpha1
kind: RecorderPool
metadata: {name: main}
spec:
  replicas: 3
  capacityKbps: 8000
  failoverHeadroomPercent: 20
  segmentSeconds: 6
  lease: {durationSeconds: 2, renewSeconds: 1}
  storage:
    s3:
      bucket: $BUCKET
      endpoint: http://$HOST:$S3_PORT
      pathStyle: true
      credentialsSecretRef: {name: s3-credentials, usernameKey: accessKeyId, passwordKey: secretAccessKey}
EOF
for cam in lobby:1500 loading-dock:1000 parking:800 server-room:600; do
  name=${cam%%:*}; kbps=${cam##*:}
  kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {name: $name}
spec:
  source: {url: "rtsp://$HOST:$RTSP_PORT/$name/live"}
  expectedBitrateKbps: $kbps
  pool: main
  retention: {days: 7}
  edgeStorage:
    onvif: {deviceUrl: "http://$HOST:$CONTROL_PORT/onvif/device_service"}
EOF
done

step "8/10 placement and recording"
recording() { kubectl -n "$NS" get cameras -o jsonpath='{range .items[*]}{.status.state}{"\n"}{end}' | grep -c '^Recording$' || true; }
deadline=$(( $(date +%s) + 240 ))
while [ "$(recording)" -lt 4 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { kubectl -n "$NS" get pods,cameras; die "cameras not recording after 240 s"; }
  note "$(recording)/4 cameras recording; recorder pods: $(kubectl -n "$NS" get pods -l vigil.dev/pool=main --no-headers 2>/dev/null | awk '{print $1 "=" $3}' | tr '\n' ' ')"
  sleep 5
done
kubectl -n "$NS" get recorderpools,cameras
WINDOW_START=$(date -u +%s)
note "recording for ${RECORD_SECONDS} s ..."
sleep "$RECORD_SECONDS"

step "9/10 killing the recorder that holds the most cameras (kubectl delete pod --grace-period=0 --force)"
VICTIM=$(kubectl -n "$NS" get cameras -o jsonpath='{range .items[*]}{.status.recorder}{"\n"}{end}' | sort | uniq -c | sort -rn | awk 'NR==1 {print $2}')
MOVED=$(kubectl -n "$NS" get cameras -o jsonpath="{range .items[?(@.status.recorder==\"$VICTIM\")]}{.metadata.name} {end}")
note "victim: $VICTIM with cameras: $MOVED"
kill_at=$(date +%s.%N)
kubectl -n "$NS" delete pod "$VICTIM" --grace-period=0 --force >/dev/null 2>&1
since_kill() { echo "$(date +%s.%N) - $kill_at" | bc | cut -c1-5; }
deadline=$(( $(date +%s) + 90 ))
until [ -z "$(kubectl -n "$NS" get cameras -l "vigil.dev/recorder=$VICTIM" -o name)" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "cameras not reassigned within 90 s"
  sleep 0.2
done
note "cameras reassigned to the other recorders $(since_kill) s after the kill"
until [ "$(recording)" = 4 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "cameras not recording again within 90 s"
  sleep 0.5
done
note "all cameras report Recording again $(since_kill) s after the kill (recorders write status every 15 s;"
note "the failover itself, to the first segment bytes, is measured in docs/benchmarks.md)"
kubectl -n "$NS" get cameras
note "recording ${RECORD_SECONDS} s more, then waiting for the Backfills to fill the hole from the SD cards ..."
sleep "$RECORD_SECONDS"
WINDOW_END=$(date -u +%s)
deadline=$(( $(date +%s) + 180 ))
while :; do
  total=$(kubectl -n "$NS" get backfills --no-headers 2>/dev/null | wc -l)
  done_count=$(kubectl -n "$NS" get backfills -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null | grep -cE '^(Succeeded|PartiallyRecovered|Failed)$' || true)
  if [ "$total" -gt 0 ] && [ "$total" = "$done_count" ]; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || { note "Backfills still running after 180 s"; break; }
  note "backfills: $done_count/$total finished"
  sleep 5
done
kubectl -n "$NS" get backfills,jobs

step "10/10 the footage and the web page"
note "bucket s3://$BUCKET at http://$HOST:$S3_PORT (keys: <namespace>/<camera>/YYYY/MM/DD/HH/<startMs>-<endMs>-<origin>.mp4)"
for cam in lobby loading-dock parking server-room; do
  s3 "http://$HOST:$S3_PORT" list "$BUCKET" "$NS/$cam/" >"$DEMO/$cam.keys"
  note "$cam: $(grep -c 'live\.mp4$' "$DEMO/$cam.keys" || true) live and $(grep -c 'backfill\.mp4$' "$DEMO/$cam.keys" || true) backfilled segments"
done
kubectl -n "$SYSTEM_NS" rollout status "deployment/$PLAYBACK" --timeout=120s >/dev/null \
  || { kubectl -n "$SYSTEM_NS" logs "deployment/$PLAYBACK" --tail=20 >&2 || true; die "the access point is not ready"; }
# A viewer to sign in as: may watch live, play back and export (cameras/recordings) the demo's
# cameras and start a manual recording. Its token (the ServiceAccount's token Secret) goes into
# a file, never to the terminal.
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: vigil-viewer}
rules:
  - apiGroups: [vigil.dev]
    resources: [cameras/live, cameras/recordings]
    verbs: [get]
  - apiGroups: [vigil.dev]
    resources: [cameras/manual-recording]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: vigil-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vigil-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: $NS}]
YAML
TOKEN_FILE=$DEMO/viewer.token
secret=""
for _ in $(seq 1 60); do
  secret=$(kubectl -n "$NS" get sa viewer -o jsonpath='{.secrets[0].name}' 2>/dev/null || true)
  [ -n "$secret" ] && break
  sleep 0.5
done
[ -n "$secret" ] || die "no token Secret for the ServiceAccount $NS/viewer"
(umask 077; kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.token}' | base64 -d >"$TOKEN_FILE")
auth() { printf 'Authorization: Bearer %s' "$(cat "$TOKEN_FILE")"; }
# The page on this machine: kubectl port-forward to the access point's Service (left running;
# --down stops it).
setsid kubectl -n "$SYSTEM_NS" port-forward --address 127.0.0.1 "svc/$PLAYBACK" "$PAGE_PORT:80" \
  >"$DEMO/port-forward.log" 2>&1 </dev/null &
echo $! >"$DEMO/port-forward.pid"
URL=http://127.0.0.1:$PAGE_PORT
for _ in $(seq 1 50); do curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null && break; sleep 0.2; done
curl -fsS "$URL/" | grep -q '<title>Vigil' || die "the page does not answer at $URL/ (see $DEMO/port-forward.log)"
listed=$({ curl -fsS -H "$(auth)" "$URL/api/v1/cameras" || true; } | grep -o "\"name\":\"[^\"]*\"" | wc -l)
[ "$listed" = 4 ] || die "the page's API lists $listed cameras for the viewer, not 4"
# The failover window of a moved camera, exported through the page's API, plays.
FIRST=${MOVED%% *}
[ -n "$FIRST" ] || FIRST=lobby
OUT_MP4=$DEMO/$FIRST-demo-window.mp4
curl -fsS -H "$(auth)" -o "$OUT_MP4" \
  "$URL/api/v1/cameras/$NS/$FIRST/export.mp4?start=${WINDOW_START}000&end=${WINDOW_END}000" \
  || die "export of $FIRST through the page's API failed"
duration=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$OUT_MP4")
note "the page answers at $URL/ and lists the 4 cameras for the viewer; $FIRST's demo window"
note "exported through it plays (${duration%.*} s of the $((WINDOW_END - WINDOW_START)) s window, across the failover)"

printf '\n\033[1mDemo done in %d s.\033[0m The web page (live grid, cameras, timelines, export):\n\n' "$(( $(date +%s) - t0 ))"
echo "  $URL/"
echo ""
echo "Sign in: paste a token into the page's Token field. The demo's viewer (ServiceAccount $NS/viewer:"
echo "live, playback, export of the demo's cameras) has its token in $TOKEN_FILE (cat it; it is not printed)."
echo "Live grid: $URL/live.html   a camera, live beside its timeline: $URL/camera.html?camera=$NS/lobby"
echo "(kubectl port-forward runs in the background, log: $DEMO/port-forward.log; it holds one pod: if the"
echo "access point restarts, run it again: kubectl -n $SYSTEM_NS port-forward svc/$PLAYBACK $PAGE_PORT:80."
echo "WebRTC reaches the pod's UDP port directly on this machine, else the page falls back to LL-HLS.)"
echo "Look around: source ${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/env; kubectl -n $NS get recorderpools,cameras,backfills"
echo "Clean up: bash e2e/demo.sh --down   (then bash e2e/cluster/down.sh to stop the cluster)"
