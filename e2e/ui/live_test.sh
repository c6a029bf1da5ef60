#!/usr/bin/env bash
# Live view test: the camera simulator → the recorder (file mode, its live tap enabled with a
# token) → `vigil-access serve` (WHEP on one UDP port, ICE-lite) → headless Debian Chromium
# (playwright-core). Checks a moving picture over WebRTC, then over LL-HLS (both across a
# recorder SIGKILL + restart) and prints the glass-to-glass latency figures; a camera's page
# (camera.mjs: live beside the timeline, "⟲ 30 s", exports checked with ffprobe); checks with ffprobe
# that an H.265 camera's LL-HLS init + parts decode and that its playlist advances. Prints "N passed, M failed"; screenshot in $VIGIL_UI_OUT (default target/ui/live.png).
# VIGIL_LIVE_SECONDS: how long the latency is sampled (default 15).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
out=${VIGIL_UI_OUT:-$target/ui}
secs=${VIGIL_LIVE_SECONDS:-15}
work=$(mktemp -d /tmp/vigil-live.XXXXXX)
pids=()
cleanup() {
  local rp
  rp=$(cat "$work/rec.pid" 2>/dev/null || true)
  if [ -n "$rp" ] && [ "$rp" -gt 1 ]; then kill "$rp" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "$1"; for f in "$work"/*.log "$work"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done; echo "0 passed, 1 failed"; exit 1; }

cargo build -q -p vigil-recorder -p vigil-access
bin=$target/debug/vigil-recorder
access=$target/debug/vigil-access
if [ ! -d e2e/ui/node_modules/playwright-core ]; then
  (cd e2e/ui && npm install --no-audit --no-fund >/dev/null)
fi
free_port() { python3 -c 'import socket,sys; s=socket.socket(type=int(sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

/usr/bin/python3 e2e/camera-sim/camera_sim.py --rtsp-port 0 --control-port 0 \
  --camera name=cam1,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25 \
  --camera name=cam5,codec=h265,bitrate=300,fps=15,width=320,height=240,gop=15 \
  ${VIGIL_LIVE_DENSITY:+--camera name=cam4m,codec=h264,bitrate=4000,fps=25,width=640,height=360,gop=50} \
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
  - {namespace: site-a, name: cam1, url: "rtsp://127.0.0.1:$rtsp/cam1/live"}
  - {namespace: site-a, name: cam5, url: "rtsp://127.0.0.1:$rtsp/cam5/live"}
YAML
if [ -n "${VIGIL_LIVE_DENSITY:-}" ]; then
  echo "  - {namespace: site-a, name: cam4m, url: \"rtsp://127.0.0.1:$rtsp/cam4m/live\"}" >>"$work/rec.yaml"
fi
recport=$(free_port 1)
# --read-batch-ms 0: every packet is read when it arrives (batching adds up to 250 ms).
# restart.sh SIGKILLs the recorder and starts it again (the page's session must survive).
cat >"$work/restart.sh" <<SH
#!/usr/bin/env bash
pid=\$(cat $work/rec.pid 2>/dev/null)
if [ -n "\$pid" ] && [ "\$pid" -gt 1 ]; then kill -KILL "\$pid" 2>/dev/null; fi
sleep \${1:-0}
VIGIL_LIVE_TOKEN_FILE=$work/live.token setsid "$bin" record --config "$work/rec.yaml" \\
  --listen "127.0.0.1:$recport" --read-batch-ms 0 --reconnect-min-ms 200 2>>"$work/rec.log" </dev/null >/dev/null &
echo \$! >"$work/rec.pid"
SH
bash "$work/restart.sh"

printf 'storage:\n  local: {path: %s}\n' "$work/store" >"$work/serve.yaml"
port=$(free_port 1)
udp=$(free_port 2)
"$access" serve --config "$work/serve.yaml" --no-auth --listen "127.0.0.1:$port" \
  --live-recorder "http://127.0.0.1:$recport" --live-token-file "$work/live.token" \
  --webrtc-udp "127.0.0.1:$udp" 2>"$work/serve.log" &
access_pid=$!
pids+=($access_pid)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

# The recorder's live endpoint refuses a missing or wrong token.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$recport/live/site-a/cam1")
[ "$code" = 401 ] || fail "recorder /live without a token answered $code, not 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "http://127.0.0.1:$recport/live/site-a/cam1")
[ "$code" = 401 ] || fail "recorder /live with a wrong token answered $code, not 401"
echo "ok   recorder /live refuses requests without the token"

# The camera is listed once its first segment is stored.
for _ in $(seq 150); do
  curl -fsS "http://127.0.0.1:$port/api/v1/cameras" 2>/dev/null | grep -q cam1 && break; sleep 0.2
done

set +e
VIGIL_LIVE_BADGES=1 VIGIL_LIVE_EXPECT_ICE=udp VIGIL_LIVE_RESTART="bash $work/restart.sh 1" \
  node e2e/ui/live.mjs "http://127.0.0.1:$port" site-a/cam1 cam1 "$secs" "$out/live.png"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  for f in rec serve; do echo "--- $f.log"; tail -20 "$work/$f.log"; done
  exit $rc
fi

# A camera's page (~25 s): from the grid's tile (export link → playable MP4) to camera.html:
# moving live picture beside the timeline with recordings, "⟲ 30 s" into playback, the export
# of the selected footage (ffprobe), back to live.
set +e
node e2e/ui/camera.mjs "http://127.0.0.1:$port" site-a/cam1 cam1 "$out/camera.png"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  for f in rec serve; do echo "--- $f.log"; tail -20 "$work/$f.log"; done
  exit $rc
fi

# ICE-TCP fallback (~12 s): a second access point whose answers carry no UDP candidate, so the
# browser must reach it on the HTTP port over TCP (RFC 6544/4571); the page itself is served by
# the same port. Moving picture and latency, as above.
tport=$(free_port 1)
tudp=$(free_port 2)
"$access" serve --config "$work/serve.yaml" --no-auth --listen "127.0.0.1:$tport" \
  --live-recorder "http://127.0.0.1:$recport" --live-token-file "$work/live.token" \
  --webrtc-udp "127.0.0.1:$tudp" --webrtc-tcp-only 2>"$work/serve-tcp.log" &
tcp_pid=$!
pids+=($tcp_pid)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$tport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
# Hostile bytes on the shared port: a frame that is not STUN, and a binding request for no
# session, are closed within a few seconds; HTTP still answers.
python3 - "$tport" <<'PY' || fail "ICE-TCP: hostile connections not closed"
import socket, struct, sys, time
port = int(sys.argv[1])
def closed_after(data):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(8); t = time.time()
    s.sendall(data)
    try:
        got = s.recv(100)
    except OSError:
        got = b''
    return got == b'' and time.time() - t < 7.5
user = b"nobody:x"
attr = struct.pack("!HH", 6, len(user)) + user
stun = struct.pack("!HH", 1, len(attr)) + bytes.fromhex("2112a442") + bytes(12) + attr
ok = closed_after(struct.pack("!H", 30) + bytes(30)) and closed_after(struct.pack("!H", len(stun)) + stun) \
    and closed_after(struct.pack("!H", len(stun)) + stun[:10])
sys.exit(0 if ok else 1)
PY
curl -fsS "http://127.0.0.1:$tport/readyz" >/dev/null || fail "HTTP on the shared port after hostile ICE-TCP input"
echo "ok   ICE-TCP: hostile connections on the HTTP port are closed, HTTP still answers"
set +e
VIGIL_LIVE_NO_BACK=1 VIGIL_LIVE_EXPECT_ICE=tcp \
  node e2e/ui/live.mjs "http://127.0.0.1:$tport" site-a/cam1 cam1 "${VIGIL_LIVE_TCP_SECONDS:-6}" "$out/live-tcp.png"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "--- serve-tcp.log"; tail -20 "$work/serve-tcp.log"
  exit $rc
fi
kill "$tcp_pid" 2>/dev/null || true
# Offer → ICE+DTLS connected, as the access point saw it (UDP: the first run above).
conn() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'live viewer connected' | grep -o 'after_ms=[0-9]*' | head -1; }
echo "connected after offer: udp $(conn "$work/serve.log"), tcp $(conn "$work/serve-tcp.log")"

# The same over LL-HLS (~25 s): moving picture, latency, recorder SIGKILL + restart.
set +e
VIGIL_LIVE_PROTO=hls VIGIL_LIVE_RESTART="bash $work/restart.sh 1" VIGIL_LIVE_H265_CAMERA=site-a/cam5 \
  node e2e/ui/live.mjs "http://127.0.0.1:$port" site-a/cam1 cam1 "$secs" "$out/live-hls.png"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  for f in rec serve; do echo "--- $f.log"; tail -20 "$work/$f.log"; done
  exit $rc
fi
plain() { sed 's/\x1b\[[0-9;]*m//g' "$work/serve.log"; }
n=$(plain | grep 'LL-HLS stream started' | grep -c 'site-a/cam1' || true)
[ "$n" = 1 ] || fail "LL-HLS: $n upstreams for cam1 (one expected, kept across the recorder restart)"
echo "ok   one LL-HLS upstream for cam1, kept across the recorder restart"

# H.265 over LL-HLS (headless Chromium cannot decode it): init + the newest complete segment +
# the open segment's parts decode with ffmpeg, and the playlist advances (blocking reload).
hb="http://127.0.0.1:$port/api/v1/cameras/site-a/cam5/llhls"
curl -fsS --max-time 10 "$hb/index.m3u8" >"$work/h265.m3u8" || fail "LL-HLS playlist of the H.265 camera"
sleep 2
curl -fsS --max-time 10 "$hb/index.m3u8" >"$work/h265.m3u8"
init=$(grep -o 'init-[0-9]*\.mp4' "$work/h265.m3u8" | tail -1)
seg=$(grep -E '^[0-9]+\.mp4$' "$work/h265.m3u8" | tail -1)
open=$(( ${seg%.mp4} + 1 ))
{ curl -fsS "$hb/$init"; curl -fsS "$hb/$seg"
  for p in $(grep -o "URI=\"$open\.[0-9]*\.mp4\"" "$work/h265.m3u8" | cut -d'"' -f2); do curl -fsS "$hb/$p"; done
} >"$work/h265.mp4"
probe=$(ffprobe -v error -count_frames -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 "$work/h265.mp4")
decode_err=$(ffmpeg -v error -i "$work/h265.mp4" -f null - 2>&1 | head -3)
frames=$(echo "$probe" | cut -d, -f4)
[ "$(echo "$probe" | cut -d, -f1-3)" = "hevc,320,240" ] && [ "${frames:-0}" -ge 15 ] && [ -z "$decode_err" ] \
  || fail "H.265 LL-HLS does not decode: probe=$probe errors=$decode_err"
echo "ok   H.265 LL-HLS init + segment $seg + parts of $open decode ($probe)"
curl -fsS --max-time 10 "$hb/index.m3u8" >"$work/h265.m3u8"
hint=$(sed -n 's/.*PRELOAD-HINT:TYPE=PART,URI="\([0-9]*\)\.\([0-9]*\)\.mp4".*/\1 \2/p' "$work/h265.m3u8")
read -r hm hp <<<"$hint"
t0=$(date +%s%N)
curl -fsS --max-time 10 "$hb/index.m3u8?_HLS_msn=$hm&_HLS_part=$hp" >"$work/h265b.m3u8" || fail "blocking reload failed"
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "URI=\"$hm\.$hp\.mp4\"" "$work/h265b.m3u8" && [ "$waited" -lt 3000 ] \
  || fail "blocking reload for part $hm.$hp: not in the playlist after $waited ms"
last0=$(grep -E '^[0-9]+\.mp4$' "$work/h265.m3u8" | tail -1); sleep 2
last1=$(curl -fsS "$hb/index.m3u8" | grep -E '^[0-9]+\.mp4$' | tail -1)
[ "${last1%.mp4}" -gt "${last0%.mp4}" ] || fail "H.265 LL-HLS playlist does not advance ($last0 -> $last1)"
echo "ok   H.265 LL-HLS playlist advances ($last0 -> $last1); blocking reload for part $hm.$hp answered after $waited ms"

# WebRTC refuses the H.265 camera at once (415, naming LL-HLS): the page falls back without
# waiting.
code=$(curl -s -o "$work/whep265.txt" -w '%{http_code}' -X POST -H 'Content-Type: application/sdp' \
  --data-binary 'v=0' "http://127.0.0.1:$port/api/v1/cameras/site-a/cam5/whep")
[ "$code" = 415 ] && grep -q 'LL-HLS' "$work/whep265.txt" || fail "WHEP for the H.265 camera answered $code: $(cat "$work/whep265.txt")"
echo "ok   WHEP refuses the H.265 camera with 415 (use LL-HLS)"

# No viewer for a while: the camera's upstream stops.
for _ in $(seq 60); do plain | grep 'LL-HLS stream stopped' | grep -q 'site-a/cam1' && break; sleep 0.5; done
plain | grep 'LL-HLS stream stopped' | grep -q 'site-a/cam1' || fail "LL-HLS upstream of cam1 still running without viewers"
echo "ok   LL-HLS upstream stops when nobody watches"
echo "llhls: 5 passed, 0 failed"

# Viewers per core (VIGIL_LIVE_DENSITY=N, not in CI): N WebRTC viewers of the 4 Mbit/s camera;
# the access point's CPU time and memory while they watch.
if [ -n "${VIGIL_LIVE_DENSITY:-}" ]; then
  for _ in $(seq 150); do
    curl -fsS "http://127.0.0.1:$port/api/v1/cameras" 2>/dev/null | grep -q cam4m && break; sleep 0.2
  done
  dsecs=${VIGIL_LIVE_DENSITY_SECONDS:-20}
  cpu() { awk '{print $14 + $15}' "/proc/$access_pid/stat"; }
  rss() { awk '/VmRSS/ {print $2}' "/proc/$access_pid/status"; }
  rss0=$(rss)
  node e2e/ui/live_density.mjs "http://127.0.0.1:$port" site-a/cam4m "$VIGIL_LIVE_DENSITY" "$dsecs" >"$work/density.out" 2>&1 &
  dn=$!
  for _ in $(seq 600); do grep -q MEASURE_START "$work/density.out" 2>/dev/null && break; sleep 0.1; done
  c0=$(cpu); t0=$(date +%s.%N)
  sleep $((dsecs - 1))
  c1=$(cpu); t1=$(date +%s.%N); rss1=$(rss)
  wait $dn || true
  cat "$work/density.out"
  echo "access point: $(grep -c 'live viewer connected' "$work/serve.log") sessions connected, $(grep -c 'live viewer ended' "$work/serve.log") ended with an error:"
  grep 'live viewer ended' "$work/serve.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200 | sort | uniq -c | head -5 || true
  echo "cpu ticks $c0 -> $c1 of $(cat /proc/$access_pid/comm 2>&1)"
  python3 - "$c0" "$c1" "$t0" "$t1" "$rss0" "$rss1" "$VIGIL_LIVE_DENSITY" "$(getconf CLK_TCK)" <<'PY'
import sys
c0, c1, t0, t1, r0, r1, n, hz = (float(x) for x in sys.argv[1:])
core = (c1 - c0) / hz / (t1 - t0)
print(f"density figures: viewers={int(n)} access_cpu_cores={core:.3f} "
      f"viewers_per_core={n / core if core > 0 else float('inf'):.0f} "
      f"rss_kib_before={int(r0)} rss_kib_during={int(r1)} kib_per_viewer={(r1 - r0) / n:.0f}")
PY
fi
