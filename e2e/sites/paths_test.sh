#!/usr/bin/env bash
# Path selection for a remote site (issue #15, scenarios i-iii), with real NATs (net.sh) and
# real parts: the camera simulator and vigil-gateway inside the site's LAN (vs-site, behind a
# NAT), vigil-rendezvous on the host (100.64.0.1), vigil-recorder in file mode inside vs-core
# (behind its own NAT). The recorder is restarted for each case; each time all paths are raced.
#   i.   vs-core also on the site's LAN (`net.sh lan on`): the gateway reaches the recorder there,
#        the stream takes the LAN path (recorder, gateway and rendezvous all say so; the
#        recorder's metric counts it).
#   ii.  vs-core off the site's LAN, both NATs endpoint-independent: a UDP hole is punched and
#        the stream takes the direct path (QUIC).
#   iii. the site's NAT made symmetric: the hole does not open, the stream takes the relay over
#        UDP (the rendezvous forwards the QUIC datagrams of the stream's pairing).
#   iii-b. the same with UDP dropped at the site's NAT box: the relay over TCP (TLS) carries it.
# Each time the camera is recorded; at the end every segment plays (ffprobe).
# Connect times are printed as "FIGURE name value"; ends with "N passed, M failed". Root needed.
set -uo pipefail
export NO_COLOR=1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=e2e/sites/lib.sh
. "$HERE/lib.sh"
NET="bash $HERE/net.sh"
target=${CARGO_TARGET_DIR:-$ROOT/target}
passed=0; failed=0
ok() { echo "[paths] ok: $*"; passed=$((passed + 1)); }
bad() { echo "[paths] FAIL: $*"; failed=$((failed + 1)); }

(cd "$ROOT" && cargo build -q -p vigil-recorder -p vigil-site) || { echo "0 passed, 1 failed"; exit 1; }
rec_bin=$target/debug/vigil-recorder
gw_bin=$target/debug/vigil-gateway
rv_bin=$target/debug/vigil-rendezvous

work=$(mktemp -d /tmp/vigil-paths.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $NET down 2>/dev/null
  if [ "$failed" != 0 ]; then
    for f in rv.log gw.log rec1.log rec2.log rec3.log rec4.log sim.err; do echo "--- $f"; tail -n 25 "$work/$f" 2>/dev/null; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

$NET up --site-nat eim --core-nat eim || { echo "0 passed, 1 failed"; exit 1; }
$NET lan on || { echo "0 passed, 1 failed"; exit 1; }

site_pki "$work"

PORT=$((30000 + RANDOM % 10000))
rendezvous_config "$work" "100.64.0.1:$PORT" 192.168.50.2/32
RUST_LOG=info "$rv_bin" --config "$work/rv.yaml" >"$work/rv.log" 2>&1 &
pids+=($!)

ip netns exec vs-site /usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --bind 192.168.50.2 \
  --rtsp-port 8554 --control-port 8555 \
  --camera name=cam1,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25 \
  >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 300); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$work/sim.out" || { bad "camera simulator started"; echo "$passed passed, $failed failed"; exit 1; }

RUST_LOG=info ip netns exec vs-site "$gw_bin" --rendezvous "100.64.0.1:$PORT" --ca-file "$work/ca.pem" \
  --namespace shop --site branch1 --token-file "$work/site.token" >"$work/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "tunnel up" "$work/gw.log" && break; sleep 0.05; done
grep -q "tunnel up" "$work/gw.log" || bad "the gateway reaches the rendezvous service"
if grep -q 'gateway registered.*192.168.50.2/24' "$work/rv.log"; then
  ok "the gateway registers its LAN network with the rendezvous service"
else
  bad "the gateway registers its LAN network with the rendezvous service"
fi

