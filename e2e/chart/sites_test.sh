#!/usr/bin/env bash
# Remote sites installed for real (issue #15, docs/sites.md "Kubernetes mode"): `helm install` of
# the chart with the rendezvous service enabled (its image built from the host binary), the
# operator and a one-recorder pool; a Site with its credentials Secret; the site's gateway runs
# from its own image as a pod in another namespace, on the host's network (the "site box"),
# dialling the rendezvous through its Service. The camera simulator listens on 127.0.0.1 only,
# so the recorder pod cannot reach it: its footage can only come through the gateway. The
# gateway's uid may not reach pod addresses directly (an iptables owner rule, removed at the
# end), so the LAN and direct paths cannot open and the stream takes the relay through the
# in-cluster rendezvous — the path a real site behind NAT without a route to the pods gets.
#
# Checks: the rendezvous pod Ready (HTTP probes on its metrics port); the Site Connected=True
# (`kubectl get sites`) with path relay; the Camera with spec.site Recording, segments in S3,
# every one downloaded and ffprobed (frames decoded); the rendezvous /metrics (sites connected,
# relay streams and bytes for the site); the Site's Secret changed → the gateway disconnected
# (Connected=False GatewayDisconnected) and refused (refusals_total{reason="site_auth"}); the
# token never in any log.
#
# Needs: a running cluster (source /var/lib/vigil-cluster/env), the debug binaries built
# (`cargo build -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-site`), buildah/ctr,
# the moto venv, the camera simulator, ffprobe, iptables. Root.
# Prints "sites-chart: N passed, M failed" (counted by e2e/test.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${VIGIL_CACHE:-/var/cache/vigil}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
HOST=${VIGIL_HOST_IP:?VIGIL_HOST_IP is not set (source the cluster env)}
NS=vigil-sites-test
SYSTEM_NS=vigil-sites-system
GW_NS=vigil-sites-gw
RELEASE=vigil-sites
BUCKET=vigil-sites
SITE=branch
# The gateway pod's uid: only its packets are kept from pod addresses.
GW_UID=64915
POD_CIDR=${VIGIL_POD_CIDR:-10.244.0.0/16}
WORK=$(mktemp -d -t vigil-sites-chart-XXXXXX)
PY=${VIGIL_MOTO_PYTHON:-$CACHE/venv/bin/python}
passed=0 failed=0
T0=$(date +%s)

log() { printf '[sites-chart] %s\n' "$*"; }
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); log "FAILED: $*"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }

# shellcheck source=e2e/chart/helm.sh
source e2e/chart/helm.sh
install_helm
export HELM_CACHE_HOME=$WORK/helm HELM_CONFIG_HOME=$WORK/helm HELM_DATA_HOME=$WORK/helm

IPT_RULE=(OUTPUT -m owner --uid-owner "$GW_UID" -m conntrack --ctorigdst "$POD_CIDR" -j REJECT)
pids=()
cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    log "diagnostics:"
    kubectl get pods -A -o wide 2>&1 | grep -E "$NS|$SYSTEM_NS|$GW_NS" | sed 's/^/  /' || true
    kubectl -n "$NS" get sites,cameras -o wide 2>&1 | sed 's/^/  /' || true
    kubectl -n "$SYSTEM_NS" logs deployment/"$RELEASE"-rendezvous --tail=40 2>&1 | sed 's/^/  [rv] /' || true
    kubectl -n "$GW_NS" logs gateway --tail=20 2>&1 | sed 's/^/  [gw] /' || true
    kubectl -n "$NS" logs -l vigil.dev/pool=main --tail=30 2>&1 | sed 's/^/  [rec] /' || true
  fi
  iptables -D "${IPT_RULE[@]}" 2>/dev/null || true
  "$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
  kubectl delete namespace "$NS" "$SYSTEM_NS" "$GW_NS" --wait=false >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
  echo "sites-chart: $passed passed, $failed failed ($(( $(date +%s) - T0 )) s)"
  [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
}
trap cleanup EXIT

# A previous run that was interrupted.
iptables -D "${IPT_RULE[@]}" 2>/dev/null || true
"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
kubectl delete namespace "$NS" "$SYSTEM_NS" "$GW_NS" --wait=true --timeout=120s >/dev/null 2>&1 || true

