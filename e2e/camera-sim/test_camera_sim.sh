#!/usr/bin/env bash
# Self-test of the Vigil camera simulator.
#
# Starts camera_sim.py on free loopback ports with an H.264 camera, an H.265
# camera and a small password-protected H.264+AAC camera, then checks with
# ffprobe/ffmpeg (-rtsp_transport tcp) and a raw-socket ONVIF client:
# live codecs/frame rates, frame counts, auth, drop/restore, SD chunks,
# ONVIF replay (0xABAC extension, faster than real time), Rate-Control: yes,
# Hikvision-style playback, ONVIF SOAP search/replay URIs, ONVIF events (PullPoint
# subscribe/pull/renew/unsubscribe, motion raised and cleared), Profile G FindEvents over the SD
# card's event log, clean SIGTERM; then a second
# simulator with Digest+qop RTSP, HTTP-Digest ONVIF answered chunked, and ONVIF over HTTPS.
#
# Usage: e2e/camera-sim/test_camera_sim.sh   (exit 0 when all checks pass;
#        the last line is "N passed, N failed")
# Env:   PY=/usr/bin/python3  KEEP=1 (keep the work dir)  SIM_LOG=1 (print sim log)
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PY:-/usr/bin/python3}"
SIM="$HERE/camera_sim.py"
CLIENT="$HERE/onvif_replay_client.py"
WORK="$(mktemp -d /tmp/camera-sim-test.XXXXXX)"
PASS=0
FAIL=0
SIM_PID=""
BG_PIDS=()

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
check() { # check <description> <command...>
  local d="$1"; shift
  if "$@"; then PASS=$((PASS + 1)); log "PASS $d"; else FAIL=$((FAIL + 1)); log "FAIL $d"; fi
}
ok() { [ "$1" = 1 ]; }
finish() {
  for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill -TERM "$SIM_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SIM_PID" 2>/dev/null
  fi
  if [ "${SIM_LOG:-0}" = 1 ] || [ "$FAIL" -gt 0 ]; then
    echo "---- simulator log (last 40 lines) ----"; tail -n 40 "$WORK/sim.err" 2>/dev/null; echo "----"
  fi
  [ "${KEEP:-0}" = 1 ] && echo "work dir: $WORK" || rm -rf "$WORK"
  echo "$PASS passed, $FAIL failed"
}
trap 'finish; trap - EXIT; [ "$FAIL" -eq 0 ]; exit $?' EXIT
trap 'exit 130' INT TERM

for tool in ffprobe ffmpeg curl "$PY"; do
  command -v "$tool" >/dev/null || { log "missing tool: $tool"; FAIL=$((FAIL + 1)); exit 1; }
done

# json <file-or-> <python expression over j>  -> prints the value
json() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1]!="-" else sys.stdin); v=eval(sys.argv[2]); print(v if not isinstance(v,(dict,list)) else json.dumps(v))' "$@"; }
utc() { date -u -d "@$1" +"$2"; }   # utc <epoch-seconds> <format>

# ---------------------------------------------------------------- start
log "work dir $WORK"
"$PY" "$SIM" --rtsp-port 0 --control-port 0 --sd-dir "$WORK/sd" --sd-minutes 5 \
  --camera name=cam1,codec=h264,bitrate=4000,fps=25,width=1280,height=720,gop=25 \
  --camera name=cam2,codec=h265,bitrate=2000,fps=25,width=640,height=360,gop=25 \
  --camera name=cam3,codec=h264,bitrate=500,fps=25,width=320,height=240,audio=aac,user=admin,password=s3cret \
  >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 150); do grep -q '^READY ' "$WORK/sim.out" 2>/dev/null && break; kill -0 $SIM_PID 2>/dev/null || break; sleep 0.2; done
READY="$(grep -m1 '^READY ' "$WORK/sim.out" 2>/dev/null)"
check "simulator prints READY" test -n "$READY"
[ -n "$READY" ] || exit 1
RTSP_PORT="$(sed -n 's/.*rtsp=\([0-9]*\).*/\1/p' <<<"$READY")"
CTL_PORT="$(sed -n 's/.*control=\([0-9]*\).*/\1/p' <<<"$READY")"
RTSP="rtsp://127.0.0.1:$RTSP_PORT"
CTL="http://127.0.0.1:$CTL_PORT"
T_START=$(date +%s)
log "rtsp=$RTSP_PORT control=$CTL_PORT"

check "GET /healthz" bash -c "curl -sf -m 5 $CTL/healthz | grep -q ok"
curl -s -m 5 "$CTL/cameras" >"$WORK/cameras.json"
check "GET /cameras lists 3 cameras, all up" ok "$(json "$WORK/cameras.json" 'int(len(j)==3 and all(c["state"]=="up" for c in j) and [c["codec"] for c in j]==["h264","h265","h264"])')"