rec_cfg() { # STORE-SUFFIX
  cat <<YAML
storage:
  local: {path: $work/store}
segmentSeconds: 2
buffer: {dir: $work/buf$1}
siteLink:
  rendezvous: 100.64.0.1:$PORT
  caFile: $work/ca.pem
  tokenFile: $work/rec.token
  namespace: shop
cameras:
  - {namespace: shop, name: cam1, url: "rtsp://192.168.50.2:8554/cam1/live", site: branch1}
YAML
}
segments() { find "$work/store/shop/cam1" -name '*-live.mp4' 2>/dev/null | wc -l; }
open_ms() { sed -n 's/.*camera reached through.*open_ms=\([0-9.]*\).*/\1/p' "$1" | head -1; }
start_rec() { # N: starts recorder N in vs-core, with metrics on a known port
  rec_cfg "$1" >"$work/rec$1.yaml"
  ip netns exec vs-core "$rec_bin" record --config "$work/rec$1.yaml" --listen "127.0.0.1:1808$1" \
    --reconnect-min-ms 200 --reconnect-max-ms 1000 --stall-timeout 3 >"$work/rec$1.log" 2>&1 &
  rec=$!
  pids+=($rec)
}

# 1. The LAN path.
start_rec 1
for _ in $(seq 150); do [ "$(segments)" -ge 3 ] && break; sleep 0.1; done
if grep -q 'camera reached through.*path=lan' "$work/rec1.log"; then
  ok "on the site's LAN the stream takes the LAN path (recorder)"
else
  bad "on the site's LAN the stream takes the LAN path (recorder: $(grep -o 'path=[a-z]*' "$work/rec1.log" | head -1))"
fi
if grep -q 'stream open path=lan' "$work/gw.log" && grep -q 'stream open on another path.*path=lan' "$work/rv.log"; then
  ok "the gateway and the rendezvous service know the path (lan)"
else
  bad "the gateway and the rendezvous service know the path (lan)"
fi
metrics=$(ip netns exec vs-core curl -sf http://127.0.0.1:18081/metrics)
if grep -q 'vigil_recorder_site_streams_total{.*path="lan"} [1-9]' <<<"$metrics"; then
  ok "the recorder's metric counts the stream on the LAN path"
else
  bad "the recorder's metric counts the stream on the LAN path ($(grep site_streams <<<"$metrics" | head -3))"
fi
if [ "$(segments)" -ge 3 ]; then ok "the camera is recorded over the LAN path"; else bad "the camera is recorded over the LAN path ($(segments) segments)"; fi
echo "FIGURE lan_open_ms $(open_ms "$work/rec1.log") (recorder: LAN offer via the rendezvous, gateway dials the recorder on the LAN, TLS, camera dialled)"
echo "FIGURE lan_gateway_connect_ms $(sed -n 's/.*stream open path=lan.*connect_ms=\([0-9.]*\).*/\1/p' "$work/gw.log" | head -1) (gateway: Open received to the LAN path chosen)"
kill -TERM "$rec"; wait "$rec" 2>/dev/null

# ii. Off the LAN, both NATs endpoint-independent: the direct path.
$NET lan off
before=$(segments)
start_rec 2
for _ in $(seq 150); do [ "$(segments)" -ge $((before + 2)) ] && break; sleep 0.1; done
if grep -q 'camera reached through.*path=direct' "$work/rec2.log"; then
  ok "through two endpoint-independent NATs the stream takes the direct path (recorder)"
else
  bad "through two endpoint-independent NATs the stream takes the direct path ($(grep -o 'path=[a-z]*' "$work/rec2.log" | head -1))"
fi
if grep -q 'stream open path=direct' "$work/gw.log" && grep -q 'stream open on another path.*path=direct' "$work/rv.log"; then
  ok "the gateway and the rendezvous service know the path (direct)"
else
  bad "the gateway and the rendezvous service know the path (direct)"
fi
if grep -q 'vigil_recorder_site_streams_total{.*path="direct"} [1-9]' <<<"$(ip netns exec vs-core curl -sf http://127.0.0.1:18082/metrics)"; then
  ok "the recorder's metric counts the stream on the direct path"
else
  bad "the recorder's metric counts the stream on the direct path"
fi
if [ "$(segments)" -ge $((before + 2)) ]; then ok "the camera is recorded over the direct path"; else bad "the camera is recorded over the direct path"; fi
echo "FIGURE direct_open_ms $(open_ms "$work/rec2.log") (recorder: reflexive address, offer, punch, QUIC handshake through both NATs, camera dialled)"
echo "FIGURE direct_gateway_connect_ms $(sed -n 's/.*stream open path=direct.*connect_ms=\([0-9.]*\).*/\1/p' "$work/gw.log" | head -1) (gateway: Open received to the direct path chosen)"
kill -TERM "$rec"; wait "$rec" 2>/dev/null

# iii. The site's NAT symmetric: the hole cannot open, the relay over UDP carries the stream.
$NET nat site symmetric
before=$(segments)
start_rec 3
for _ in $(seq 150); do [ "$(segments)" -ge $((before + 2)) ] && break; sleep 0.1; done
if grep -q 'camera reached through.*path=relay' "$work/rec3.log" && grep -q 'stream open path=relay transport="\?udp.*tried_direct=true.*symmetric' "$work/gw.log"; then
  ok "behind a symmetric NAT the gateway sees it, skips the punch, and the stream takes the relay over UDP"
else
  bad "behind a symmetric NAT the stream takes the relay over UDP ($(grep -o 'path=[a-z]* transport=[a-z"]*' "$work/gw.log" | tail -1))"