log "images (buildah, imported into containerd)"
cargo build --quiet -p vigil-site --bin vigil-rendezvous --bin vigil-gateway
mkdir -p "$WORK/bin"
for b in vigil-operator vigil-recorder vigil-jobs vigil-rendezvous vigil-gateway; do
  [ -x "$TARGET/$b" ] || { fail "binary $TARGET/$b missing (cargo build first)"; exit 1; }
  objcopy --strip-debug "$TARGET/$b" "$WORK/bin/$b"
done
# The gateway as it ships: statically linked (glibc, static-pie; docs/sites.md "The gateway's
# build"), built for the explicit host target so its flags do not touch the debug build.
# VIGIL_STATIC_GATEWAY=0: the dynamically linked debug build (build.sh adds its libraries).
if [ "${VIGIL_STATIC_GATEWAY:-1}" != 0 ]; then
  HOST_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet -p vigil-site --bin vigil-gateway --target "$HOST_TRIPLE"
  STATIC_GW=${CARGO_TARGET_DIR:-$ROOT/target}/$HOST_TRIPLE/debug/vigil-gateway
  if readelf -d "$STATIC_GW" | grep -q NEEDED; then fail "$STATIC_GW is dynamically linked"; exit 1; fi
  objcopy --strip-debug "$STATIC_GW" "$WORK/bin/vigil-gateway"
  ok "vigil-gateway statically linked ($(file -b "$STATIC_GW" | grep -o 'static-pie linked'), $(( $(stat -c %s "$WORK/bin/vigil-gateway") / 1048576 )) MiB without debug info)"
fi
bash e2e/images/build.sh --ref localhost/vigil/operator:sites operator-sites "$WORK/bin/vigil-operator" | tail -n1
bash e2e/images/build.sh --ref localhost/vigil/recorder:sites recorder-sites \
  "$WORK/bin/vigil-recorder" "$WORK/bin/vigil-jobs" | tail -n1
bash e2e/images/build.sh --ref localhost/vigil/rendezvous:sites rendezvous-sites "$WORK/bin/vigil-rendezvous" | tail -n1
bash e2e/images/build.sh --ref localhost/vigil/gateway:sites gateway-sites "$WORK/bin/vigil-gateway" | tail -n1

log "TLS for the rendezvous service (a CA, a certificate for the name vigil-rendezvous)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=vigil-sites-test-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=vigil-rendezvous \
  -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:vigil-rendezvous\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 1 \
  -extfile "$WORK/ext" -out "$WORK/tls.crt" 2>/dev/null
SITE_TOKEN=$(openssl rand -hex 24) REC_TOKEN=$(openssl rand -hex 24)
printf '%s' "$SITE_TOKEN" >"$WORK/site-token"

log "S3 server (moto) on $HOST; the camera simulator on 127.0.0.1 only (the site's LAN)"
S3_PORT=$(free_port) RTSP_PORT=$(free_port) CONTROL_PORT=$(free_port)
"$PY" -m moto.server -H "$HOST" -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
pids+=($!)
export AWS_ACCESS_KEY_ID=sites AWS_SECRET_ACCESS_KEY=sites-secret AWS_DEFAULT_REGION=us-east-1
s3() { "$PY" - "$@" <<'PYEOF'
import os, sys, boto3
endpoint, op, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint)
if op == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif op in ("count", "fetch"):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".mp4")]
    if op == "count":
        print(len(keys))
    else:
        for i, k in enumerate(sorted(keys)):
            path = os.path.join(sys.argv[5], "%04d.mp4" % i)
            s3.download_file(bucket, k, path)
            print(path)
PYEOF
}
made=0
for _ in $(seq 1 100); do s3 "http://$HOST:$S3_PORT" mkbucket "$BUCKET" 2>/dev/null && { made=1; break; }; sleep 0.2; done
[ "$made" = 1 ] || { fail "moto did not start (see $WORK/moto.log)"; exit 1; }
/usr/bin/python3 e2e/camera-sim/camera_sim.py --bind 127.0.0.1 --rtsp-port "$RTSP_PORT" --control-port "$CONTROL_PORT" \
  --camera name=front,codec=h264,bitrate=800,fps=15,gop=15,width=320,height=240 \
  >"$WORK/sim.out" 2>"$WORK/sim.log" &