# ---------------------------------------------------------------- live streams
probe() { # probe <url> -> "codec,width,height,rate" per stream, one line each
  timeout 20 ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name,width,height,r_frame_rate \
    -of csv=p=0 "$1" 2>"$WORK/probe.err"
}
probe_is() { # probe_is <url> <expected-output>
  local got; got="$(probe "$1" | tr '\n' ' ' | sed 's/ $//')"
  [ "$got" = "$2" ] || { log "  $1: got '$got' want '$2'"; return 1; }
}
refused() { # refused <url> <status> : ffprobe fails and reports <status>
  ! probe "$1" >/dev/null && grep -q "$2" "$WORK/probe.err"
}
frames_in() { # frames_in <file> -> number of video packets
  # (MPEG-TS lists its streams twice, under the program and on their own)
  ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$1" 2>/dev/null \
    | awk 'NF' | head -n 1
}
codecs_in() { # codecs_in <file> -> "h264 aac " (each stream once)
  ffprobe -v error -show_entries stream=index,codec_name -of csv=p=0 "$1" 2>/dev/null | awk -F, 'NF && !seen[$1]++ {printf "%s ", $2}'
}
between() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
check "cam1 live is H.264 1280x720 @25" probe_is "$RTSP/cam1/live" "h264,1280,720,25/1"
check "cam2 live is H.265 640x360 @25" probe_is "$RTSP/cam2/live" "hevc,640,360,25/1"

# 10 s with -c copy on both cameras at once (and a third client sharing cam1)
for c in cam1 cam2; do
  timeout 40 ffmpeg -nostdin -v error -rtsp_transport tcp -i "$RTSP/$c/live" -t 10 -c copy -y "$WORK/$c-10s.mkv" 2>"$WORK/$c-10s.err" &
  BG_PIDS+=($!)
done
sleep 1.5   # the second cam1 client joins the already flowing shared media
timeout 40 ffmpeg -nostdin -v error -rtsp_transport tcp -i "$RTSP/cam1/live" -t 10 -c copy -y "$WORK/cam1b-10s.mkv" 2>/dev/null &
BG_PIDS+=($!)
sleep 2
curl -s -m 5 "$CTL/cameras/cam1" >"$WORK/cam1-shared.json"
LIVE_CLIENTS="$(json "$WORK/cam1-shared.json" '"%d medias, %d clients" % (j["live_medias"], j["rtsp_clients"])')"
wait "${BG_PIDS[@]}" 2>/dev/null
BG_PIDS=()
check "cam1 live media is shared (1 media for 2 clients, got $LIVE_CLIENTS)" test "$LIVE_CLIENTS" = "1 medias, 2 clients"
for c in cam1 cam2; do
  n="$(frames_in "$WORK/$c-10s.mkv")"
  check "$c: 10 s with -c copy has ~250 frames (got ${n:-none})" between "$n" 240 262
done
# a client joining the shared stream mid-GOP may lose up to one GOP (25 frames)
n="$(frames_in "$WORK/cam1b-10s.mkv")"
check "cam1 second client on the shared stream: 10 s has 225..262 frames (got ${n:-none})" between "$n" 225 262
br="$(ffprobe -v error -show_entries format=bit_rate -of csv=p=0 "$WORK/cam1-10s.mkv" 2>/dev/null)"
check "cam1 bitrate ~4000 kbit/s (got $((${br:-0} / 1000)))" between "${br:-0}" 3400000 4600000
kf="$(ffprobe -v error -select_streams v:0 -show_entries packet=flags -of csv=p=0 "$WORK/cam1-10s.mkv" 2>/dev/null | grep -c K)"
check "cam1 keyframe every 25 frames (got $kf keyframes in 10 s)" between "$kf" 9 11
dup="$(ffprobe -v error -select_streams v:0 -show_entries packet=pts -of csv=p=0 "$WORK/cam1-10s.mkv" 2>/dev/null | sort | uniq -d | wc -l)"
check "cam1 live: one packet per frame (duplicate timestamps: $dup)" test "$dup" -le 1
bf="$(ffprobe -v error -select_streams v:0 -show_entries stream=has_b_frames -of csv=p=0 "$WORK/cam1-10s.mkv" 2>/dev/null)"
check "cam1 has no B-frames" test "${bf:-x}" = 0

# ---------------------------------------------------------------- auth
check "cam3 without credentials is refused with 401" refused "$RTSP/cam3/live" 401
check "cam3 with a wrong password is refused with 401" refused "rtsp://admin:nope@127.0.0.1:$RTSP_PORT/cam3/live" 401
check "cam3 with credentials: H.264 320x240 + AAC" probe_is "rtsp://admin:s3cret@127.0.0.1:$RTSP_PORT/cam3/live" "h264,320,240,25/1 aac,0/0"

