#!/usr/bin/env bash
# Backfill speed: footage-seconds fetched per wall-second with ONVIF replay `Rate-Control: no`,
# from the camera simulator's SD card into S3 (moto), for MINUTES of 720p25 H.264 at 4 Mbit/s.
#
#   crates/jobs/benches/backfill_speed.sh            # one hour (MINUTES=60)
#   MINUTES=10 crates/jobs/benches/backfill_speed.sh
#
# The SD card is made offline: one 10 s chunk encoded by ffmpeg (x264 ultrafast, 4 Mbit/s CBR,
# keyframe every second, no B-frames, as the simulator's cameras encode) and copied under the
# simulator's chunk names `<startMs>-<endMs>.ts` so that they tile the hour before now. The
# simulator times replayed frames from the chunk name plus the PTS inside it, so repeated
# content is fine for a speed measurement. Needs: ffmpeg, /usr/bin/python3 with GStreamer
# (camera-sim), moto (VIGIL_MOTO_PYTHON, default /var/cache/vigil/venv/bin/python), and a built
# target/{release,debug}/vigil-jobs (BIN=… to choose).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
MINUTES=${MINUTES:-60}
PY=${VIGIL_MOTO_PYTHON:-/var/cache/vigil/venv/bin/python}
BIN=${BIN:-$ROOT/target/release/vigil-jobs}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/vigil-jobs
W=$(mktemp -d /tmp/vigil-bf-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

mkdir -p "$W/sd/cam1"
ffmpeg -nostdin -v error -f lavfi -i "testsrc2=size=1280x720:rate=25,noise=alls=12:allf=t" -t 10 \
  -c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 25 -keyint_min 25 -sc_threshold 0 \
  -b:v 4M -maxrate 4M -bufsize 2M -pix_fmt yuv420p -f mpegts "$W/chunk.ts"
now=$(date +%s%3N)
base=$(( (now / 1000 - MINUTES * 60 - 120) * 1000 ))
n=$(( MINUTES * 6 ))
for i in $(seq 0 $((n - 1))); do
  s=$(( base + i * 10000 )); cp "$W/chunk.ts" "$W/sd/cam1/$s-$((s + 10000)).ts"
done
echo "SD card: $n chunks, $(du -sh "$W/sd/cam1" | cut -f1), $MINUTES min of 720p25 4 Mbit/s H.264"

/usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --rtsp-port 0 --control-port 0 \
  --sd-dir "$W/sd" --sd-minutes $((MINUTES + 60)) \
  --camera name=cam1,codec=h264,bitrate=500,fps=25,width=320,height=240 >"$W/sim.out" 2>"$W/sim.err" &
PIDS+=($!)
for _ in $(seq 1 120); do grep -q READY "$W/sim.out" 2>/dev/null && break; sleep 0.5; done
CONTROL=$(sed -n 's/.*control=\([0-9]*\).*/\1/p' "$W/sim.out")
MOTO=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" -m moto.server -H 127.0.0.1 -p "$MOTO" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$MOTO/" >/dev/null && break; sleep 0.5; done
curl -sf -X PUT "http://127.0.0.1:$MOTO/bench" >/dev/null
cat >"$W/cfg.yaml" <<YAML
storage:
  s3: {bucket: bench, endpoint: "http://127.0.0.1:$MOTO", pathStyle: true}
  prefix: bench
segmentSeconds: 10
cameras: []
YAML
start=$(date -u -d @$((base / 1000)) +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d @$((base / 1000 + MINUTES * 60)) +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s.%N)
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test RUST_LOG=warn \
  /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KiB max RSS" \
  "$BIN" backfill --config "$W/cfg.yaml" --camera bench/cam1 --start "$start" --end "$end" \
  --onvif-device-url "http://127.0.0.1:$CONTROL/onvif/device_service" >"$W/report.json" 2>"$W/bf.err"
t1=$(date +%s.%N)
tail -1 "$W/bf.err"
python3 - "$W/report.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); wall = float(sys.argv[3]) - float(sys.argv[2])
print("footage: %.1f s recovered of %.1f s missing, lost %.1f s, %d segments, %.1f MB read"
      % (r["secondsRecovered"], r["secondsMissingBefore"], r["secondsLost"], r["segmentsWritten"], r["bytes"] / 1e6))
print("speed: %.1f footage-seconds per wall-second (%.1f s wall), %.1f Mbit/s"
      % (r["secondsRecovered"] / wall, wall, r["bytes"] * 8 / 1e6 / wall))
PY
