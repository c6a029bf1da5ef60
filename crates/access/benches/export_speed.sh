#!/usr/bin/env bash
# export.mp4 vs plain GETs: time to first byte and throughput for one hour of 4 Mbit/s footage
# in S3 (moto), in the same run.
#
#   crates/access/benches/export_speed.sh [MINUTES] [RUNS]
#   env: SRC=segment.mp4 (skip recording; a stored segment of the recorder), BITRATE (kbit/s,
#        4000), NO_BUILD=1 (skip `cargo build --release`), MOTO_PYTHON
#
# How the hour is made (honestly): the real recorder records the camera simulator
# (1920x1080, 25 fps, GOP 25, BITRATE) for one 10 s segment into a local store; that one real
# segment is then uploaded MINUTES*6 times under consecutive keys
# <t0+i*len>-<t0+(i+1)*len>-live.mp4 (stored segments' tfdt start at 0, so copies are valid
# segments of a continuous session). Both sides then read exactly those objects from moto:
#   raw:    one curl process GETs every object in order over one keep-alive connection
#   export: one curl GET of export.mp4 for the whole hour from `vigil-access serve` (release)
# Each is run RUNS times, alternating; the median is reported. TTFB is curl's
# time_starttransfer; throughput is bytes / time_total.
set -euo pipefail
MINUTES=${1:-60}
RUNS=${2:-3}
BITRATE=${BITRATE:-4000}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/vigil-recorder
ACCESS=$TARGET/release/vigil-access
MOTO_PYTHON=${MOTO_PYTHON:-/var/cache/vigil/venv/bin/python}
work=$(mktemp -d /tmp/vigil-export-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ "${NO_BUILD:-}" != 1 ]; then
  (cd "$ROOT" && cargo build -q --release -p vigil-recorder -p vigil-access)
fi

src=${SRC:-}
if [ -z "$src" ]; then
  /usr/bin/python3 "$ROOT/e2e/camera-sim/camera_sim.py" --rtsp-port 0 --control-port 0 \
    --camera "name=cam,codec=h264,bitrate=$BITRATE,fps=25,width=1920,height=1080,gop=25" \
    >"$work/sim.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 600); do grep -q '^READY' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
  rtsp=$(sed -n 's/^READY rtsp=\([0-9]*\).*/\1/p' "$work/sim.out")
  printf 'storage:\n  local: {path: %s}\nsegmentSeconds: 10\nbuffer: {dir: %s}\ncameras:\n  - {name: cam, url: "rtsp://127.0.0.1:%s/cam/live"}\n' \
    "$work/rec" "$work/buf" "$rtsp" >"$work/rec.yaml"
  "$BIN" record --config "$work/rec.yaml" --listen 127.0.0.1:0 2>"$work/rec.log" &
  rec=$!
  for _ in $(seq 400); do
    [ "$(find "$work/rec" -name '*-live.mp4' 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.1
  done
  kill -TERM "$rec"; wait "$rec" || true
  # The second segment: the first may start late in the session.
  src=$(find "$work/rec" -name '*-live.mp4' | sort | sed -n 2p)
fi
[ -f "$src" ] || { echo "no source segment"; exit 1; }
name=$(basename "$src" .mp4)
s0=${name%%-*}; rest=${name#*-}; e0=${rest%%-*}
len=$((e0 - s0))
n=$((MINUTES * 60000 / len))
size=$(stat -c %s "$src")
echo "source: $name ($len ms, $size bytes, $((size * 8 / len)) kbit/s); $n copies = $((n * len / 1000)) s, $((n * size / 1048576)) MiB"

mport=$(free_port)
"$MOTO_PYTHON" -m moto.server -H 127.0.0.1 -p "$mport" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$mport/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs -X PUT "http://127.0.0.1:$mport/bench" >/dev/null
t0=1767225600000 # 2026-01-01T00:00:00Z
"$MOTO_PYTHON" - "$mport" "$src" "$t0" "$len" "$n" >"$work/keys.txt" <<'PY'
import sys, datetime, boto3
port, src, t0, ln, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s3 = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', aws_access_key_id='t',
                  aws_secret_access_key='t', region_name='us-east-1')
data = open(src, 'rb').read()
for i in range(n):
    s = t0 + i * ln
    h = datetime.datetime.fromtimestamp(s / 1000, datetime.timezone.utc).strftime('%Y/%m/%d/%H')
    key = f'footage/site/cam/{h}/{s}-{s + ln}-live.mp4'
    s3.put_object(Bucket='bench', Key=key, Body=data)
    print(key)
PY
printf 'storage:\n  s3: {bucket: bench, endpoint: "http://127.0.0.1:%s", pathStyle: true}\n  prefix: footage\n' "$mport" >"$work/serve.yaml"
sport=$(free_port)
AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t "$ACCESS" serve --config "$work/serve.yaml" --no-auth \
  --listen "127.0.0.1:$sport" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$sport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# One curl, every object in order, one connection.
# Signed like the server's requests (moto refuses anonymous GETs).
printf 'aws-sigv4 = "aws:amz:us-east-1:s3"\nuser = "t:t"\n' >"$work/raw.cfg"
while read -r k; do printf 'url = "http://127.0.0.1:%s/bench/%s"\noutput = "/dev/null"\n' "$mport" "$k" >>"$work/raw.cfg"; done <"$work/keys.txt"
end=$((t0 + n * len))
raw() {
  local t s first
  s=$(date +%s.%N)
  first=$(curl -fsS -K "$work/raw.cfg" -w '%{time_starttransfer} %{size_download}\n' | awk 'NR==1{f=$1} {b+=$2} END{print f, b}')
  t=$(echo "$(date +%s.%N) - $s" | bc)
  echo "$first $t"
}
export_() {
  curl -fsS -o /dev/null -w '%{time_starttransfer} %{size_download} %{time_total}\n' \
    "http://127.0.0.1:$sport/api/v1/cameras/site/cam/export.mp4?start=$t0&end=$end"
}
for i in $(seq "$RUNS"); do
  raw >>"$work/raw.txt"
  export_ >>"$work/export.txt"
done
median() { sort -n | awk '{a[NR]=$0} END{print a[int((NR+1)/2)]}'; }
report() { # file label
  local ttfb bytes total
  ttfb=$(awk '{print $1}' "$1" | median)
  bytes=$(awk '{print $2}' "$1" | median)
  total=$(awk '{print $3}' "$1" | median)
  awk -v l="$2" -v t="$ttfb" -v b="$bytes" -v s="$total" \
    'BEGIN{printf "%-8s TTFB %6.3f s   %7.2f s   %8.1f MiB   %7.1f MiB/s\n", l, t, s, b/1048576, b/1048576/s}'
}
echo "runs (ttfb bytes seconds):"; paste "$work/raw.txt" "$work/export.txt" | sed 's/^/  raw | export: /'
report "$work/raw.txt" raw
report "$work/export.txt" export
rt=$(awk '{printf "%.0f\n", $2/$3}' "$work/raw.txt" | median)
et=$(awk '{printf "%.0f\n", $2/$3}' "$work/export.txt" | median)
awk -v e="$et" -v r="$rt" 'BEGIN{printf "export / raw throughput (median of runs): %.0f %%\n", 100*e/r}'
# The export must be one valid MP4 of the whole hour.
curl -fsS -o "$work/hour.mp4" "http://127.0.0.1:$sport/api/v1/cameras/site/cam/export.mp4?start=$t0&end=$end"
printf 'export duration (ffprobe): %s s\n' "$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$work/hour.mp4")"