# ---------------------------------------------------------------- drop / restore
timeout 60 ffmpeg -nostdin -v error -rtsp_transport tcp -i "$RTSP/cam1/live" -c copy -y "$WORK/cam1-drop.mkv" 2>"$WORK/cam1-drop.err" &
FF=$!
BG_PIDS+=($FF)
sleep 4
FRAMES_BEFORE="$(curl -s -m 5 "$CTL/cameras/cam1" | json - 'j["frames_encoded"]')"
curl -s -m 10 -X POST "$CTL/cameras/cam1/drop" >"$WORK/drop.json"
T_DROP=$(date +%s.%N)
check "POST drop returns the event with a ms timestamp" ok "$(json "$WORK/drop.json" 'int(j["type"]=="drop" and j["time"].endswith("Z") and len(j["time"])==24)')"
ended=0
for _ in $(seq 1 50); do kill -0 $FF 2>/dev/null || { ended=1; break; }; sleep 0.1; done
check "drop ends the running ffmpeg session within 5 s" test "$ended" = 1
check "cam1 state is down" bash -c "curl -s -m 5 $CTL/cameras/cam1 | grep -q '\"state\": \"down\"'"
check "new connection to a dropped camera fails (404)" refused "$RTSP/cam1/live" 404
check "cam2 unaffected by cam1's drop" probe_is "$RTSP/cam2/live" "hevc,640,360,25/1"
sleep 3
FRAMES_DURING="$(curl -s -m 5 "$CTL/cameras/cam1" | json - 'j["frames_encoded"]')"
check "encoder keeps running while dropped ($FRAMES_BEFORE -> $FRAMES_DURING frames)" bash -c "[ $((FRAMES_DURING - FRAMES_BEFORE)) -ge 100 ]"
curl -s -m 10 -X POST "$CTL/cameras/cam1/restore" >"$WORK/restore.json"
check "POST restore returns the event" ok "$(json "$WORK/restore.json" 'int(j["type"]=="restore")')"
check "cam1 plays again after restore" probe_is "$RTSP/cam1/live" "h264,1280,720,25/1"
curl -s -m 5 "$CTL/cameras/cam1/events" >"$WORK/events.json"
check "events list start, drop, restore in order" ok "$(json "$WORK/events.json" 'int([e["type"] for e in j]==["start","drop","restore"] and j[1]["time_ms"]<j[2]["time_ms"])')"
DROP_MS="$(json "$WORK/events.json" 'j[1]["time_ms"]')"
RESTORE_MS="$(json "$WORK/events.json" 'j[2]["time_ms"]')"

# ---------------------------------------------------------------- SD card
# make sure at least 35 s of footage exist before the replay checks
now=$(date +%s); elapsed=$((now - T_START)); [ $elapsed -lt 38 ] && sleep $((38 - elapsed))
curl -s -m 5 "$CTL/cameras/cam1/sd" >"$WORK/sd1.json"
check "SD chunks cover the whole drop window" ok "$(json "$WORK/sd1.json" "int(bool(j) and j[0]['start_ms'] <= $DROP_MS and j[-1]['end_ms'] >= $RESTORE_MS)")"
check "SD chunks are contiguous (gaps < 100 ms)" ok "$(json "$WORK/sd1.json" 'int(len(j)>=3 and all(0 <= b["start_ms"]-a["end_ms"] < 100 for a,b in zip(j,j[1:])))')"
sd_ok=1; sd_files=0; sd_cover=0
while IFS=' ' read -r path dur_ms rec; do
  [ "$rec" = True ] && continue
  sd_files=$((sd_files + 1))
  d="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$path" 2>/dev/null)"
  codec="$(codecs_in "$path")"
  frames="$(frames_in "$path")"
  want=$((dur_ms * 25 / 1000))
  if [ "$codec" != "h264 " ] || [ -z "$frames" ] || [ $((frames - want)) -gt 2 ] || [ $((want - frames)) -gt 2 ]; then
    sd_ok=0; log "  bad SD file $path: codec=$codec frames=$frames expected=$want duration=$d"
  fi
  sd_cover=$((sd_cover + dur_ms))
done < <(json "$WORK/sd1.json" '"\n".join("%s %d %s" % (e["path"], e["duration_ms"], e["recording"]) for e in j)')
check "SD files are playable H.264 with the frames their names promise ($sd_files files, $((sd_cover / 1000)) s)" bash -c "[ $sd_ok = 1 ] && [ $sd_files -ge 2 ]"
check "SD file names are <startMs>-<endMs>.ts in $WORK/sd/cam1" bash -c "ls $WORK/sd/cam1 | grep -Eq '^[0-9]{13}-[0-9]{13}\.ts$'"
check "cam2 and cam3 record too" bash -c "[ \$(ls $WORK/sd/cam2 | wc -l) -ge 3 ] && [ \$(ls $WORK/sd/cam3 | wc -l) -ge 3 ]"
f3="$(ls "$WORK/sd/cam3" | grep -E '^[0-9]+-[0-9]+\.ts$' | head -1)"
a_codecs="$(codecs_in "$WORK/sd/cam3/$f3")"
check "cam3 SD chunks carry H.264 + AAC (got: $a_codecs)" test "$a_codecs" = "h264 aac "

# ---------------------------------------------------------------- ONVIF replay
NOW=$(date +%s)
W_START=$((NOW - 27)); W_END=$((NOW - 7))
S_ISO="$(utc $W_START %Y-%m-%dT%H:%M:%SZ)"; E_ISO="$(utc $W_END %Y-%m-%dT%H:%M:%SZ)"
for c in cam1 cam2; do
  timeout 90 "$PY" "$CLIENT" "$RTSP/$c/replay" --start "$S_ISO" --end "$E_ISO" --rate-control no --timeout 60 \
    >"$WORK/replay-$c.json" 2>"$WORK/replay-$c.err"
  log "  $c replay: $(json "$WORK/replay-$c.json" '"frames=%s media=%ss wall=%ss speed=%sx first=%s last=%s stop=%s" % (j.get("frames"), j.get("media_seconds"), j.get("wall_seconds"), j.get("speed"), j.get("first_ntp"), j.get("last_ntp"), j.get("stopped"))' 2>/dev/null)"
  check "$c ONVIF replay of a past 20 s window returns ~20 s ($S_ISO..$E_ISO)" ok "$(json "$WORK/replay-$c.json" 'int(j["ok"] and 19.5 <= j["media_seconds"] <= 21.1 and 490 <= j["frames"] <= 530)')"
  check "$c every RTP packet carries the 0xABAC extension" ok "$(json "$WORK/replay-$c.json" 'int(j["packets"]>0 and j["ext_packets"]==j["packets"])')"
  check "$c NTP times lie in the window (keyframe-aligned start)" ok "$(json "$WORK/replay-$c.json" "int(j['packets_outside_window']==0 and $W_START*1000-1100 <= j['first_ntp_ms'] <= $W_START*1000+40 and $W_END*1000-100 <= j['last_ntp_ms'] < $W_END*1000)")"
  check "$c replay with Rate-Control: no is faster than real time (speed $(json "$WORK/replay-$c.json" 'j.get("speed")'))" ok "$(json "$WORK/replay-$c.json" 'int(j["speed"] is not None and j["speed"] > 3 and j["wall_seconds"] < 10)')"
  check "$c replay ends with the T bit, keyframes flagged C" ok "$(json "$WORK/replay-$c.json" 'int(j["t_bit"] and 19 <= j["keyframes"] <= 22 and j["seq_gaps"]==0)')"
