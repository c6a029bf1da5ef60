#!/usr/bin/env bash
# Web page test: records real footage from the camera simulator (one stream dropped for a few
# seconds, plus a backfilled segment placed in the hole; the other recorded in Event mode around
# one motion alarm raised through the simulator's ONVIF event service) into a local store, starts
# `vigil-access serve --no-auth`, and drives the page in headless Debian Chromium
# (playwright-core, never a downloaded browser). Prints "N passed, M failed"; writes a
# screenshot to $VIGIL_UI_OUT (default target/ui/timeline.png).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
out=${VIGIL_UI_OUT:-$target/ui}
secs=${VIGIL_UI_SECONDS:-24}
work=$(mktemp -d /tmp/vigil-ui.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build -q -p vigil-recorder -p vigil-access
bin=$target/debug/vigil-recorder
access=$target/debug/vigil-access
if [ ! -d e2e/ui/node_modules/playwright-core ]; then
  (cd e2e/ui && npm install --no-audit --no-fund >/dev/null)
fi

# Camera simulator on free ports; wait for its READY line.
/usr/bin/python3 e2e/camera-sim/camera_sim.py --rtsp-port 0 --control-port 0 \
  --camera name=cam1,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25 \
  --camera name=cam2,codec=h264,bitrate=800,fps=25,width=640,height=360,gop=25 \
  >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 600); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
read -r rtsp control < <(sed -n 's/^READY rtsp=\([0-9]*\) control=\([0-9]*\).*/\1 \2/p' "$work/sim.out")
[ -n "${rtsp:-}" ] || { echo "camera simulator did not start"; cat "$work/sim.err"; echo "0 passed, 1 failed"; exit 1; }

cat >"$work/rec.yaml" <<YAML
storage:
  local: {path: $work/store}
segmentSeconds: 4
buffer: {dir: $work/buf}
# The simulator listens on loopback, which the camera address policy opens only explicitly.
cameraNetworks: {allow: [127.0.0.1/32]}
cameras:
  - {namespace: site-a, name: cam1, url: "rtsp://127.0.0.1:$rtsp/cam1/live"}
  - namespace: site-b
    name: cam2
    url: "rtsp://127.0.0.1:$rtsp/cam2/live"
    events: {onvifUrl: "http://127.0.0.1:$control/onvif/device_service", preSeconds: 2, postSeconds: 2}
YAML
"$bin" record --config "$work/rec.yaml" --listen 127.0.0.1:0 --reconnect-min-ms 200 --reconnect-max-ms 400 \
  2>"$work/rec.log" &
rec=$!
pids+=($rec)
# cam2 records only around events: wait for its PullPoint subscription before the alarm.
for _ in $(seq 150); do
  curl -fsS "http://127.0.0.1:$control/healthz" | grep -q '"pullpoint_subscriptions": *[1-9]' && break
  sleep 0.1
done
sleep $((secs / 3))
curl -fsS -X POST "http://127.0.0.1:$control/cameras/cam1/drop" >/dev/null
curl -fsS -X POST "http://127.0.0.1:$control/cameras/cam2/motion?state=true" >/dev/null
sleep 3
curl -fsS -X POST "http://127.0.0.1:$control/cameras/cam2/motion?state=false" >/dev/null
sleep 3
curl -fsS -X POST "http://127.0.0.1:$control/cameras/cam1/restore" >/dev/null
sleep $((secs - secs / 3 - 6))
kill -TERM "$rec"; wait "$rec" || true

# A backfilled segment inside cam1's hole (a copy of a live one: the timeline only needs its key).
python3 - "$work/store" <<'PY'
import os, sys, shutil, datetime
root = os.path.join(sys.argv[1], 'site-a', 'cam1')
segs = []
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith('-live.mp4'):
            s, e, _ = f.split('-')
            segs.append((int(s), int(e), os.path.join(d, f)))
segs.sort()
gap = max(((b[0] - a[1], a[1]) for a, b in zip(segs, segs[1:])), default=(0, 0))
if gap[0] < 3000:
    sys.exit('no hole in cam1')
s = gap[1] + 500
e = s + 1500
t = datetime.datetime.fromtimestamp(s / 1000, datetime.timezone.utc)
d = os.path.join(root, t.strftime('%Y/%m/%d/%H'))
os.makedirs(d, exist_ok=True)
shutil.copy(segs[0][2], os.path.join(d, f'{s}-{e}-backfill.mp4'))
PY

printf 'storage:\n  local: {path: %s}\n' "$work/store" >"$work/serve.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$access" serve --config "$work/serve.yaml" --no-auth --listen "127.0.0.1:$port" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

node e2e/ui/timeline.mjs "http://127.0.0.1:$port" "$out/timeline.png"