pids+=($!)
for _ in $(seq 1 120); do grep -q READY "$WORK/sim.out" 2>/dev/null && break; sleep 0.5; done
grep -q READY "$WORK/sim.out" || { fail "camera simulator did not start"; exit 1; }

log "namespaces, the rendezvous TLS Secret, the recorders' site-link Secret, the Site and its Secret"
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$SYSTEM_NS" >/dev/null
kubectl create namespace "$GW_NS" >/dev/null
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl -n "$SYSTEM_NS" create secret tls rv-tls --cert="$WORK/tls.crt" --key="$WORK/tls.key" >/dev/null
kubectl -n "$NS" create secret generic vigil-site-recorder --from-literal=token="$REC_TOKEN" \
  --from-file=ca.crt="$WORK/ca.crt" >/dev/null
kubectl -n "$NS" create secret generic "$SITE-token" --from-file=token="$WORK/site-token" >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Site
metadata: {name: $SITE}
spec:
  credentialsSecret: $SITE-token
  cameraNetworks: {allow: ["127.0.0.1/32"]}
EOF

helm_args=(-n "$SYSTEM_NS" --wait --timeout 240s
  --set image.repository=localhost/vigil/operator --set image.tag=sites --set image.pullPolicy=Never
  --set recorder.image.repository=localhost/vigil/recorder --set recorder.image.tag=sites
  --set recorder.image.pullPolicy=Never --set operator.watchNamespace="$NS" --set operator.replicas=1
  --set rendezvous.enabled=true --set rendezvous.tlsSecret=rv-tls --set rendezvous.namespace="$NS"
  --set rendezvous.image.repository=localhost/vigil/rendezvous --set rendezvous.image.tag=sites
  --set rendezvous.image.pullPolicy=Never --set rendezvous.logLevel=info --set rendezvous.siteStreamsPerMinute=600)
log "helm install with the rendezvous service"
start=$(date +%s)
if "$HELM" install "$RELEASE" charts/vigil "${helm_args[@]}" >"$WORK/helm.log" 2>&1; then
  ok "helm install with the rendezvous service, its pod Ready ($(( $(date +%s) - start )) s)"
else
  sed 's/^/  /' "$WORK/helm.log"; fail "helm install with the rendezvous service"; exit 1
fi
# The cluster has no DNS service: recorders are given the Service's address (rendezvous.address),
# and the quickstart pool is created with it.
RV_IP=$(kubectl -n "$SYSTEM_NS" get service "$RELEASE-rendezvous" -o jsonpath='{.spec.clusterIP}')
RV_ADDR=$RV_IP:7443
start=$(date +%s)
if "$HELM" upgrade "$RELEASE" charts/vigil "${helm_args[@]}" --set rendezvous.address="$RV_ADDR" \
  --set quickstart.enabled=true --set quickstart.namespace="$NS" --set quickstart.replicas=1 \
  --set quickstart.capacityKbps=20000 --set quickstart.localBufferMib=256 --set quickstart.segmentSeconds=4 \
  --set quickstart.storage.s3.bucket="$BUCKET" \
  --set quickstart.storage.s3.endpoint="http://$HOST:$S3_PORT" --set quickstart.storage.s3.pathStyle=true \
  --set quickstart.s3Credentials.create=true --set quickstart.s3Credentials.accessKeyId=sites \
  --set quickstart.s3Credentials.secretAccessKey=sites-secret >"$WORK/helm.log" 2>&1; then
  ok "helm upgrade: rendezvous.address=$RV_ADDR and a one-recorder pool ($(( $(date +%s) - start )) s)"
else
  sed 's/^/  /' "$WORK/helm.log"; fail "helm upgrade with the pool"; exit 1
fi

rv_metrics() {
  local ip
  ip=$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/component=rendezvous -o jsonpath='{.items[0].status.podIP}')
  curl -sf --max-time 5 "http://$ip:9090/metrics"
}
site_cond() {
  kubectl -n "$NS" get site "$SITE" -o jsonpath='{range .status.conditions[?(@.type=="Connected")]}{.status} {.reason}{end}' 2>/dev/null
}

