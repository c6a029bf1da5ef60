#!/usr/bin/env bash
# shellcheck disable=SC1090  # the domains' env files are known only at run time
# Catalog sync of a child with N cameras (default 10,000) into a parent, between two real
# control planes (e2e/cluster/domain.sh, INDEX 13 and 14) and the debug-built access points.
# Prints: time from starting the child's access point to the parent's ChildDomain status
# showing N cameras, the full catalog's bytes, the parent's resident memory before and after,
# and the time for one camera's state change at that size.
#   bash e2e/cascade/bench.sh [N]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
N=${1:-10000}
target=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$target/debug/vigil-access
WORK=$(mktemp -d -t vigil-cascade-bench-XXXXXX)
PARENT=cascade-bparent CHILD=cascade-bchild
P_HTTP=127.0.0.1:18131 P_FED=127.0.0.1:18132 C_HTTP=127.0.0.1:18141
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  bash e2e/cluster/domain.sh down $PARENT --purge >/dev/null 2>&1
  bash e2e/cluster/domain.sh down $CHILD --purge >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "bench: $*" >&2; exit 1; }
ms() { echo $(($(date +%s%N) / 1000000)); }

cargo build --quiet -p vigil-access || die "build"
bash e2e/cluster/domain.sh up $PARENT 13 >"$WORK/p.log" 2>&1 &
a=$!
bash e2e/cluster/domain.sh up $CHILD 14 >"$WORK/c.log" 2>&1 &
b=$!
wait $a && wait $b || die "domains"
P_ENV=$(bash e2e/cluster/domain.sh env $PARENT)
C_ENV=$(bash e2e/cluster/domain.sh env $CHILD)
pk() { (. "$P_ENV" && kubectl "$@"); }
ck() { (. "$C_ENV" && kubectl "$@"); }
pk apply -f crds/ >/dev/null && ck apply -f crds/ >/dev/null || die "crds"

openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$WORK/fedca.key" -out "$WORK/fedca.crt" -days 2 -subj "/CN=fedca" 2>/dev/null
pki() {
  openssl req -new -newkey rsa:2048 -nodes -keyout "$WORK/$1.key" -subj "/CN=$2" -out "$WORK/$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\n%s\n' "${3:+subjectAltName=$3}" >"$WORK/$1.ext"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/fedca.crt" -CAkey "$WORK/fedca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.crt" 2>/dev/null
}
pki server parent "IP:127.0.0.1"
pki child child-big

pk create namespace fed >/dev/null
pk apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ChildDomain
metadata: {name: big, namespace: fed}
spec: {identity: child-big, rights: [playback]}
EOF
ck create namespace site >/dev/null
ck -n site create secret generic parent-link --from-file=tls.crt="$WORK/child.crt" \
  --from-file=tls.key="$WORK/child.key" --from-file=ca.crt="$WORK/fedca.crt" >/dev/null
ck apply -f - >/dev/null <<EOF
apiVersion: vigil.dev/v1alpha1
kind: ParentDomain
metadata: {name: hq, namespace: site}
spec: {url: "https://$P_FED", credentialsSecret: parent-link, rights: [playback]}
EOF
t0=$(ms)
python3 - "$N" >"$WORK/cams.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
          "metadata": {"name": f"cam-{i:05d}", "namespace": "site"},
          "spec": {"source": {"url": f"rtsp://10.0.{i // 250}.{i % 250}/s"}, "pool": "main",
                   "expectedBitrateKbps": 1000}} for i in range(n)]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
EOF
ck create -f "$WORK/cams.json" >/dev/null || die "creating cameras"
echo "created $N cameras in the child's API server in $(($(ms) - t0)) ms"

mkdir -p "$WORK/ps" "$WORK/cs"
echo "storage: {local: {path: $WORK/ps}}" >"$WORK/p.yaml"
echo "storage: {local: {path: $WORK/cs}}" >"$WORK/c.yaml"
(. "$P_ENV" && exec "$BIN" serve --config "$WORK/p.yaml" --listen $P_HTTP --no-auth \
  --federation-listen $P_FED --federation-cert "$WORK/server.crt" --federation-key "$WORK/server.key" \
  --federation-client-ca "$WORK/fedca.crt" --federation-namespace fed) >"$WORK/parent.log" 2>&1 &
PP=$!; pids+=("$PP")
sleep 2
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
rss0=$(rss $PP)
t0=$(ms)
(. "$C_ENV" && exec "$BIN" serve --config "$WORK/c.yaml" --listen $C_HTTP --no-auth --federation-uplink) >"$WORK/child.log" 2>&1 &
pids+=($!)
count() { pk -n fed get childdomain big -o jsonpath='{.status.cameras}' 2>/dev/null; }
until [ "$(count)" = "$N" ]; do
  [ $(($(ms) - t0)) -gt 120000 ] && die "no full catalog in 120 s: $(count)"
  sleep 0.2
done
t_sync=$(($(ms) - t0))
sleep 2
rss1=$(rss $PP)
bytes=$(grep -o 'full catalog.*' "$WORK/parent.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'bytes=[0-9]*' | tail -1)
t0=$(ms)
curl -sS -o /dev/null "http://$P_HTTP/api/v1/cameras"
t_list=$(($(ms) - t0))
# One camera's state change at this size.
dir=${VIGIL_DOMAINS_DIR:-/var/lib/vigil-domains}/$CHILD
url=$(. "$dir/env" && echo "$VIGIL_DOMAIN_API")
t0=$(ms)
curl -sS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" -X PATCH \
  -H 'Content-Type: application/merge-patch+json' -d '{"status":{"state":"Recording"}}' \
  "$url/apis/vigil.dev/v1alpha1/namespaces/site/cameras/cam-04242/status" >/dev/null
online() { pk -n fed get childdomain big -o jsonpath='{.status.camerasOnline}' 2>/dev/null; }
until [ "$(online)" = 1 ]; do
  [ $(($(ms) - t0)) -gt 30000 ] && die "state change not seen in 30 s"
  sleep 0.1
done
t_status=$(($(ms) - t0))
until [ "$(curl -sS "http://$P_HTTP/api/v1/cameras" | jq '.cameras[] | select(.name=="cam-04242") | .online')" = true ]; do
  [ $(($(ms) - t0)) -gt 30000 ] && die "state change not seen in 30 s"
  sleep 0.5
done
t_state=$(($(ms) - t0))
echo "cameras: $N"
echo "sync: ${t_sync} ms from starting the child's access point to the parent's ChildDomain status showing $N cameras"
echo "full catalog: $bytes"
echo "parent RSS: ${rss0} kB before, ${rss1} kB after (+$((rss1 - rss0)) kB)"
echo "one GET /api/v1/cameras listing $N remote cameras: ${t_list} ms"
echo "one state change at $N cameras: in the ChildDomain status (camerasOnline, 1 s status loop) after ${t_status} ms"
echo "one state change at $N cameras: ${t_state} ms (polled every 0.5 s by listing the parent's cameras)"
