#!/usr/bin/env bash
# Relay figures for docs/benchmarks.md (issue #15 part 8), release builds, on loopback (no
# network namespaces: the figures are the relay's own cost, not a network's):
#   1. relay throughput per core: bytes relayed per CPU-second of the vigil-rendezvous process
#      (utime+stime from /proc/PID/stat), for the relay over UDP and over TCP; the baseline in the
#      same run is plain loopback TCP to the same "camera";
#   2. added latency: round-trip time of 64-byte echoes through one stream, plain TCP vs the
#      direct (QUIC) path vs the relay over UDP vs over TCP;
#   3. (with --recorder) recorder CPU per stream: vigil-recorder recording the camera simulator
#      directly vs through the site tunnel (QUIC path; TCP relay), CPU seconds over a fixed window.
# Usage: e2e/sites/relay_bench.sh [--bytes N] [--echo K] [--recorder SECONDS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=e2e/sites/lib.sh
. "$HERE/lib.sh"
target=${CARGO_TARGET_DIR:-$ROOT/target}
BYTES=$((2 << 30)); ECHO=2000; REC_SECS=0
while [ $# -gt 0 ]; do
  case $1 in
    --bytes) BYTES=$2; shift 2 ;;
    --echo) ECHO=$2; shift 2 ;;
    --recorder) REC_SECS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
(cd "$ROOT" && cargo build --release -q -p vigil-site --bin vigil-rendezvous --bin vigil-gateway --example relay_bench)
bin=$target/release
work=$(mktemp -d /tmp/vigil-relay-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
CLK=$(getconf CLK_TCK)
cpu() { awk -v clk="$CLK" '{printf "%.2f", ($14 + $15) / clk}' "/proc/$1/stat"; }

site_pki "$work"
PORT=$((30000 + RANDOM % 10000)); CAM=$((PORT + 10))
rendezvous_config "$work" "127.0.0.1:$PORT" 127.0.0.1/32
RUST_LOG=warn "$bin/vigil-rendezvous" --config "$work/rv.yaml" >"$work/rv.log" 2>&1 &
rv=$!; pids+=($rv)
"$bin/examples/relay_bench" camera --listen "127.0.0.1:$CAM" &
pids+=($!)
sleep 0.3
RUST_LOG=info "$bin/vigil-gateway" --rendezvous "127.0.0.1:$PORT" --ca-file "$work/ca.pem" \
  --namespace shop --site branch1 --token-file "$work/site.token" >"$work/gw.log" 2>&1 &
gw=$!; pids+=($gw)
for _ in $(seq 100); do grep -qs "tunnel up" "$work/gw.log" && break; sleep 0.05; done
client() {
  "$bin/examples/relay_bench" client --rendezvous "127.0.0.1:$PORT" --ca-file "$work/ca.pem" \
    --token-file "$work/rec.token" --namespace shop --site branch1 --camera "127.0.0.1:$CAM" "$@"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Throughput per core.
for mode in plain udp tcp; do
  r0=$(cpu $rv); g0=$(cpu $gw); t0=$(date +%s.%N)
  out=$(client --mode $mode --bytes "$BYTES")
  r1=$(cpu $rv); g1=$(cpu $gw); t1=$(date +%s.%N)
  echo "$out"
  awk -v b="$BYTES" -v r="$(echo "$r1 - $r0" | bc)" -v g="$(echo "$g1 - $g0" | bc)" -v m=$mode 'BEGIN {
    per = (r > 0) ? sprintf("%.2f Gbit per rendezvous CPU-second", b * 8 / r / 1e9) : "n/a (not relayed)";
    printf "FIGURE relay_cpu mode=%s bytes=%.0f rendezvous_cpu_s=%.2f gateway_cpu_s=%.2f: %s\n", m, b, r, g, per }'
done

# 2. Added latency: echoes one after the other through one stream.
for mode in plain direct udp tcp; do
  echo "FIGURE relay_rtt $(client --mode $mode --echo "$ECHO")"
done

# 3. Recorder CPU per stream: directly vs through the tunnel.
if [ "$REC_SECS" -gt 0 ]; then
  (cd "$ROOT" && cargo build --release -q -p vigil-recorder --bin vigil-recorder)
  /usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --bind 127.0.0.1 --rtsp-port $((PORT + 20)) \
    --control-port $((PORT + 21)) \
    --camera name=cam1,codec=h264,bitrate=2000,fps=25,width=1280,height=720,gop=25 \
    >"$work/sim.out" 2>"$work/sim.err" &
  pids+=($!)
  for _ in $(seq 300); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
  rec_run() { # NAME SITE-YAML CAMERA-SITE-FIELD
    local name=$1 link=$2 site=$3
    cat >"$work/$name.yaml" <<YAML
storage:
  local: {path: $work/store-$name}
segmentSeconds: 2
buffer: {dir: $work/buf-$name}
$link
cameras:
  - {namespace: shop, name: cam1, url: "rtsp://127.0.0.1:$((PORT + 20))/cam1/live"$site}
YAML
    RUST_LOG=info "$bin/vigil-recorder" record --config "$work/$name.yaml" --listen "127.0.0.1:$((PORT + 30))" \
      >"$work/$name.log" 2>&1 &
    local p=$!
    sleep 5 # warm up: connected, first segments written
    local c0 g0 r0; c0=$(cpu $p); g0=$(cpu $gw); r0=$(cpu $rv)
    sleep "$REC_SECS"
    local c1 g1 r1; c1=$(cpu $p); g1=$(cpu $gw); r1=$(cpu $rv)
    kill -TERM $p; wait $p 2>/dev/null || true
    local path; path=$(grep -o 'site stream open.*transport=[a-z"]*' "$work/$name.log" | grep -o 'path=.*' | head -1 || true)
    echo "FIGURE recorder_cpu $name ${path:+($path) }window=${REC_SECS}s recorder_cpu_s=$(echo "$c1 - $c0" | bc) gateway_cpu_s=$(echo "$g1 - $g0" | bc) rendezvous_cpu_s=$(echo "$r1 - $r0" | bc) segments=$(find "$work/store-$name" -name '*.mp4' | wc -l)"
  }
  LINK="siteLink: {rendezvous: 127.0.0.1:$PORT, caFile: $work/ca.pem, tokenFile: $work/rec.token, namespace: shop"
  rec_run direct "cameraNetworks: {allow: [127.0.0.1/32]}" ""
  rec_run tunnel-quic "$LINK}" ", site: branch1"
  rec_run tunnel-tcp-relay "$LINK, directPaths: false}" ", site: branch1"
fi