log "the site's gateway: a pod from its image in $GW_NS, on the host's network, uid $GW_UID"
iptables -I "${IPT_RULE[@]}"
kubectl -n "$GW_NS" create secret generic gateway --from-file=token="$WORK/site-token" \
  --from-file=ca.crt="$WORK/ca.crt" >/dev/null
kubectl -n "$GW_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: gateway}
spec:
  hostNetwork: true
  restartPolicy: Always
  securityContext: {runAsUser: $GW_UID, runAsGroup: $GW_UID, runAsNonRoot: true}
  containers:
    - name: vigil-gateway
      image: localhost/vigil/gateway:sites
      imagePullPolicy: Never
      args: [--rendezvous=$RV_ADDR, --server-name=vigil-rendezvous, --ca-file=/creds/ca.crt,
             --namespace=$NS, --site=$SITE, --token-file=/creds/token]
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: creds, mountPath: /creds, readOnly: true}]
  volumes: [{name: creds, secret: {secretName: gateway}}]
EOF
start=$(date +%s)
cond=""
for _ in $(seq 1 90); do
  cond=$(site_cond); [ "${cond%% *}" = True ] && break; sleep 1
done
if [ "${cond%% *}" = True ]; then
  ok "Site $SITE Connected=True ($cond) $(( $(date +%s) - start )) s after the gateway pod was created"
else
  fail "Site $SITE not connected: ${cond:-no condition}"; exit 1
fi