fi
if grep -q 'site stream open.*path=relay transport="\?udp' "$work/rec3.log" && grep -q 'relaying a stream.*path=relay transport="\?udp' "$work/rv.log"; then
  ok "the recorder and the rendezvous service say the relay is over UDP"
else
  bad "the recorder and the rendezvous service say the relay is over UDP"
fi
if [ "$(segments)" -ge $((before + 2)) ]; then ok "the camera is recorded over the relay over UDP"; else bad "the camera is recorded over the relay over UDP"; fi
echo "FIGURE relay_udp_open_ms $(open_ms "$work/rec3.log") (recorder: the gateway finds its NAT symmetric, registers with the UDP relay, QUIC through it)"
kill -TERM "$rec"; wait "$rec" 2>/dev/null

# iii-b. UDP dropped at the site's NAT box: the relay over UDP cannot register, TCP carries it.
ip netns exec vs-site-nat iptables -w -I FORWARD -p udp -j DROP
before=$(segments)
start_rec 4
for _ in $(seq 150); do [ "$(segments)" -ge $((before + 2)) ] && break; sleep 0.1; done
if grep -q 'camera reached through.*path=relay' "$work/rec4.log" && grep -q 'site stream open.*path=relay transport="\?tcp' "$work/rec4.log" \
  && grep -q 'stream open path=relay transport="\?tcp.*tried_relay_udp=true.*no_relay_udp=.*UDP relay' "$work/gw.log"; then
  ok "with UDP blocked at the site the relay over UDP fails and the relay over TCP carries the stream"
else
  bad "with UDP blocked at the site the relay over TCP carries the stream ($(grep -o 'path=[a-z]* transport=[a-z"]*' "$work/gw.log" | tail -1))"
fi
if [ "$(segments)" -ge $((before + 2)) ]; then ok "the camera is recorded over the relay over TCP"; else bad "the camera is recorded over the relay over TCP"; fi
echo "FIGURE relay_tcp_open_ms $(open_ms "$work/rec4.log") (recorder: UDP blocked at the site: the gateway's registration with the UDP relay unanswered (≤ 0.6 s), then the relay over TCP)"
kill -TERM "$rec"; wait "$rec" 2>/dev/null
ip netns exec vs-site-nat iptables -w -D FORWARD -p udp -j DROP

total=0; bad_segs=0
while IFS= read -r f; do
  total=$((total + 1))
  fr=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f" 2>/dev/null)
  if [ "${fr:-0}" -lt 1 ]; then bad_segs=$((bad_segs + 1)); echo "unplayable: $f"; fi
done < <(find "$work/store/shop/cam1" -name '*.mp4')
if [ "$total" -ge 9 ] && [ "$bad_segs" = 0 ]; then ok "all $total segments play (ffprobe, frames decoded)"; else bad "segments play ($bad_segs of $total bad)"; fi
if grep -rqF "$(cat "$work/site.token")" "$work"/*.log; then bad "the site token is in a log"; else ok "no token in any log"; fi

echo "paths: $passed passed, $failed failed"
[ "$failed" = 0 ]
