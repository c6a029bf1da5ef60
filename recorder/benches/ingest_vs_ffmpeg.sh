#!/usr/bin/env bash
# Recorder ingest vs ffmpeg: CPU and memory per stream on the same live streams.
#
#   recorder/benches/ingest_vs_ffmpeg.sh [N] [SECONDS]
#   env: WIDTH HEIGHT (default 1920x1080), BITRATE (kbit/s, default 4000), FPS (25),
#        SEGMENT (s, 10), WARMUP (s, 8), NO_BUILD=1 to skip `cargo build --release`,
#        REC_ARGS (extra `vigil-recorder record` flags),
#        STORE=s3 to upload to a moto S3 server on loopback instead of a local directory
#        (needs `python3 -m moto.server`; moto's own CPU is not counted), STORE=s3tls for the
#        same over https with a throw-away CA (needs openssl)
#
# Starts the camera simulator (e2e/camera-sim) with N H.264 streams, then records every stream
# at once with the release `vigil-recorder` (one process, local store + buffer) and with one
# `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment` per stream. After a warm-up it measures
# for SECONDS: CPU from /proc/<pid>/stat (utime+stime), peak private memory from
# /proc/<pid>/smaps_rollup (Private_Clean+Private_Dirty) and peak RSS, sampled every second.
# Only the recorder processes are measured; the simulator's encoders use most of the machine.
set -euo pipefail