done
timeout 60 "$PY" "$CLIENT" "$RTSP/cam1/replay" --start "$(utc $((NOW - 20)) %Y-%m-%dT%H:%M:%SZ)" \
  --end "$(utc $((NOW - 16)) %Y-%m-%dT%H:%M:%SZ)" --rate-control yes --timeout 30 >"$WORK/replay-rc.json" 2>/dev/null
check "replay with Rate-Control: yes runs in real time (speed $(json "$WORK/replay-rc.json" 'j.get("speed")'))" ok "$(json "$WORK/replay-rc.json" 'int(j["ok"] and 0.8 <= j["speed"] <= 1.25)')"
timeout 60 "$PY" "$CLIENT" "$RTSP/cam3/replay" --start "$S_ISO" --end "$(utc $((W_START + 5)) %Y-%m-%dT%H:%M:%SZ)" \
  --timeout 30 >"$WORK/replay-noauth.json" 2>/dev/null
check "cam3 replay without credentials is refused" ok "$(json "$WORK/replay-noauth.json" 'int(not j["ok"] and "401" in j.get("error",""))')"
timeout 60 "$PY" "$CLIENT" "$RTSP/cam3/replay" --user admin --password s3cret --start "$S_ISO" \
  --end "$(utc $((W_START + 5)) %Y-%m-%dT%H:%M:%SZ)" --timeout 30 >"$WORK/replay-auth.json" 2>/dev/null
check "cam3 replay with digest credentials: video + audio tracks, ~5 s" ok "$(json "$WORK/replay-auth.json" 'int(j["ok"] and len(j["tracks"])==2 and 4.5 <= j["media_seconds"] <= 6.1)')"

timeout 60 "$PY" "$CLIENT" "$RTSP/cam1/replay" --start "$(utc $((NOW + 600)) %Y-%m-%dT%H:%M:%SZ)" \
  --end "$(utc $((NOW + 660)) %Y-%m-%dT%H:%M:%SZ)" --timeout 20 >"$WORK/replay-empty.json" 2>/dev/null
check "replay of a window without footage answers PLAY with 503" ok "$(json "$WORK/replay-empty.json" 'int(not j["ok"] and "503" in j.get("error",""))')"
check "simulator survives it" bash -c "curl -sf -m 5 $CTL/healthz | grep -q ok"

# ---------------------------------------------------------------- Hikvision-style playback
P_START=$((NOW - 30)); P_END=$((NOW - 22))
t0=$(date +%s.%N)
for c in cam1 cam2; do
  PURL="$RTSP/$c/playback?starttime=$(utc $P_START %Y%m%dT%H%M%SZ)&endtime=$(utc $P_END %Y%m%dT%H%M%SZ)"
  timeout 40 ffmpeg -nostdin -v error -rtsp_transport tcp -i "$PURL" -c copy -y "$WORK/playback-$c.mkv" 2>"$WORK/playback-$c.err" &
  BG_PIDS+=($!)
done
wait "${BG_PIDS[@]}" 2>/dev/null
BG_PIDS=()
t1=$(date +%s.%N)
pb_wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
for c in cam1 cam2; do
  pb_frames="$(frames_in "$WORK/playback-$c.mkv")"
  pb_codec="$(codecs_in "$WORK/playback-$c.mkv")"
  pb_dup="$(ffprobe -v error -select_streams v:0 -show_entries packet=pts -of csv=p=0 "$WORK/playback-$c.mkv" 2>/dev/null | sort | uniq -d | wc -l)"
  check "$c playback?starttime=..&endtime=.. (8 s window) plays 8-9 s (frames=$pb_frames, codec $pb_codec)" between "${pb_frames:-0}" 199 226
  check "$c playback has one packet per frame (duplicate timestamps: $pb_dup)" test "$pb_dup" -le 1
done
check "playback runs in real time (wall ${pb_wall}s for both)" awk -v w="$pb_wall" 'BEGIN{exit !(w >= 7 && w <= 14)}'

