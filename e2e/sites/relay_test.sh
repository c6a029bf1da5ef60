#!/usr/bin/env bash
# Remote site through a symmetric NAT, over the relay (issue #15, scenarios iii and iv), with real
# NATs (net.sh) and real parts: the camera simulator and vigil-gateway run inside the site's
# namespace (vs-site, behind a symmetric NAT), vigil-rendezvous on the host (100.64.0.1, the
# cluster's public address), vigil-recorder in file mode inside vs-core (behind its own NAT),
# recording into a local store. Checks:
#   - the recorder side cannot reach the camera directly (so footage can only come through the
#     tunnel); a gateway with a wrong token is refused; a site camera outside the site's camera
#     networks is refused by the gateway;
#   - the camera is recorded through the relay and every segment plays (ffprobe);
#   - (iv) the site's uplink is cut for $CUT_SECONDS s (30) during recording: the gateway
#     reconnects with jittered backoff after the uplink returns and the stream flows again within
#     5 s (both times printed); the hole the recorder reports (its gap record) is backfilled from
#     the simulator's SD card through the tunnel (`vigil-jobs backfill` in file mode, inside
#     vs-core: ONVIF SOAP and Profile G replay both through the relay); every stored segment plays
#     (ffprobe) and every frame the camera produced from the first stored frame to the last is in
#     the store, read from the time burnt into each frame (`frame-check`, the simulator's
#     --frame-log).
# Prints figures as "FIGURE name value" and "N passed, M failed". Needs root (namespaces).
set -uo pipefail
export NO_COLOR=1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=e2e/sites/lib.sh
. "$HERE/lib.sh"
NET="bash $HERE/net.sh"
CUT_SECONDS=${CUT_SECONDS:-30}
target=${CARGO_TARGET_DIR:-$ROOT/target}
passed=0; failed=0
ok() { echo "[relay] ok: $*"; passed=$((passed + 1)); }
bad() { echo "[relay] FAIL: $*"; failed=$((failed + 1)); }
log() { echo "[relay $(date +%H:%M:%S)] $*"; }
now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$(now)"; }

(cd "$ROOT" && cargo build -q -p vigil-recorder -p vigil-site -p vigil-jobs &&
  cargo build -q -p vigil-e2e --bin frame-check) || { echo "0 passed, 1 failed"; exit 1; }
rec_bin=$target/debug/vigil-recorder
gw_bin=$target/debug/vigil-gateway
rv_bin=$target/debug/vigil-rendezvous
jobs_bin=$target/debug/vigil-jobs
fc_bin=$target/debug/frame-check

work=$(mktemp -d /tmp/vigil-sites.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $NET down 2>/dev/null
  if [ "$failed" != 0 ]; then
    for f in rv.log gw.log rec.log sim.err badgw.log backfill.err; do echo "--- $f"; tail -n 25 "$work/$f" 2>/dev/null; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

$NET up --site-nat symmetric --core-nat eim || { echo "0 passed, 1 failed"; exit 1; }

# The rendezvous service's certificate (the gateway and the recorder pin its CA).
site_pki "$work"
echo wrong-token >"$work/bad.token"

PORT=$((30000 + RANDOM % 10000))
rendezvous_config "$work" "100.64.0.1:$PORT" 192.168.50.2/32
RUST_LOG=info "$rv_bin" --config "$work/rv.yaml" >"$work/rv.log" 2>&1 &
pids+=($!)

# The camera, inside the site's LAN, with an SD card (ONVIF Profile G replay on its control port)
# and a log of every frame it encoded (the frame check's reference).
mkdir -p "$work/sd" "$work/frames"
ip netns exec vs-site /usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --bind 192.168.50.2 \
  --rtsp-port 8554 --control-port 8555 --sd-dir "$work/sd" --sd-chunk-seconds 4 --frame-log "$work/frames" \
  --camera name=cam1,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25 \
  >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 300); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$work/sim.out" || { bad "camera simulator started"; exit 1; }

if ip netns exec vs-core timeout 3 bash -c 'exec 3<>/dev/tcp/192.168.50.2/8554' 2>/dev/null; then
  bad "the recorder side cannot reach the camera directly"
