#!/usr/bin/env bash
# shellcheck disable=SC1090  # the domains' env files are known only at run time
# Cascaded domains against real, independent control planes (e2e/cluster/domain.sh): a parent,
# a child and a grandchild ("leaf") domain, each with its own etcd and API server; their access
# points run as host processes. Checks: the child registers (mutual TLS), its shared cameras are listed by the
# parent with their domain path and the intersected rights, a camera's state change reaches the
# parent within 5 s, an unknown certificate identity is refused, the child is shown Offline
# within 15 s of killing its access point, Online again when it comes back, and Unregistered
# when its ParentDomain is deleted; and the parent's web page (headless Chromium) plays the
# child's camera through the parent. Three levels: the child passes on its own child's cameras
# (ParentDomain passOn); the top lists the leaf's camera with its domain path, plays it back
# through two hops (ffprobe), sees its state change within 5 s and sees it offline within 15 s
# of killing the leaf's access point.
# Prints "cascade: N passed, M failed". Uses domain INDEX 11, 12 and 15 and ports 18111-18122 and 18151 (bench.sh uses 13, 14).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
target=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$target/debug/vigil-access
WORK=$(mktemp -d -t vigil-cascade-XXXXXX)
PARENT=cascade-parent CHILD=cascade-child LEAF=cascade-leaf
P_HTTP=127.0.0.1:18111 P_FED=127.0.0.1:18112 C_HTTP=127.0.0.1:18121 C_FED=127.0.0.1:18122
L_HTTP=127.0.0.1:18151 L_REC=127.0.0.1:18152 P_UDP=127.0.0.1:18113
passed=0 failed=0 pids=()

ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -s "$WORK/live-rec.pid" ] && kill -KILL "$(cat "$WORK/live-rec.pid")" 2>/dev/null
  wait 2>/dev/null
  bash e2e/cluster/domain.sh down $PARENT --purge >/dev/null 2>&1
  bash e2e/cluster/domain.sh down $CHILD --purge >/dev/null 2>&1
  bash e2e/cluster/domain.sh down $LEAF --purge >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --quiet -p vigil-access -p vigil-recorder || { echo "cascade: 0 passed, 1 failed"; exit 1; }

# Three domains, started side by side.
bash e2e/cluster/domain.sh up $PARENT 11 >"$WORK/parent-up.log" 2>&1 &
up1=$!
bash e2e/cluster/domain.sh up $CHILD 12 >"$WORK/child-up.log" 2>&1 &
up2=$!
bash e2e/cluster/domain.sh up $LEAF 15 >"$WORK/leaf-up.log" 2>&1 &
up3=$!
# Meanwhile, real footage of the child's camera site/door and the leaf's plant/gate in the
# child's store (the leaf's access point serves the same directory): the camera simulator
# recorded for ~10 s by a recorder in file mode.
/usr/bin/python3 e2e/camera-sim/camera_sim.py --rtsp-port 0 --control-port 0 \
  --camera name=door,codec=h264,bitrate=400,fps=15,width=320,height=180,gop=15 \
  --camera name=gate,codec=h264,bitrate=800,fps=15,width=640,height=360,gop=15 \
  >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
pids+=("$SIM_PID")
for _ in $(seq 600); do grep -q '^READY' "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
rtsp=$(sed -n 's/^READY rtsp=\([0-9]*\).*/\1/p' "$WORK/sim.out")
cat >"$WORK/rec.yaml" <<YAML
storage: {local: {path: $WORK/child-store}}
segmentSeconds: 4
buffer: {dir: $WORK/buf}
cameraNetworks: {allow: [127.0.0.1/32]}
cameras:
  - {namespace: site, name: door, url: "rtsp://127.0.0.1:${rtsp:-1}/door/live"}
  - {namespace: plant, name: gate, url: "rtsp://127.0.0.1:${rtsp:-1}/gate/live"}