# ---------------------------------------------------------------- ONVIF SOAP
soap() { # soap <service> <body-xml> [security-header-xml]
  curl -s -m 10 -X POST -H 'Content-Type: application/soap+xml; charset=utf-8' "$CTL/onvif/$1" --data-binary @- <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tse="http://www.onvif.org/ver10/search/wsdl" xmlns:trp="http://www.onvif.org/ver10/replay/wsdl" xmlns:trc="http://www.onvif.org/ver10/recording/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"><s:Header>${3:-}</s:Header><s:Body>$2</s:Body></s:Envelope>
EOF
}
wsse() { # WS-UsernameToken PasswordDigest header for <user> <password>
  "$PY" - "$1" "$2" <<'EOF'
import base64, datetime, hashlib, os, sys
user, pw = sys.argv[1], sys.argv[2]
nonce = os.urandom(16)
created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + pw.encode()).digest()).decode()
print('<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" '
      'xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">'
      '<wsse:UsernameToken><wsse:Username>%s</wsse:Username>'
      '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">%s</wsse:Password>'
      '<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-soap-message-security-1.0#Base64Binary">%s</wsse:Nonce>'
      '<wsu:Created>%s</wsu:Created></wsse:UsernameToken></wsse:Security>' % (user, digest, base64.b64encode(nonce).decode(), created))
EOF
}
soap device_service '<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>' >"$WORK/getservices.xml"
check "ONVIF GetServices lists search, replay and recording services" bash -c "grep -q 'ver10/search/wsdl' $WORK/getservices.xml && grep -q '/onvif/replay_service' $WORK/getservices.xml && grep -q '/onvif/recording_service' $WORK/getservices.xml"
soap device_service '<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>' >"$WORK/getcaps.xml"
check "ONVIF GetCapabilities has Replay and Search XAddrs" bash -c "grep -q '<tt:Replay><tt:XAddr>' $WORK/getcaps.xml && grep -q '<tt:Search><tt:XAddr>' $WORK/getcaps.xml"
TOKEN="$(soap search_service '<tse:FindRecordings><tse:Scope></tse:Scope><tse:KeepAliveTime>PT10S</tse:KeepAliveTime></tse:FindRecordings>' | sed -n 's:.*<tse\:SearchToken>\(.*\)</tse\:SearchToken>.*:\1:p')"
soap search_service "<tse:GetRecordingSearchResults><tse:SearchToken>$TOKEN</tse:SearchToken><tse:WaitTime>PT1S</tse:WaitTime></tse:GetRecordingSearchResults>" >"$WORK/results.xml"
check "FindRecordings + GetRecordingSearchResults: cam1, cam2 (not the protected cam3)" bash -c "grep -q '<tt:RecordingToken>cam1</tt:RecordingToken>' $WORK/results.xml && grep -q '<tt:RecordingToken>cam2</tt:RecordingToken>' $WORK/results.xml && ! grep -q '<tt:RecordingToken>cam3<' $WORK/results.xml && grep -q '<tt:EarliestRecording>' $WORK/results.xml"
soap search_service '<tse:GetRecordingSummary/>' >"$WORK/summary.xml"
check "GetRecordingSummary has DataFrom/DataUntil" bash -c "grep -q '<tt:DataFrom>' $WORK/summary.xml && grep -q '<tt:NumberRecordings>2</tt:NumberRecordings>' $WORK/summary.xml"
soap recording_service '<trc:GetRecordings/>' >"$WORK/recordings.xml"
check "GetRecordings lists cam1 and cam2" bash -c "grep -q '<tt:RecordingToken>cam1<' $WORK/recordings.xml && grep -q '<tt:RecordingToken>cam2<' $WORK/recordings.xml"
URI="$(soap replay_service '<trp:GetReplayUri><trp:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trp:StreamSetup><trp:RecordingToken>cam1</trp:RecordingToken></trp:GetReplayUri>' | sed -n 's:.*<trp\:Uri>\(.*\)</trp\:Uri>.*:\1:p')"
check "GetReplayUri(cam1) = $RTSP/cam1/replay" test "$URI" = "$RTSP/cam1/replay"
soap replay_service '<trp:GetReplayUri><trp:RecordingToken>cam3</trp:RecordingToken></trp:GetReplayUri>' >"$WORK/noauth.xml"
check "GetReplayUri(cam3) without WS-Security is a NotAuthorized fault" grep -q 'ter:NotAuthorized' "$WORK/noauth.xml"
URI3="$(soap replay_service '<trp:GetReplayUri><trp:RecordingToken>cam3</trp:RecordingToken></trp:GetReplayUri>' "$(wsse admin s3cret)" | sed -n 's:.*<trp\:Uri>\(.*\)</trp\:Uri>.*:\1:p')"
check "GetReplayUri(cam3) with a UsernameToken digest works" test "$URI3" = "$RTSP/cam3/replay"
soap replay_service '<trp:GetReplayUri><trp:RecordingToken>cam3</trp:RecordingToken></trp:GetReplayUri>' "$(wsse admin wrong)" >"$WORK/badauth.xml"
check "GetReplayUri(cam3) with a wrong password is refused" grep -q 'ter:NotAuthorized' "$WORK/badauth.xml"