else
  ok "the recorder side cannot reach the camera directly"
fi

gw() { # TOKEN-FILE LOG
  RUST_LOG=info ip netns exec vs-site "$gw_bin" --rendezvous "100.64.0.1:$PORT" --ca-file "$work/ca.pem" \
    --namespace shop --site branch1 --token-file "$1" >"$2" 2>&1 &
  pids+=($!)
}
gw "$work/bad.token" "$work/badgw.log"
badgw=$!
t0=$(now)
gw "$work/site.token" "$work/gw.log"
for _ in $(seq 100); do grep -q "tunnel up" "$work/gw.log" && break; sleep 0.05; done
if grep -q "tunnel up" "$work/gw.log"; then
  ok "the gateway reaches the rendezvous service from behind the symmetric NAT"
  echo "FIGURE gateway_connect_ms $(ms_since "$t0") (process start to tunnel up)"
else
  bad "the gateway reaches the rendezvous service"
fi
for _ in $(seq 50); do grep -q "refused this gateway" "$work/badgw.log" && break; sleep 0.1; done
if grep -q "refused this gateway" "$work/badgw.log" && ! grep -q "tunnel up" "$work/badgw.log"; then
  ok "a gateway with a wrong token is refused"
else
  bad "a gateway with a wrong token is refused"
fi
kill "$badgw" 2>/dev/null
if grep -rqF "$(cat "$work/site.token")" "$work"/*.log; then bad "the site token is in a log"; else ok "no token in any log"; fi

cat >"$work/rec.yaml" <<YAML
storage:
  local: {path: $work/store}
segmentSeconds: 4
buffer: {dir: $work/buf}
siteLink:
  rendezvous: 100.64.0.1:$PORT
  caFile: $work/ca.pem
  tokenFile: $work/rec.token
  namespace: shop
cameras:
  - {namespace: shop, name: cam1, url: "rtsp://192.168.50.2:8554/cam1/live", site: branch1}
  # Outside the site's camera networks (the NAT box's own address): the gateway refuses it.
  - {namespace: shop, name: router, url: "rtsp://192.168.50.1:8554/cam1/live", site: branch1}
YAML
ip netns exec vs-core "$rec_bin" record --config "$work/rec.yaml" --listen 127.0.0.1:0 \
  --reconnect-min-ms 200 --reconnect-max-ms 1000 --stall-timeout 3 >"$work/rec.log" 2>&1 &
rec=$!
pids+=($rec)

segments() { # CAMERA: count of live segments in the store
  find "$work/store/shop/$1" -name '*-live.mp4' 2>/dev/null | wc -l
}
for _ in $(seq 200); do [ "$(segments cam1)" -ge 3 ] && break; sleep 0.1; done
if [ "$(segments cam1)" -ge 3 ]; then ok "the site's camera is recorded through the relay"; else bad "the site's camera is recorded through the relay ($(segments cam1) segments)"; fi
open_ms=$(sed -n 's/.*camera reached through.*open_ms=\([0-9.]*\).*/\1/p' "$work/rec.log" | head -1)
echo "FIGURE recorder_open_ms_first ${open_ms:-none} (recorder: TLS to the relay, gateway dials camera, stream open)"
echo "FIGURE recorder_open_ms_all $(sed -n 's/.*camera reached through.*open_ms=\([0-9.]*\).*/\1/p' "$work/rec.log" | tr '\n' ' ')"
if grep -q "not in the site's camera networks" "$work/rec.log" && [ "$(segments router)" = 0 ]; then
  ok "a site address outside the site's camera networks is refused by the gateway"
else
  bad "a site address outside the site's camera networks is refused by the gateway"
fi