YAML
REC_FROM=$(date +%s%3N)
"$target/debug/vigil-recorder" record --config "$WORK/rec.yaml" --listen 127.0.0.1:0 2>"$WORK/rec.log" &
REC_PID=$!
pids+=("$REC_PID")
if ! wait $up1 || ! wait $up2 || ! wait $up3; then
  cat "$WORK"/*-up.log
  echo "cascade: 0 passed, 1 failed"; exit 1
fi
P_ENV=$(bash e2e/cluster/domain.sh env $PARENT)
C_ENV=$(bash e2e/cluster/domain.sh env $CHILD)
L_ENV=$(bash e2e/cluster/domain.sh env $LEAF)
pk() { (. "$P_ENV" && kubectl "$@"); }
ck() { (. "$C_ENV" && kubectl "$@"); }
lk() { (. "$L_ENV" && kubectl "$@"); }
# Raw API requests (kubectl 1.20 cannot patch a status subresource) with a domain's admin cert.
api() { # DOMAIN METHOD PATH [BODY]
  local dir=${VIGIL_DOMAINS_DIR:-/var/lib/vigil-domains}/$1 url type=application/json
  url=$(. "$dir/env" && echo "$VIGIL_DOMAIN_API")
  [ "$2" = PATCH ] && type=application/merge-patch+json
  curl -sS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    -X "$2" -H "Content-Type: $type" "$url$3" ${4:+-d "$4"}
}
pk apply -f crds/ >/dev/null && ck apply -f crds/ >/dev/null && lk apply -f crds/ >/dev/null ||
  { echo "cascade: 0 passed, 1 failed"; exit 1; }

# Federation PKI: one CA signs the parent's server certificate and the children's client
# certificates; another CA signs a certificate the parent must not trust.
pki() { # NAME CN CA [SAN]
  openssl req -new -newkey rsa:2048 -nodes -keyout "$WORK/$1.key" -subj "/CN=$2" -out "$WORK/$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\n%s\n' "${4:+subjectAltName=$4}" >"$WORK/$1.ext"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/$3.crt" -CAkey "$WORK/$3.key" -CAcreateserial \
    -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.crt" 2>/dev/null
}
for ca in fedca otherca; do
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$WORK/$ca.key" -out "$WORK/$ca.crt" \
    -days 2 -subj "/CN=$ca" 2>/dev/null
done
pki parent-server parent fedca "IP:127.0.0.1,DNS:localhost"
pki mid-server mid fedca "IP:127.0.0.1,DNS:localhost"
pki child child-a fedca
pki leaf leaf-a fedca
pki intruder intruder fedca
pki stranger child-a otherca

# Parent: a ChildDomain for identity child-a accepting every right; a user who may use live and
# playback (custom verbs on childdomains), one who may export, and one who may do nothing.
pk create namespace fed >/dev/null
pk apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ChildDomain
metadata: {name: site-a, namespace: fed}
spec: {identity: child-a, rights: [live, playback, export]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: fed}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: exporter, namespace: fed}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody, namespace: fed}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: remote-playback, namespace: fed}
rules:
- apiGroups: [vigil.dev]
  resources: [childdomains]
  verbs: [playback, live]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: remote-export, namespace: fed}
rules:
- apiGroups: [vigil.dev]
  resources: [childdomains]
  verbs: [playback, export]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: exporter-remote-export, namespace: fed}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: remote-export}
subjects: [{kind: ServiceAccount, name: exporter, namespace: fed}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer-remote-playback, namespace: fed}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: remote-playback}
subjects: [{kind: ServiceAccount, name: viewer, namespace: fed}]
EOF
token() {
  api $PARENT POST "/api/v1/namespaces/fed/serviceaccounts/$1/token" \
    '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}' |
    jq -r .status.token
}
sleep 1 # the token controller creates the service accounts' secrets
VIEWER=$(token viewer)
NOBODY=$(token nobody)
EXPORTER=$(token exporter)

# Child: the link Secret, a ParentDomain sharing cameras labelled share=yes with every right,
# three cameras (one not shared).
ck create namespace site >/dev/null
ck -n site create secret generic parent-link --from-file=tls.crt="$WORK/child.crt" \
  --from-file=tls.key="$WORK/child.key" --from-file=ca.crt="$WORK/fedca.crt" >/dev/null
ck apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ParentDomain
metadata: {name: hq, namespace: site}
spec:
  url: https://$P_FED
  credentialsSecret: parent-link
  cameraSelector: {matchLabels: {share: "yes"}}
  rights: [live, playback, export]
  displayName: Site A
  # Three levels: the cameras the leaf domain shares with us go on up.
  passOn: [{name: leaf, namespace: fed}]
EOF
# The child is a parent too: it accepts the leaf (identity leaf-a) with every right.
ck create namespace fed >/dev/null
ck apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ChildDomain
metadata: {name: leaf, namespace: fed}
spec: {identity: leaf-a, rights: [live, playback, export]}
EOF
for cam in door:yes yard:yes private:no; do
  ck apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {name: ${cam%%:*}, namespace: site, labels: {share: "${cam##*:}"}}
spec: {source: {url: "rtsp://127.0.0.1:8554/${cam%%:*}"}, pool: main, expectedBitrateKbps: 1000}
EOF
done
set_state() { api $CHILD PATCH "/apis/vigil.dev/v1alpha1/namespaces/site/cameras/$1/status" "{\"status\":{\"state\":\"$2\"}}" >/dev/null; }
set_state door Recording

mkdir -p "$WORK/parent-store" "$WORK/child-store"
echo "storage: {local: {path: $WORK/parent-store}}" >"$WORK/parent.yaml"
echo "storage: {local: {path: $WORK/child-store}}" >"$WORK/child.yaml"
(. "$P_ENV" && exec "$BIN" serve --config "$WORK/parent.yaml" --listen $P_HTTP --webrtc-udp $P_UDP \
  --federation-listen $P_FED --federation-cert "$WORK/parent-server.crt" \
  --federation-key "$WORK/parent-server.key" --federation-client-ca "$WORK/fedca.crt" \
  --federation-namespace fed) >"$WORK/parent.log" 2>&1 &
pids+=($!)
start_child() {
  (. "$C_ENV" && exec "$BIN" serve --config "$WORK/child.yaml" --listen $C_HTTP --no-auth \
    --federation-uplink --federation-listen $C_FED --federation-cert "$WORK/mid-server.crt" \
    --federation-key "$WORK/mid-server.key" --federation-client-ca "$WORK/fedca.crt" \
    --federation-namespace fed) >>"$WORK/child.log" 2>&1 &
  CHILD_PID=$!
  pids+=("$CHILD_PID")
}
start_child

cameras() { curl -sS -H "Authorization: Bearer ${2:-$VIEWER}" "http://$P_HTTP/api/v1/cameras" | jq -c "$1"; }
ready() { pk -n fed get childdomain site-a -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}' 2>/dev/null; }
# wait_for SECONDS COMMAND...: polls every 0.2 s; prints the time it took.
wait_for() {
  local limit=$1; shift
  local t0
  t0=$(date +%s%N)
  while true; do
    if "$@" >/dev/null 2>&1; then
      waited_ms=$((($(date +%s%N) - t0) / 1000000)); return 0
    fi
    [ $((($(date +%s%N) - t0) / 1000000)) -ge $((limit * 1000)) ] && { waited_ms=-1; return 1; }
    sleep 0.2
  done
}
is() { [ "$($1)" = "$2" ]; }
# The child's own cameras (domain path of one level).
listed() { [ "$(cameras '[.cameras[] | select(.remote and (.domainPath | length) == 1) | .name] | sort')" = "$1" ]; }

check "child registers: ChildDomain site-a Ready=True/Online" wait_for 30 is ready True/Online
check "parent lists the shared cameras (not the unshared one)" wait_for 10 listed '["door","yard"]'
door=$(cameras '.cameras[] | select(.name=="door")')
echo "  door: $door"
check "domain path [site-a] (ChildDomain fed/site-a), namespace site" test "$(jq -c '[.domainPath, .domainNamespace, .namespace, .domainDisplayName]' <<<"$door")" = '[["site-a"],"fed","site","Site A"]'
check "rights = child shares {live,playback,export} ∩ parent accepts {all} ∩ user may {playback,live}" \
  test "$(jq -c .rights <<<"$door")" = '["live","playback"]'
check "door online (Recording), yard offline" test "$(cameras '[.cameras[] | select(.remote and (.domainPath | length) == 1) | .online]')" = '[true,false]'
check "a user without rights on the child sees no remote camera" \
  test "$(cameras '[.cameras[] | select(.remote)] | length' "$NOBODY")" = 0
cd_status() { pk -n fed get childdomain site-a -o json | jq -c '[.status.cameras, .status.camerasOnline, .status.rights, (.status.lastKeepalive // "" | .[0:10])]'; }
check "ChildDomain status: 2 cameras, 1 online, rights [live,playback,export], lastKeepalive today" \
  wait_for 3 is cd_status "[2,1,[\"live\",\"playback\",\"export\"],\"$(date -u +%Y-%m-%d)\"]"
echo "  ChildDomain status: $(cd_status)"
check "ParentDomain status: Registered, 2 shared" \
  test "$(ck -n site get parentdomain hq -o jsonpath='{.status.conditions[0].status}/{.status.sharedCameras}')" = True/2

# Playback of the child's camera through the parent: the parent sends the request down the
# tunnel the child holds open (the child dials out; nothing is copied to the parent).
remaining=$((REC_FROM + 11000 - $(date +%s%3N)))
[ "$remaining" -gt 0 ] && sleep "$(awk "BEGIN{print $remaining/1000}")"
kill -TERM "$REC_PID"; wait "$REC_PID" 2>/dev/null
REC_TO=$(date +%s%3N)
remote() { # PATH OUT [TOKEN]: HTTP status of GET PATH of site-a's camera through the parent
  curl -sS -o "$2" -w '%{http_code}' -H "Authorization: Bearer ${3:-$VIEWER}" \
    "http://$P_HTTP/api/v1/domains/fed/site-a/cameras/site/$1" 2>/dev/null
}
tunnel_up() { [ "$(grep -c 'proxy tunnel open' "$WORK/child.log")" -ge "${1:-1}" ]; }
check "the child opens its proxy tunnel to the parent" wait_for 10 tunnel_up
range="start=$REC_FROM&end=$REC_TO"
t0=$(date +%s%N)
code=$(remote "door/index.m3u8?$range" "$WORK/door.m3u8")
t_playlist=$((($(date +%s%N) - t0) / 1000000))
check "remote camera's playlist through the parent: 200 (${t_playlist} ms)" test "$code" = 200
# Baseline in the same run: the same playlist straight from the child's access point.
t0=$(date +%s%N)
curl -sS -o /dev/null "http://$C_HTTP/api/v1/cameras/site/door/index.m3u8?$range"
t_direct=$((($(date +%s%N) - t0) / 1000000))
init=$(sed -n 's/^#EXT-X-MAP:URI="\(.*\)"/\1/p' "$WORK/door.m3u8" | head -1)
media=$(grep -m1 'media.m4s' "$WORK/door.m3u8")
segs=$(grep -c 'media.m4s' "$WORK/door.m3u8")
echo "  playlist: $segs segments"
t0=$(date +%s%N)
c1=$(remote "door/$init" "$WORK/init.mp4"); c2=$(remote "door/$media" "$WORK/media.m4s")
t_segment=$((($(date +%s%N) - t0) / 1000000))
cat "$WORK/init.mp4" "$WORK/media.m4s" >"$WORK/door.mp4" 2>/dev/null
frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=codec_name,nb_read_frames \
  -of csv=p=0 "$WORK/door.mp4" 2>/dev/null)
echo "  first segment through the tunnel: init $c1, media $c2 ($(stat -c %s "$WORK/media.m4s" 2>/dev/null) bytes, ${t_segment} ms): $frames"
check "its first segment plays (ffprobe: h264, 30+ frames)" \
  awk -F, -v f="$frames" 'BEGIN{split(f, a, ","); exit !(a[1] == "h264" && a[2] + 0 >= 30)}'
# The parent's web page, in headless Chromium, as the parent's user sees it: the child's camera
# listed under its domain, its timeline, and playback with hls.js through the parent.
if [ ! -d e2e/ui/node_modules/playwright-core ]; then
  (cd e2e/ui && npm install --no-audit --no-fund >/dev/null 2>&1)
fi
if node e2e/ui/remote.mjs "http://$P_HTTP" "$VIEWER" "site-a:site/door" "$target/ui/remote.png" >"$WORK/remote-ui.log" 2>&1; then
  ok "the parent's web page lists the child's camera and plays it through the parent (Chromium, hls.js)"
else
  fail "the parent's web page lists the child's camera and plays it through the parent (Chromium, hls.js)"
fi
sed 's/^/  page: /' "$WORK/remote-ui.log"
check "export is refused to a user without the export right (403)" \
  test "$(remote "door/export.mp4?$range" /dev/null)" = 403
code=$(remote "door/export.mp4?$range" "$WORK/door-export.mp4" "$EXPORTER")
frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=codec_name,nb_read_frames \
  -of csv=p=0 "$WORK/door-export.mp4" 2>/dev/null)
echo "  export through the parent: $code, $(stat -c %s "$WORK/door-export.mp4" 2>/dev/null) bytes: $frames"
check "a user with the export right exports it through the parent (ffprobe: h264, 100+ frames)" \
  awk -F, -v f="$frames" -v c="$code" 'BEGIN{split(f, a, ","); exit !(c == 200 && a[1] == "h264" && a[2] + 0 >= 100)}'
check "a user without rights on the child is refused (403)" \
  test "$(remote "door/index.m3u8?$range" /dev/null "$NOBODY")" = 403
check "an unshared camera of the child is not served (404)" \
  test "$(remote "private/index.m3u8?$range" /dev/null)" = 404
check "no way through the tunnel to the child's other routes (404)" \
  test "$(remote "door/whep" /dev/null)" = 404


# Three levels: the leaf domain registers with the child, which passes its camera on to the
# top; the top plays it back through two hops (top → child tunnel → leaf tunnel).
lk create namespace plant >/dev/null
lk -n plant create secret generic mid-link --from-file=tls.crt="$WORK/leaf.crt" \
  --from-file=tls.key="$WORK/leaf.key" --from-file=ca.crt="$WORK/fedca.crt" >/dev/null
lk apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ParentDomain
metadata: {name: mid, namespace: plant}
spec: {url: "https://$C_FED", credentialsSecret: mid-link, rights: [live, playback, export], displayName: Plant}
---
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {name: gate, namespace: plant}
spec: {source: {url: "rtsp://127.0.0.1:8554/gate"}, pool: main, expectedBitrateKbps: 1000}
EOF
leaf_state() { api $LEAF PATCH "/apis/vigil.dev/v1alpha1/namespaces/plant/cameras/gate/status" "{\"status\":{\"state\":\"$1\"}}" >/dev/null; }
leaf_state Recording
# The leaf's access point offers live frames from a recorder with its live tap (started below).
head -c 24 /dev/urandom | base64 >"$WORK/live.token"
(. "$L_ENV" && exec "$BIN" serve --config "$WORK/child.yaml" --listen $L_HTTP --no-auth \
  --live-recorder "http://$L_REC" --live-token-file "$WORK/live.token" --webrtc-udp 127.0.0.1:0 \
  --federation-uplink) >"$WORK/leaf.log" 2>&1 &
LEAF_PID=$!
pids+=("$LEAF_PID")
leaf_ready() { ck -n fed get childdomain leaf -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}' 2>/dev/null; }
check "the leaf registers with the child: its ChildDomain leaf Ready=True/Online" wait_for 30 is leaf_ready True/Online
gate() { cameras '.cameras[] | select(.name=="gate") | [.domainPath, .domainNamespace, .namespace, .online]'; }
check "the top lists the leaf's camera within 10 s: path [site-a, leaf], online" \
  wait_for 10 is gate '[["site-a","leaf"],"fed","plant",true]'
echo "  gate at the top: $(gate) (after ${waited_ms} ms)"
deep() { # PATH OUT [TOKEN]: HTTP status of GET PATH of the leaf's camera through two hops
  curl -sS -o "$2" -w '%{http_code}' -H "Authorization: Bearer ${3:-$VIEWER}" \
    "http://$P_HTTP/api/v1/domains/fed/site-a:leaf/cameras/plant/$1" 2>/dev/null
}
deep_tunnel_up() { grep -q 'proxy tunnel open' "$WORK/leaf.log"; }
wait_for 10 deep_tunnel_up
t0=$(date +%s%N)
code=$(deep "gate/index.m3u8?$range" "$WORK/gate.m3u8")
t_deep=$((($(date +%s%N) - t0) / 1000000))
check "the leaf camera's playlist through two hops: 200 (${t_deep} ms)" test "$code" = 200
init=$(sed -n 's/^#EXT-X-MAP:URI="\(.*\)"/\1/p' "$WORK/gate.m3u8" | head -1)
media=$(grep -m1 'media.m4s' "$WORK/gate.m3u8")
t0=$(date +%s%N)
c1=$(deep "gate/$init" "$WORK/ginit.mp4"); c2=$(deep "gate/$media" "$WORK/gmedia.m4s")
t_deep_segment=$((($(date +%s%N) - t0) / 1000000))
cat "$WORK/ginit.mp4" "$WORK/gmedia.m4s" >"$WORK/gate.mp4" 2>/dev/null
frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=codec_name,nb_read_frames \
  -of csv=p=0 "$WORK/gate.mp4" 2>/dev/null)
echo "  first segment through two hops: init $c1, media $c2 (${t_deep_segment} ms): $frames"
check "its first segment plays (ffprobe: h264, 30+ frames)" \
  awk -F, -v f="$frames" 'BEGIN{split(f, a, ","); exit !(a[1] == "h264" && a[2] + 0 >= 30)}'
check "two hops: export refused to a user without the export right (403)" \
  test "$(deep "gate/export.mp4?$range" /dev/null)" = 403
code=$(deep "gate/export.mp4?$range" "$WORK/gate-export.mp4" "$EXPORTER")
frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=codec_name,nb_read_frames \
  -of csv=p=0 "$WORK/gate-export.mp4" 2>/dev/null)
echo "  export through two hops: $code, $(stat -c %s "$WORK/gate-export.mp4" 2>/dev/null) bytes: $frames"
check "two hops: a user with the export right exports it (ffprobe: h264, 100+ frames)" \
  awk -F, -v f="$frames" -v c="$code" 'BEGIN{split(f, a, ","); exit !(c == 200 && a[1] == "h264" && a[2] + 0 >= 100)}'
check "two hops: a user without rights on the child is refused (403)" \
  test "$(deep "gate/index.m3u8?$range" /dev/null "$NOBODY")" = 403
elsewhere=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VIEWER" \
  "http://$P_HTTP/api/v1/domains/fed/site-a:elsewhere/cameras/plant/gate/index.m3u8?$range")
check "a domain path the child does not pass on is refused (site-a:elsewhere, 404)" test "$elsewhere" = 404
if node e2e/ui/remote.mjs "http://$P_HTTP" "$VIEWER" "site-a/leaf:plant/gate" "$target/ui/remote-two-hops.png" >"$WORK/remote-ui2.log" 2>&1; then
  ok "the top's web page plays the leaf's camera through two hops (Chromium, hls.js)"
else
  fail "the top's web page plays the leaf's camera through two hops (Chromium, hls.js)"
fi
sed 's/^/  page: /' "$WORK/remote-ui2.log"

# Live view through two hops: the top's WebRTC session, the leaf camera's frames read from the
# leaf's recorder by the leaf's access point and passed up both tunnels. The recorder is then
# SIGKILLed and restarted: the viewer's session stays up and the picture comes back.
cat >"$WORK/live-rec.yaml" <<YAML
storage: {local: {path: $WORK/live-store}}
segmentSeconds: 4
buffer: {dir: $WORK/live-buf}
cameraNetworks: {allow: [127.0.0.1/32]}
cameras:
  - {namespace: plant, name: gate, url: "rtsp://127.0.0.1:${rtsp:-1}/gate/live"}
YAML
cat >"$WORK/live-restart.sh" <<SH
#!/usr/bin/env bash
pid=\$(cat "$WORK/live-rec.pid" 2>/dev/null)
if [ -n "\$pid" ] && [ "\$pid" -gt 1 ]; then kill -KILL "\$pid" 2>/dev/null; fi
sleep \${1:-0}
VIGIL_LIVE_TOKEN_FILE="$WORK/live.token" setsid "$target/debug/vigil-recorder" record --config "$WORK/live-rec.yaml" \\
  --listen "$L_REC" --read-batch-ms 0 --reconnect-min-ms 200 2>>"$WORK/live-rec.log" </dev/null >/dev/null &
echo \$! >"$WORK/live-rec.pid"
SH
bash "$WORK/live-restart.sh"
whep_code() { # TOKEN: the top's answer to a WHEP offer for the leaf's camera (the offer is not read before the rights)
  curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/sdp' --data 'v=0' \
    -H "Authorization: Bearer $1" "http://$P_HTTP/api/v1/domains/fed/site-a:leaf/cameras/plant/gate/whep" 2>/dev/null
}
live_up() { # the leaf's access point reads the camera's live frames from its recorder
  [ "$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://$L_HTTP/api/v1/cameras/plant/gate/live.frames")" = 200 ]
}
check "the leaf's access point serves the camera's live frames (live.frames)" wait_for 20 live_up
check "two hops: live refused to a user without the live right (403)" test "$(whep_code "$EXPORTER")" = 403
if VIGIL_TOKEN=$VIEWER VIGIL_LIVE_NO_BACK=1 VIGIL_LIVE_RESTART="bash $WORK/live-restart.sh 1" \
  node e2e/ui/live.mjs "http://$P_HTTP" "site-a/leaf:plant/gate" gate 8 "$target/ui/remote-live.png" >"$WORK/remote-live.log" 2>&1; then
  ok "the top's live page shows the leaf's camera through two hops over WebRTC, moving, and again after its recorder is SIGKILLed"
else
  fail "the top's live page shows the leaf's camera through two hops over WebRTC, moving, and again after its recorder is SIGKILLed"
fi
sed 's/^/  live: /' "$WORK/remote-live.log"
live_figures=$(sed -n 's/^live figures: //p' "$WORK/remote-live.log" | jq -c '{latencyMs, firstFrameMs}' 2>/dev/null)
live_back=$(sed -n 's/^live figures after recorder SIGKILL: //p' "$WORK/remote-live.log" | jq -c '.pictureBackAfterMs' 2>/dev/null)
kill -KILL "$(cat "$WORK/live-rec.pid" 2>/dev/null)" 2>/dev/null
# A right the leaf stops sharing is refused from then on (its ParentDomain changed: it registers
# again with the new rights).
lk -n plant patch parentdomain mid --type merge -p '{"spec":{"rights":["live","playback"]}}' >/dev/null
export_refused() { [ "$(deep "gate/export.mp4?$range" /dev/null "$EXPORTER")" = 403 ]; }
check "two hops: a right the leaf no longer shares (export) is refused within 10 s (403)" wait_for 10 export_refused
leaf_state Degraded
gate_online() { [ "$(cameras '.cameras[] | select(.name=="gate") | .online')" = "$1" ]; }
check "the leaf camera's state change reaches the top (two levels up) within 5 s" wait_for 5 gate_online false
t_deep_state=$waited_ms
echo "  seen after ${waited_ms} ms"
leaf_state Recording
check "and back (Recording) within 5 s" wait_for 5 gate_online true
kill -9 "$LEAF_PID"
check "leaf killed: the top lists its camera offline within 15 s" wait_for 15 gate_online false
t_deep_offline=$waited_ms
echo "  offline at the top after ${waited_ms} ms"
check "and the child shows the leaf Offline" wait_for 5 is leaf_ready False/Offline

set_state yard Recording
yard_online() { [ "$(cameras '.cameras[] | select(.name=="yard") | .online')" = true ]; }
check "yard's state change (Recording) reaches the parent within 5 s" wait_for 5 yard_online
echo "  state change seen after ${waited_ms} ms"
t_state=$waited_ms
ck -n site label camera private share=yes --overwrite >/dev/null
check "a newly shared camera (add delta) appears within 5 s" wait_for 5 listed '["door","private","yard"]'
ck -n site delete camera private >/dev/null
check "a deleted camera (delete delta) disappears within 5 s" wait_for 5 listed '["door","yard"]'

# Unknown identity (same CA, no ChildDomain names it): 403. A certificate from a CA the parent
# does not trust, or none: the TLS handshake fails.
reg() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$WORK/fedca.crt" ${1:+--cert "$WORK/$1.crt" --key "$WORK/$1.key"} \
  -X POST -H 'Content-Type: application/json' -d '{"rights":["live"]}' "https://$P_FED/federation/v1/register" 2>/dev/null; }
check "unknown identity 'intruder' is refused (403)" test "$(reg intruder)" = 403
check "certificate from an untrusted CA is refused (handshake)" test "$(reg stranger)" = 000
check "no client certificate is refused (handshake)" test "$(reg)" = 000
grep -q 'registration refused' "$WORK/parent.log" && ok "refusal logged by the parent" || fail "refusal logged by the parent"

# Kill the child's access point: Offline within 15 s, its cameras offline.
kill -9 "$CHILD_PID"
check "child shown Offline within 15 s of killing its access point" wait_for 15 is ready False/Offline
echo "  Offline after ${waited_ms} ms"
t_offline=$waited_ms
check "its cameras are listed offline" test "$(cameras '[.cameras[] | select(.remote) | .online] | unique')" = '[false]'

# It comes back: registers again without restarting the parent.
start_child
check "child back: Ready=True/Online again" wait_for 20 is ready True/Online
check "its cameras online again (yard Recording)" wait_for 5 yard_online
door_again() { tunnel_up 2 && [ "$(remote "door/index.m3u8?$range" /dev/null)" = 200 ]; }
check "the tunnel is back and the remote playlist plays again" wait_for 10 door_again

# Deleting the ParentDomain unregisters the child: Unregistered in the parent, its cameras gone.
ck -n site delete parentdomain hq >/dev/null
check "ParentDomain deleted: child Unregistered in the parent within 10 s" wait_for 10 is ready False/Unregistered
check "its cameras are no longer listed" wait_for 3 listed '[]'

if [ "$failed" -gt 0 ]; then
  echo "--- parent log"; tail -30 "$WORK/parent.log"
  echo "--- child log"; tail -30 "$WORK/child.log"
  echo "--- leaf log"; tail -30 "$WORK/leaf.log"
fi
echo "figures: state change ${t_state} ms, offline ${t_offline} ms, remote playlist ${t_playlist} ms (direct from the child ${t_direct} ms), first segment (init+media) ${t_segment} ms"
echo "figures (two hops): playlist ${t_deep} ms, first segment (init+media) ${t_deep_segment} ms, state change ${t_deep_state} ms, leaf offline at the top ${t_deep_offline} ms"
echo "figures (live through two hops): ${live_figures:-none}, picture back after the recorder SIGKILL ${live_back:-none} ms"
echo "cascade: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