ready=0
for _ in $(seq 1 90); do
  ready=$(kubectl -n "$NS" get deployment vigil-recorder-main -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  [ "${ready:-0}" = 1 ] && break; sleep 2
done
if [ "${ready:-0}" = 1 ]; then ok "the pool's recorder is Ready"; else fail "recorder Ready: ${ready:-0}/1"; exit 1; fi
env=$(kubectl -n "$NS" get deployment vigil-recorder-main -o jsonpath='{range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}')
if grep -qx "VIGIL_SITE_RENDEZVOUS=$RV_ADDR" <<<"$env"; then ok "the operator gave the recorder the site link ($RV_ADDR)"; else fail "recorder env has no site link: $(grep VIGIL_SITE <<<"$env" | tr '\n' ' ')"; fi

kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {name: front}
spec:
  source: {url: "rtsp://127.0.0.1:$RTSP_PORT/front/live"}
  site: $SITE
  expectedBitrateKbps: 800
  pool: main
EOF
start=$(date +%s)
state=""
for _ in $(seq 1 60); do
  state=$(kubectl -n "$NS" get camera front -o jsonpath='{.status.state}' 2>/dev/null || true)
  [ "$state" = Recording ] && break; sleep 2
done
if [ "$state" = Recording ]; then ok "Camera front (spec.site: $SITE, rtsp://127.0.0.1:…) Recording after $(( $(date +%s) - start )) s"; else fail "Camera state: ${state:-none}"; fi
segments=0
for _ in $(seq 1 40); do
  segments=$(s3 "http://$HOST:$S3_PORT" count "$BUCKET" "$NS/" 2>/dev/null || echo 0)
  [ "${segments:-0}" -ge 3 ] && break; sleep 3
done
if [ "${segments:-0}" -ge 3 ]; then ok "$segments segments in S3"; else fail "segments in S3: ${segments:-0}"; fi
mkdir -p "$WORK/segs"
total=0 bad=0
while IFS= read -r f; do
  total=$((total + 1))
  d=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f" 2>/dev/null || true)
  fr=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f" 2>/dev/null || true)
  if [ -z "$d" ] || [ "${fr:-0}" -lt 1 ]; then bad=$((bad + 1)); log "unplayable: $f ($d s, ${fr:-0} frames)"; fi
done < <(s3 "http://$HOST:$S3_PORT" fetch "$BUCKET" "$NS/" "$WORK/segs" 2>/dev/null)
if [ "$total" -ge 3 ] && [ "$bad" = 0 ]; then ok "all $total segments play (ffprobe, frames decoded)"; else fail "segments play ($bad of $total bad)"; fi

kubectl -n "$NS" get sites | sed 's/^/  /'
row=$(kubectl -n "$NS" get sites --no-headers 2>/dev/null || true)
if grep -qE "^$SITE +True +relay" <<<"$row"; then ok "kubectl get sites: $SITE True relay"; else fail "kubectl get sites: $row"; fi
bytes=$(kubectl -n "$NS" get site "$SITE" -o jsonpath='{.status.bytesIn} {.status.bytesOut}')
log "Site status bytes (in out): $bytes"

m=$(rv_metrics || true)
grep -E '^vigil_rendezvous_(sites_connected|site_connected|streams_opened_total|relay_bytes_total|refusals_total)' <<<"$m" | sed 's/^/  /'
if grep -qx 'vigil_rendezvous_sites_connected 1' <<<"$m"; then ok "metrics: 1 site connected"; else fail "metrics: sites_connected"; fi
if grep -qE "^vigil_rendezvous_streams_opened_total\{namespace=\"$NS\",site=\"$SITE\",path=\"relay\"\} [1-9]" <<<"$m"; then
  ok "metrics: relay streams opened for $NS/$SITE"; else fail "metrics: no relay stream for the site"; fi
from=$(grep -E "^vigil_rendezvous_relay_bytes_total\{namespace=\"$NS\",site=\"$SITE\",direction=\"from_site\"\}" <<<"$m" | awk '{print $2}')
if [ "${from:-0}" -gt 100000 ]; then ok "metrics: $from bytes relayed from the site"; else fail "metrics: relay bytes from the site ${from:-none}"; fi

log "the Site's Secret changed: the old token is revoked"
start=$(date +%s)
kubectl -n "$NS" create secret generic "$SITE-token" --from-literal=token="$(openssl rand -hex 24)" \
  --dry-run=client -o yaml | kubectl -n "$NS" replace -f - >/dev/null
for _ in $(seq 1 30); do
  cond=$(site_cond); [ "${cond%% *}" = False ] && break; sleep 1
done
if [ "$cond" = "False GatewayDisconnected" ]; then ok "Site $SITE Connected=False GatewayDisconnected $(( $(date +%s) - start )) s after the Secret changed"; else fail "after revocation: ${cond:-no condition}"; fi
sleep 4
m=$(rv_metrics || true)
if grep -qx 'vigil_rendezvous_sites_connected 0' <<<"$m"; then ok "metrics: 0 sites connected"; else fail "metrics after revocation: $(grep sites_connected <<<"$m")"; fi
if grep -qE '^vigil_rendezvous_gateway_disconnects_total\{reason="token_revoked"\} [1-9]' <<<"$m"; then ok "metrics: a disconnect for token_revoked"; else fail "metrics: no token_revoked disconnect"; fi
if grep -qE '^vigil_rendezvous_refusals_total\{reason="site_auth"\} [1-9]' <<<"$m"; then ok "metrics: the gateway's reconnects refused (site_auth)"; else fail "metrics: no site_auth refusal"; fi
if grep -qE '^vigil_rendezvous_refusals_total\{reason="handshake"\}' <<<"$m"; then fail "metrics: handshake refusals (a probe on the tunnel port?)"; else ok "metrics: no failed handshakes (the probes use the metrics port)"; fi

logs=$( { kubectl -n "$SYSTEM_NS" logs deployment/"$RELEASE"-rendezvous --tail=-1; kubectl -n "$GW_NS" logs gateway --tail=-1;
  kubectl -n "$NS" logs -l vigil.dev/pool=main --tail=-1; } 2>&1 || true)
if grep -q "$SITE_TOKEN" <<<"$logs"; then fail "the site token appears in a log"; else ok "the site token in no log ($(wc -l <<<"$logs") lines)"; fi
if grep -q "refused" <<<"$(kubectl -n "$GW_NS" logs gateway --tail=-1 2>&1)"; then ok "the gateway logs its refusal"; else fail "the gateway logged no refusal"; fi

kubectl -n "$NS" delete cameras --all --wait=true --timeout=60s >/dev/null 2>&1 || true
if "$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null; then ok "helm uninstall"; else fail "helm uninstall"; fi