# ---------------------------------------------------------------- ONVIF events (PullPoint)
TEV='xmlns:tev="http://www.onvif.org/ver10/events/wsdl"'
WSNT='xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"'
soap_at() { # soap_at <absolute-url> <body-xml>
  curl -s -m 20 -X POST -H 'Content-Type: application/soap+xml; charset=utf-8' "$1" --data-binary @- <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body>$2</s:Body></s:Envelope>
EOF
}
check "GetCapabilities has an Events XAddr with PullPoint support" bash -c "grep -q '<tt:Events><tt:XAddr>$CTL/onvif/event_service</tt:XAddr>' $WORK/getcaps.xml && grep -q '<tt:WSPullPointSupport>true' $WORK/getcaps.xml"
soap cam1/event_service "<tev:CreatePullPointSubscription $TEV><tev:InitialTerminationTime>PT5S</tev:InitialTerminationTime></tev:CreatePullPointSubscription>" >"$WORK/pp-create.xml"
PP="$(sed -n 's:.*<wsa5\:Address>\([^<]*\)</wsa5\:Address>.*:\1:p' "$WORK/pp-create.xml")"
check "CreatePullPointSubscription (cam1) returns a subscription address ($PP)" bash -c "[[ '$PP' == $CTL/onvif/cam1/subscription/* ]] && grep -q '<wsnt:TerminationTime>' $WORK/pp-create.xml"
pull() { soap_at "$PP" "<tev:PullMessages $TEV><tev:Timeout>PT${1}S</tev:Timeout><tev:MessageLimit>10</tev:MessageLimit></tev:PullMessages>"; }
pull 1 >"$WORK/pp-init.xml"
check "first PullMessages: motion state Initialized false" bash -c "grep -q 'tns1:VideoSource/MotionAlarm' $WORK/pp-init.xml && grep -q 'PropertyOperation=\"Initialized\"' $WORK/pp-init.xml && grep -q 'Name=\"State\" Value=\"false\"' $WORK/pp-init.xml"
( sleep 1; curl -s -m 5 -X POST "$CTL/cameras/cam1/motion?state=true" >"$WORK/motion-on.json" ) &
RAISE_PID=$!
t0=$(date +%s%N); pull 8 >"$WORK/pp-on.xml"; pp_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait $RAISE_PID
check "PullMessages long-polls and returns motion true when raised (${pp_ms} ms)" bash -c "grep -q 'Name=\"State\" Value=\"true\"' $WORK/pp-on.xml && grep -q 'PropertyOperation=\"Changed\"' $WORK/pp-on.xml && [ $pp_ms -ge 700 ] && [ $pp_ms -lt 4000 ]"
MOTION_AT="$(json "$WORK/motion-on.json" 'j["time"]')"
check "the motion event's UtcTime is the control call's time ($MOTION_AT)" grep -q "UtcTime=\"$MOTION_AT\"" "$WORK/pp-on.xml"
curl -s -m 5 -X POST "$CTL/cameras/cam1/motion?state=false" >"$WORK/motion-off.json"
pull 2 >"$WORK/pp-off.xml"
check "clearing motion queues State false" grep -q 'Name="State" Value="false"' "$WORK/pp-off.xml"
curl -s -m 5 -X POST "$CTL/cameras/cam1/input?state=true" >"$WORK/input-on.json"
pull 2 >"$WORK/pp-input.xml"
check "raising the digital input queues DigitalInput DI0 LogicalState true" bash -c "grep -q 'tns1:Device/Trigger/DigitalInput' $WORK/pp-input.xml && grep -q 'Name=\"InputToken\" Value=\"DI0\"' $WORK/pp-input.xml && grep -q 'Name=\"LogicalState\" Value=\"true\"' $WORK/pp-input.xml"
curl -s -m 5 -X POST "$CTL/cameras/cam1/input?state=false" >"$WORK/input-off.json"
soap_at "$PP" "<wsnt:Renew $WSNT><wsnt:TerminationTime>PT60S</wsnt:TerminationTime></wsnt:Renew>" >"$WORK/pp-renew.xml"
sleep 6
pull 1 >"$WORK/pp-after-renew.xml"
check "Renew keeps the subscription beyond its first 5 s" bash -c "grep -q '<wsnt:RenewResponse>' $WORK/pp-renew.xml && grep -q '<tev:PullMessagesResponse>' $WORK/pp-after-renew.xml"
soap_at "$PP" "<wsnt:Unsubscribe $WSNT/>" >"$WORK/pp-unsub.xml"
pull 1 >"$WORK/pp-gone.xml"
check "after Unsubscribe, PullMessages is a ResourceUnknown fault" bash -c "grep -q '<wsnt:UnsubscribeResponse' $WORK/pp-unsub.xml && grep -q 'ResourceUnknownFault' $WORK/pp-gone.xml"
soap cam3/event_service "<tev:CreatePullPointSubscription $TEV/>" >"$WORK/pp-noauth.xml"
check "CreatePullPointSubscription(cam3) without credentials is refused" grep -q 'ter:NotAuthorized' "$WORK/pp-noauth.xml"
# Profile G event search over the SD card's event log (what a backfill recovers events from).
t_iso() { json "$1" 'j["time"]'; }
MOTION_OFF="$(t_iso "$WORK/motion-off.json")"; INPUT_ON="$(t_iso "$WORK/input-on.json")"; INPUT_OFF="$(t_iso "$WORK/input-off.json")"
NOW_ISO="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
find_events() { # find_events <start> <end> <include-start-state> -> search token
  soap search_service "<tse:FindEvents><tse:StartPoint>$1</tse:StartPoint><tse:EndPoint>$2</tse:EndPoint><tse:Scope><tt:IncludedRecordings>cam1</tt:IncludedRecordings></tse:Scope><tse:SearchFilter/><tse:IncludeStartState>$3</tse:IncludeStartState><tse:KeepAliveTime>PT10S</tse:KeepAliveTime></tse:FindEvents>" | sed -n 's:.*<tse\:SearchToken>\(.*\)</tse\:SearchToken>.*:\1:p'
}
event_results() { soap search_service "<tse:GetEventSearchResults><tse:SearchToken>$1</tse:SearchToken><tse:MaxResults>$2</tse:MaxResults><tse:WaitTime>PT1S</tse:WaitTime></tse:GetEventSearchResults>"; }
ETOK="$(find_events "$(utc "$T_START" %Y-%m-%dT%H:%M:%SZ)" "$NOW_ISO" false)"
event_results "$ETOK" 3 >"$WORK/fe-1.xml"
event_results "$ETOK" 3 >"$WORK/fe-2.xml"
check "FindEvents + GetEventSearchResults page 1: 3 changes, Searching, motion raised at $MOTION_AT" bash -c "[ \$(grep -o '<tt:Result>' $WORK/fe-1.xml | wc -l) = 3 ] && grep -q '<tt:SearchState>Searching<' $WORK/fe-1.xml && grep -q '<tt:Time>$MOTION_AT</tt:Time>' $WORK/fe-1.xml && grep -q '<tt:Time>$MOTION_OFF</tt:Time>' $WORK/fe-1.xml && grep -q '<tt:Time>$INPUT_ON</tt:Time>' $WORK/fe-1.xml"
check "GetEventSearchResults page 2: the digital input cleared at $INPUT_OFF, Completed" bash -c "[ \$(grep -o '<tt:Result>' $WORK/fe-2.xml | wc -l) = 1 ] && grep -q '<tt:SearchState>Completed<' $WORK/fe-2.xml && grep -q '<tt:Time>$INPUT_OFF</tt:Time>' $WORK/fe-2.xml && grep -q 'Name=\"LogicalState\" Value=\"false\"' $WORK/fe-2.xml"
# Just after DI0 went on: its state is in force at the start point.
AFTER_ON="$("$PY" -c 'import datetime,json,sys; ms=json.load(open(sys.argv[1]))["time_ms"]+1; print(datetime.datetime.fromtimestamp(ms/1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]+"Z")' "$WORK/input-on.json")"
ETOK="$(find_events "$AFTER_ON" "$NOW_ISO" true)"
event_results "$ETOK" 100 >"$WORK/fe-start.xml"
check "FindEvents with IncludeStartState: DI0 true in force at StartPoint (StartStateEvent), then cleared" bash -c "grep -q '<tt:StartStateEvent>true</tt:StartStateEvent>' $WORK/fe-start.xml && grep -q 'PropertyOperation=\"Initialized\"><tt:Source><tt:SimpleItem Name=\"InputToken\" Value=\"DI0\"/></tt:Source><tt:Data><tt:SimpleItem Name=\"LogicalState\" Value=\"true\"' $WORK/fe-start.xml && grep -q '<tt:Time>$INPUT_OFF</tt:Time>' $WORK/fe-start.xml"
check "the event log is on the SD card: 4 changes in sd/cam1/events.jsonl" test "$(wc -l <"$WORK/sd/cam1/events.jsonl")" = 4
check "motion needs state=true|false" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$CTL/cameras/cam1/motion?state=maybe")" = 400