# (iv) the site's uplink is cut, then restored.
before=$(segments cam1)
$NET cut site
sleep "$CUT_SECONDS"
n_up=$(grep -c "tunnel up" "$work/gw.log")
n_open=$(grep -c "camera reached through" "$work/rec.log")
t_restore=$(now)
$NET restore site
for _ in $(seq 300); do [ "$(grep -c "tunnel up" "$work/gw.log")" -gt "$n_up" ] && break; sleep 0.05; done
if [ "$(grep -c "tunnel up" "$work/gw.log")" -gt "$n_up" ]; then
  rt=$(ms_since "$t_restore")
  echo "FIGURE reconnect_ms $rt (uplink restored after ${CUT_SECONDS} s cut to tunnel up; target <= 5000)"
  if [ "$rt" -le 5000 ]; then ok "the tunnel is back within 5 s of the uplink"; else bad "the tunnel is back within 5 s of the uplink ($rt ms)"; fi
else
  bad "the tunnel comes back after the uplink is restored"
fi
for _ in $(seq 300); do [ "$(grep -c "camera reached through" "$work/rec.log")" -gt "$n_open" ] && break; sleep 0.05; done
if [ "$(grep -c "camera reached through" "$work/rec.log")" -gt "$n_open" ]; then
  rs=$(ms_since "$t_restore")
  echo "FIGURE restore_to_stream_flowing_ms $rs (uplink restored to the camera's stream reopened through the relay; target <= 5000)"
  if [ "$rs" -le 5000 ]; then ok "the stream flows again within 5 s of the uplink"; else bad "the stream flows again within 5 s of the uplink ($rs ms)"; fi
else
  bad "the stream is reopened after the uplink is restored"
fi
for _ in $(seq 300); do [ "$(segments cam1)" -ge $((before + 2)) ] && break; sleep 0.1; done
if [ "$(segments cam1)" -ge $((before + 2)) ]; then
  ok "recording resumes after the cut"
else
  bad "recording resumes after the cut ($before before, $(segments cam1) now)"
fi

# The hole: the recorder's gap record (written when the stream came back).
for _ in $(seq 100); do
  [ -n "$(find "$work/store/shop/cam1/gaps" -name '*.json' 2>/dev/null)" ] && break; sleep 0.1
done
# The longest gap record (the cut; a record is <prefix>/<ns>/<camera>/gaps/<startMs>-<endMs>.json).
read -r gap_start gap_end < <(find "$work/store/shop/cam1/gaps" -name '*.json' -printf '%f\n' 2>/dev/null |
  python3 -c 'import sys; k=[tuple(map(int, l.split(".")[0].split("-"))) for l in sys.stdin if l.strip()]; a,b=max(k, key=lambda x: x[1]-x[0]); print(a, b)' 2>/dev/null)
if [ -n "${gap_end:-}" ]; then
  echo "[relay] gap record: $(( (gap_end - gap_start) / 1000 )) s ($gap_start..$gap_end)"
  ok "the recorder reported the hole ($(( (gap_end - gap_start) / 1000 )) s)"
else
  bad "the recorder reported the hole (gap record)"; gap_start=0; gap_end=0
fi
# The backfill window: the hole with a segment either side (what the store holds is not fetched
# again). The camera's SD card closes a chunk every 4 s: wait for the one holding the hole's end.
iso() { python3 -c 'import sys,datetime; print(datetime.datetime.fromtimestamp(int(sys.argv[1])/1000, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00","Z"))' "$1"; }
while [ "$(date +%s%3N)" -lt $((gap_end + 5000)) ]; do sleep 0.2; done
relayed_before=$(grep -c "relaying a stream" "$work/rv.log")
t_bf=$(now)
ip netns exec vs-core "$jobs_bin" backfill --config "$work/rec.yaml" --camera shop/cam1 \
  --start "$(iso $((gap_start - 4000)))" --end "$(iso $((gap_end + 4000)))" \
  --onvif-device-url http://192.168.50.2:8555/onvif/device_service >"$work/backfill.json" 2>"$work/backfill.err"
bf_rc=$?
bf_ms=$(ms_since "$t_bf")
relayed=$(( $(grep -c "relaying a stream" "$work/rv.log") - relayed_before ))
read -r missing recovered lost < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["secondsMissingBefore"], r["secondsRecovered"], r["secondsLost"])' "$work/backfill.json" 2>/dev/null)
echo "FIGURE backfill_ms $bf_ms (vigil-jobs backfill of the ${missing:-?} s hole through the relay: ONVIF + Profile G replay; ${recovered:-?} s recovered, ${lost:-?} s lost, $relayed streams relayed)"
if [ "$bf_rc" = 0 ] && python3 -c 'import sys; m,r,l=map(float,sys.argv[1:]); sys.exit(0 if m >= 0.8*'"$CUT_SECONDS"' and r >= m - 0.2 and l <= 0.2 else 1)' "${missing:-0}" "${recovered:-0}" "${lost:-99}"; then
  ok "the hole is backfilled from the camera's SD card (${recovered} of ${missing} s, ${lost} s lost)"
