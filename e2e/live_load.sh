#!/usr/bin/env bash
# WebRTC viewers per core (issue 14; figures in docs/benchmarks.md). Not in CI.
#
# The camera simulator (one H.264 camera, 640x360 25 fps, GOP 2 s, `pattern=snow` so that x264
# really spends its 4 Mbit/s) → `vigil-recorder record` (file mode, live tap) → `vigil-access
# serve` (WHEP, one UDP port) → `whep_load` (crates/access/examples/whep_load.rs: N str0m
# receivers doing ICE, DTLS and SRTP, no browser). Release builds. For each N in
# $VIGIL_LOAD_VIEWERS (default "0 50 100 200 400") a fresh access point is started, the viewers
# join 20 ms apart, and over $VIGIL_LOAD_SECONDS (default 15) the client prints what every
# viewer received and the access point's CPU (utime+stime from /proc/PID/stat) and RSS.
# The camera's own bitrate is measured first from the recorder's live tap (what a viewer should
# receive).
#
# VIGIL_BASELINE_ACCESS=/path/to/vigil-access: the same runs with that binary too (e.g. main
# before the shared feed: one upstream per viewer), interleaved, same simulator and recorder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
secs=${VIGIL_LOAD_SECONDS:-15}
counts=${VIGIL_LOAD_VIEWERS:-0 50 100 200 400}
work=$(mktemp -d /tmp/vigil-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $1"; for f in "$work"/*.log "$work"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }

cargo build -q --release -p vigil-recorder --bin vigil-recorder -p vigil-access --bin vigil-access --example whep_load
rec_bin=$target/release/vigil-recorder
access_bin=$target/release/vigil-access
load=$target/release/examples/whep_load
free_port() { python3 -c 'import socket,sys; s=socket.socket(type=int(sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

/usr/bin/python3 e2e/camera-sim/camera_sim.py --rtsp-port 0 --control-port 0 \
  --camera name=cam4m,codec=h264,bitrate=4000,fps=25,width=640,height=360,gop=50,pattern=snow \
  >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 600); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
rtsp=$(sed -n 's/^READY rtsp=\([0-9]*\).*/\1/p' "$work/sim.out")
[ -n "${rtsp:-}" ] || fail "camera simulator did not start"

head -c 24 /dev/urandom | base64 >"$work/live.token"
cat >"$work/rec.yaml" <<YAML
storage:
  local: {path: $work/store}
segmentSeconds: 2
buffer: {dir: $work/buf}
cameraNetworks: {allow: [127.0.0.1/32]}
cameras:
  - {namespace: site-a, name: cam4m, url: "rtsp://127.0.0.1:$rtsp/cam4m/live"}
YAML
recport=$(free_port 1)
VIGIL_LIVE_TOKEN_FILE=$work/live.token "$rec_bin" record --config "$work/rec.yaml" \
  --listen "127.0.0.1:$recport" --read-batch-ms 0 2>"$work/rec.log" </dev/null >/dev/null &
rec_pid=$!
pids+=($rec_pid)
printf 'storage:\n  local: {path: %s}\n' "$work/store" >"$work/serve.yaml"

# The camera's bitrate as the recorder's live tap delivers it (wire framing included, ~0.1 %).
for _ in $(seq 150); do
  [ -n "$(find "$work/store" -name '*.mp4' 2>/dev/null | head -1)" ] && break; sleep 0.2
done
bytes=$(curl -s --max-time 10 -H "Authorization: Bearer $(cat "$work/live.token")" \
  "http://127.0.0.1:$recport/live/site-a/cam4m" | wc -c || true)
cam_kbps=$(( bytes * 8 / 10 / 1000 ))
echo "camera: $cam_kbps kbit/s from the recorder's live tap over 10 s"

run() { # run LABEL BINARY N
  local label=$1 bin=$2 n=$3 port udp apid
  port=$(free_port 1); udp=$(free_port 2)
  RUST_LOG=info,vigil_access::live=debug "$bin" serve --config "$work/serve.yaml" --no-auth --listen "127.0.0.1:$port" \
    --live-recorder "http://127.0.0.1:$recport" --live-token-file "$work/live.token" \
    --webrtc-udp "127.0.0.1:$udp" 2>"$work/serve-$label-$n.log" &
  apid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/api/v1/cameras" 2>/dev/null | grep -q cam4m && break; sleep 0.2
  done
  "$load" --url "http://127.0.0.1:$port/api/v1/cameras/site-a/cam4m/whep" --viewers "$n" \
    --seconds "$secs" --pid "$apid" --rec-pid "$rec_pid" --clk-tck "$(getconf CLK_TCK)" \
    --expect-kbps "$cam_kbps" \
    >"$work/load.out" 2>"$work/load.err" || true
  sed "s/^/$label: /" "$work/load.out" | grep -v MEASURE_START
  sort "$work/load.err" | uniq -c | head -3 | sed "s/^/$label: client: /"
  local up
  up=$(sed 's/\x1b\[[0-9;]*m//g' "$work/serve-$label-$n.log" | grep -c 'reading live frames' || true)
  echo "$label: upstreams opened to the recorder: $up; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  kill "$apid" 2>/dev/null || true
  wait "$apid" 2>/dev/null || true
}

for n in $counts; do
  run shared "$access_bin" "$n"
  if [ -n "${VIGIL_BASELINE_ACCESS:-}" ]; then run baseline "$VIGIL_BASELINE_ACCESS" "$n"; fi
done