# ---------------------------------------------------------------- shutdown
kill -TERM $SIM_PID
exited=0
for _ in $(seq 1 75); do kill -0 $SIM_PID 2>/dev/null || { exited=1; break; }; sleep 0.2; done
wait $SIM_PID 2>/dev/null; rc=$?
check "SIGTERM: exits cleanly within 15 s (rc=$rc)" bash -c "[ $exited = 1 ] && [ $rc = 0 ]"
SIM_PID=""
check "SIGTERM: last SD chunk is finalised (no open <start>.ts left)" bash -c "! ls $WORK/sd/*/ | grep -Eq '^[0-9]+\.ts$'"

# ---------------------------------------------------------------- Digest with qop, chunked SOAP, HTTPS
# A second simulator the way Axis-style cameras behave: RTSP Digest with qop (SHA-256 offered
# first, then MD5), ONVIF behind HTTP Digest, SOAP answered chunked, ONVIF over HTTPS with a
# CA of the camera's own, and nonces going stale every 3 requests.
"$PY" "$SIM" --rtsp-port 0 --control-port 0 --sd-dir "$WORK/sd2" --sd-chunk-seconds 2 \
  --rtsp-auth digest-qop --onvif-auth digest --onvif-chunked --onvif-https-port 0 --digest-nonce-uses 3 --no-find-events \
  --camera name=cam5,codec=h264,bitrate=500,fps=25,width=320,height=240,user=admin,password=s3cret \
  >"$WORK/sim2.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 150); do grep -q '^READY ' "$WORK/sim2.out" 2>/dev/null && break; kill -0 $SIM_PID 2>/dev/null || break; sleep 0.2; done
READY="$(grep -m1 '^READY ' "$WORK/sim2.out" 2>/dev/null)"
check "digest-qop simulator prints READY with onvif_https and tls_ca" bash -c "grep -q 'onvif_https=[0-9]* tls_ca=/' <<<'$READY'"
[ -n "$READY" ] || exit 1
RTSP_PORT="$(sed -n 's/.*rtsp=\([0-9]*\).*/\1/p' <<<"$READY")"
CTL_PORT="$(sed -n 's/.*control=\([0-9]*\).*/\1/p' <<<"$READY")"
HTTPS_PORT="$(sed -n 's/.*onvif_https=\([0-9]*\).*/\1/p' <<<"$READY")"
TLS_CA="$(sed -n 's/.*tls_ca=\([^ ]*\).*/\1/p' <<<"$READY")"
CTL="http://127.0.0.1:$CTL_PORT"
sleep 8   # some SD footage