else
  bad "the hole is backfilled from the camera's SD card (rc $bf_rc; missing ${missing:-?}, recovered ${recovered:-?}, lost ${lost:-?})"
fi
# The recorder side cannot reach the camera (checked above): the backfill went through the tunnel.
if [ "$relayed" -ge 2 ]; then ok "the backfill's ONVIF and replay connections went through the relay ($relayed streams)"; else bad "the backfill went through the relay ($relayed streams)"; fi
n_backfill=$(find "$work/store/shop/cam1" -name '*-backfill.mp4' | wc -l)
[ "$n_backfill" -ge 1 ] && ok "$n_backfill backfilled segments stored" || bad "backfilled segments stored"

kill -TERM "$rec"; wait "$rec" 2>/dev/null

total=0; bad_segs=0
while IFS= read -r f; do
  total=$((total + 1))
  d=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f" 2>/dev/null)
  fr=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f" 2>/dev/null)
  # A session's last segment may be short (the stream stalled when the uplink went): it must
  # still decode.
  if [ -z "$d" ] || [ "${fr:-0}" -lt 1 ]; then bad_segs=$((bad_segs + 1)); echo "unplayable: $f ($d s, ${fr:-0} frames)"; fi
done < <(find "$work/store/shop/cam1" -name '*.mp4')
if [ "$total" -ge 6 ] && [ "$bad_segs" = 0 ]; then ok "all $total segments play (ffprobe, frames decoded)"; else bad "segments play ($bad_segs of $total bad)"; fi
# Every frame the camera produced, from the first stored segment's start to the last one's end
# (the cut window included), is in the store. At the hole's two seams a few frames may be
# missing: the backfill dates replayed frames by the live clock of the session before the hole
# (aligned at its start), and the live session after it is anchored anew, so the two clocks
# differ by the difference of the sessions' apparent latencies (0.16 s seen on this loaded
# machine); what is missing there is printed, and must stay within SEAM_MS of each seam (the
# backfill's own bound for aligning the two clocks, replay::MAX_ALIGN_MS).
SEAM_MS=${SEAM_MS:-750}
read -r first_ms last_ms < <(find "$work/store/shop/cam1" -name '*.mp4' -printf '%f\n' |
  python3 -c 'import sys; k=[tuple(map(int, l.split("-")[:2])) for l in sys.stdin if l.strip()]; print(min(a for a,_ in k), max(b for _,b in k))')
if "$fc_bin" --store "$work/store" --namespace shop --camera cam1 --frame-log "$work/frames" \
  --width 640 --height 360 --fps 25 --from-ms "$((first_ms + 1000))" --to-ms "$((last_ms - 1000))" \
  --excuse "$((gap_start - SEAM_MS)):$((gap_start + SEAM_MS))" --excuse "$((gap_end - SEAM_MS)):$((gap_end + SEAM_MS))" \
  --max-key-error-ms "$SEAM_MS" >"$work/fc.out" 2>&1; then
  ok "every frame the camera produced is stored, the cut window included ($(( (last_ms - first_ms) / 1000 )) s checked; seams ±$SEAM_MS ms)"
else
  bad "every frame the camera produced is stored"
fi
sed 's/^/[frame-check] /' "$work/fc.out" | head -8
echo "FIGURE frames_missing_at_seams $(sed -n 's/.* \([0-9]*\) missing (\([0-9.]*\) s).*/\1 frames (\2 s)/p' "$work/fc.out" | head -1)"
grep -E "stream ended" "$work/rv.log" | tail -2 | sed 's/^/[rendezvous] /'

echo "relay: $passed passed, $failed failed"
[ "$failed" = 0 ]