N=${1:-4}
SECS=${2:-60}
WIDTH=${WIDTH:-1920}
HEIGHT=${HEIGHT:-1080}
BITRATE=${BITRATE:-4000}
FPS=${FPS:-25}
SEGMENT=${SEGMENT:-10}
WARMUP=${WARMUP:-8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/vigil-recorder
HZ=$(getconf CLK_TCK)

if [ "${NO_BUILD:-}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p vigil-recorder >&2)
fi
[ -x "$BIN" ] || { echo "no $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/vigil-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cams=()
for i in $(seq 1 "$N"); do
  cams+=(--camera "name=cam$i,codec=h264,bitrate=$BITRATE,fps=$FPS,width=$WIDTH,height=$HEIGHT,gop=$FPS")
done
/usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --rtsp-port 0 --control-port 0 "${cams[@]}" \
  >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
PIDS+=("$SIM")
for _ in $(seq 1 120); do grep -qs '^READY' "$WORK/sim.out" && break; sleep 0.5; done
RTSP=$(sed -n 's/^READY rtsp=\([0-9]*\) .*/\1/p' "$WORK/sim.out")
[ -n "$RTSP" ] || { echo "simulator did not start" >&2; cat "$WORK/sim.err" >&2; exit 1; }

if [ "${STORE:-local}" = s3 ] || [ "${STORE:-local}" = s3tls ]; then
  S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SCHEME=http
  TLSARGS=()
  CURLARGS=()
  if [ "$STORE" = s3tls ]; then
    # The production case: an https:// endpoint (the recorder then sends UNSIGNED-PAYLOAD and
    # pays TLS instead of a SHA-256 over every byte). A throw-away CA, trusted by the recorder
    # through SSL_CERT_FILE (rustls-platform-verifier reads the system store, which honours it).
    SCHEME=https
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench-ca \
      -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$WORK/s3.key" \
      -out "$WORK/s3.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/s3.ext"
    openssl x509 -req -in "$WORK/s3.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
      -CAcreateserial -days 1 -extfile "$WORK/s3.ext" -out "$WORK/s3.pem" 2>/dev/null
    TLSARGS=(-c "$WORK/s3.pem" -k "$WORK/s3.key")
    CURLARGS=(--cacert "$WORK/ca.pem")
    export SSL_CERT_FILE=$WORK/ca.pem
  fi
  python3 -m moto.server -H 127.0.0.1 -p "$S3PORT" "${TLSARGS[@]}" >"$WORK/moto.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 60); do curl -sf "${CURLARGS[@]}" "$SCHEME://127.0.0.1:$S3PORT/" >/dev/null && break; sleep 0.5; done
  curl -sf "${CURLARGS[@]}" -X PUT "$SCHEME://127.0.0.1:$S3PORT/bench" >/dev/null
  STORAGE="storage: {s3: {bucket: bench, endpoint: \"$SCHEME://127.0.0.1:$S3PORT\", pathStyle: true}}"
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
else
  STORAGE="storage: {local: {path: $WORK/store}}"
fi
{
  echo "$STORAGE"
  echo "segmentSeconds: $SEGMENT"
  echo "buffer: {dir: $WORK/buf}"
  echo "cameras:"
  for i in $(seq 1 "$N"); do echo "  - {name: cam$i, url: \"rtsp://127.0.0.1:$RTSP/cam$i/live\"}"; done
} >"$WORK/cameras.yaml"
HTTP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn "$BIN" record --config "$WORK/cameras.yaml" --listen "127.0.0.1:$HTTP" ${REC_ARGS:-} 2>"$WORK/recorder.log" &
REC=$!
PIDS+=("$REC")
FF=()
for i in $(seq 1 "$N"); do
  mkdir -p "$WORK/ff$i"
  ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "rtsp://127.0.0.1:$RTSP/cam$i/live" \
    -c copy -f segment -segment_time "$SEGMENT" -reset_timestamps 1 "$WORK/ff$i/%05d.mp4" \
    2>"$WORK/ff$i.log" &
  FF+=($!)
  PIDS+=($!)
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
priv() { awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "/proc/$1/smaps_rollup"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

sleep "$WARMUP"
declare -A c0 pmax rmax
for p in "$REC" "${FF[@]}"; do c0[$p]=$(cpu "$p"); pmax[$p]=0; rmax[$p]=0; done
t0=$(date +%s.%N)
for _ in $(seq 1 "$SECS"); do
  for p in "$REC" "${FF[@]}"; do
    [ -d "/proc/$p" ] || { echo "process $p died" >&2; tail "$WORK"/*.log >&2; exit 1; }
    v=$(priv "$p"); [ "$v" -gt "${pmax[$p]}" ] && pmax[$p]=$v
    v=$(rss "$p"); [ "$v" -gt "${rmax[$p]}" ] && rmax[$p]=$v
  done
  sleep 1
done
t1=$(date +%s.%N)
declare -A c1
for p in "$REC" "${FF[@]}"; do c1[$p]=$(cpu "$p"); done
sim_cpu=$(awk -v a="$(cpu "$SIM")" -v hz="$HZ" 'BEGIN {print a / hz}')

rec_ticks=$(( ${c1[$REC]} - ${c0[$REC]} ))
ff_ticks=0; ff_priv=0; ff_rss=0
for p in "${FF[@]}"; do
  ff_ticks=$(( ff_ticks + ${c1[$p]} - ${c0[$p]} ))
  ff_priv=$(( ff_priv + ${pmax[$p]} )); ff_rss=$(( ff_rss + ${rmax[$p]} ))
done

awk -v n="$N" -v hz="$HZ" -v t0="$t0" -v t1="$t1" \
    -v rt="$rec_ticks" -v rp="${pmax[$REC]}" -v rr="${rmax[$REC]}" \
    -v ft="$ff_ticks" -v fp="$ff_priv" -v fr="$ff_rss" \
    -v w="$WIDTH" -v h="$HEIGHT" -v br="$BITRATE" -v fps="$FPS" -v sim="$sim_cpu" 'BEGIN {
  min = (t1 - t0) / 60
  rcpu = rt / hz / n / min; fcpu = ft / hz / n / min
  rpriv = rp / 1024 / n; fpriv = fp / 1024 / n
  rrss = rr / 1024 / n; frss = fr / 1024 / n
  printf "%d streams of %dx%d@%d H.264 at %d kbit/s, measured %.1f s (after warm-up)\n", n, w, h, fps, br, (t1 - t0)
  printf "%-30s %14s %14s %10s\n", "per stream", "vigil-recorder", "ffmpeg -c copy", "ratio"
  printf "%-30s %14.3f %14.3f %10.2f\n", "CPU s per stream-minute", rcpu, fcpu, rcpu / fcpu
  printf "%-30s %14.2f %14.2f %10.2f\n", "peak private memory (MiB)", rpriv, fpriv, rpriv / fpriv
  printf "%-30s %14.2f %14.2f %10.2f\n", "peak RSS (MiB, reference)", rrss, frss, rrss / frss
  printf "recorder process total: %.1f MiB private, %.1f MiB RSS (one process for all %d streams)\n", rp / 1024, rr / 1024, n
  printf "simulator CPU so far: %.1f s\n", sim
}'
rec_mib=$(curl -s "http://127.0.0.1:$HTTP/metrics" | awk '/^vigil_recorder_bytes_in_total/ {s += $NF} END {printf "%.0f", s / 1048576}')
up_mib=$(curl -s "http://127.0.0.1:$HTTP/metrics" | awk '/^vigil_recorder_bytes_out_total/ {s += $NF} END {printf "%.0f", s / 1048576}')
echo "store: ${STORE:-local}; received by vigil-recorder: $rec_mib MiB (stored: $up_mib MiB); written by ffmpeg: $(du -cm "$WORK"/ff*/ | tail -1 | cut -f1) MiB in $(find "$WORK"/ff* -name '*.mp4' | wc -l) segments"
if grep -qiE 'warn|error' "$WORK/recorder.log"; then echo "recorder log:"; head -20 "$WORK/recorder.log"; fi