codec5="$(timeout 30 ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name -of csv=p=0 "rtsp://admin:s3cret@127.0.0.1:$RTSP_PORT/cam5/live" 2>/dev/null | head -1)"
check "live through Digest with qop (ffmpeg, MD5): codec $codec5" test "$codec5" = h264
check "live with a wrong password is refused" bash -c "! timeout 30 ffprobe -v error -rtsp_transport tcp 'rtsp://admin:wrong@127.0.0.1:$RTSP_PORT/cam5/live' >/dev/null 2>&1"
W_START=$(( $(date +%s) - 7 ))
"$PY" "$CLIENT" "rtsp://127.0.0.1:$RTSP_PORT/cam5/replay" --user admin --password s3cret --rate-control no \
  --start "$(utc $W_START %Y-%m-%dT%H:%M:%SZ)" --end "$(utc $((W_START + 4)) %Y-%m-%dT%H:%M:%SZ)" \
  --timeout 30 >"$WORK/replay-qop.json" 2>/dev/null
check "ONVIF replay through Digest with qop (SHA-256, stale nonce renewed): ~4 s" ok "$(json "$WORK/replay-qop.json" 'int(j["ok"] and 3.5 <= j["media_seconds"] <= 5.1)')"

SOAPBODY='<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><s:Body><tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities></s:Body></s:Envelope>'
curl -s -i -m 10 -X POST -H 'Content-Type: application/soap+xml' --data "$SOAPBODY" "$CTL/onvif/device_service" >"$WORK/soap-401.txt"
check "ONVIF without credentials: 401 with Digest qop=auth, SHA-256 first" bash -c "head -1 $WORK/soap-401.txt | grep -q ' 401' && grep -m1 -i '^WWW-Authenticate' $WORK/soap-401.txt | grep -q 'qop=\"auth\", algorithm=SHA-256'"
curl -s -i -m 10 --digest -u admin:s3cret -X POST -H 'Content-Type: application/soap+xml' --data "$SOAPBODY" "$CTL/onvif/device_service" >"$WORK/soap-digest.txt"
check "ONVIF with HTTP Digest: 200, answered chunked" bash -c "grep -q '^HTTP/1.1 200' $WORK/soap-digest.txt && grep -qi '^Transfer-Encoding: chunked' $WORK/soap-digest.txt && grep -q '<tt:Replay><tt:XAddr>' $WORK/soap-digest.txt"
curl -s -m 10 --cacert "$TLS_CA" --digest -u admin:s3cret -X POST -H 'Content-Type: application/soap+xml' --data "$SOAPBODY" "https://127.0.0.1:$HTTPS_PORT/onvif/device_service" >"$WORK/soap-https.xml"
check "ONVIF over HTTPS (the simulator's CA): XAddrs are https://" grep -q "<tt:XAddr>https://127.0.0.1:$HTTPS_PORT/onvif/replay_service" "$WORK/soap-https.xml"
curl -s -m 10 -o /dev/null --digest -u admin:s3cret -X POST --data "$SOAPBODY" "https://127.0.0.1:$HTTPS_PORT/onvif/device_service"; rc=$?
check "ONVIF over HTTPS without the CA: certificate refused (curl rc=$rc)" test "$rc" = 60
FE_BODY='<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tse="http://www.onvif.org/ver10/search/wsdl"><s:Body><tse:FindEvents><tse:StartPoint>2026-01-01T00:00:00Z</tse:StartPoint><tse:Scope/><tse:SearchFilter/><tse:IncludeStartState>false</tse:IncludeStartState><tse:KeepAliveTime>PT10S</tse:KeepAliveTime></tse:FindEvents></s:Body></s:Envelope>'
curl -s -m 10 --digest -u admin:s3cret -X POST -H 'Content-Type: application/soap+xml' --data "$FE_BODY" "$CTL/onvif/search_service" >"$WORK/fe-unsupported.xml"
check "--no-find-events: FindEvents is an ActionNotSupported fault" grep -q 'ter:ActionNotSupported' "$WORK/fe-unsupported.xml"
curl -s -m 5 "$CTL/healthz" >"$WORK/health2.json"
check "Digest counters: RTSP stale nonces renewed and a wrong password refused" ok "$(json "$WORK/health2.json" 'int(j["rtsp_digest"]["stale"] >= 1 and j["rtsp_digest"]["refused"] >= 1 and j["rtsp_digest"]["ok"] >= 4)')"
check "Digest counters: ONVIF Digest accepted" ok "$(json "$WORK/health2.json" 'int(j["onvif_digest"]["ok"] >= 2)')"
kill -TERM $SIM_PID
exited=0
for _ in $(seq 1 75); do kill -0 $SIM_PID 2>/dev/null || { exited=1; break; }; sleep 0.2; done
wait $SIM_PID 2>/dev/null; rc=$?
check "digest-qop simulator: SIGTERM exits cleanly (rc=$rc), its TLS files removed" bash -c "[ $exited = 1 ] && [ $rc = 0 ] && [ ! -e '$TLS_CA' ]"
SIM_PID=""
