#!/usr/bin/env bash
# Self-test of the remote-site network harness (net.sh), ~15 s: the site reaches the cluster's
# public address through its NAT; nothing on the WAN reaches into the site; a UDP hole punched
# through two endpoint-independent NATs opens; through a symmetric NAT it does not; a cut uplink
# cuts; the LAN leg lets the core side reach the site directly.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NET="bash $HERE/net.sh"
passed=0; failed=0
ok() { echo "[net] ok: $*"; passed=$((passed + 1)); }
bad() { echo "[net] FAIL: $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
refuse() { local what=$1; shift; if "$@" >/dev/null 2>&1; then bad "$what"; else ok "$what"; fi; }

PORT=$((20000 + RANDOM % 10000))
python3 "$HERE/punch_check.py" rendezvous "100.64.0.1:$PORT" &
rv=$!
python3 "$HERE/punch_check.py" echo "100.64.0.1:$((PORT + 1))" &
host_echo=$!
site_echo=
cleanup() { kill "$rv" "$host_echo" $site_echo 2>/dev/null; $NET down 2>/dev/null; }
trap cleanup EXIT

punch() {
  ip netns exec vs-site python3 "$HERE/punch_check.py" peer site "100.64.0.1:$PORT" "$1" &
  local a=$!
  ip netns exec vs-core python3 "$HERE/punch_check.py" peer core "100.64.0.1:$PORT" "$1"
  local rb=$?
  wait "$a"
  local ra=$?
  [ "$ra" = 0 ] && [ "$rb" = 0 ]
}

# reach NAMESPACE ADDR:PORT: a UDP echo comes back.
reach() { ip netns exec "$1" python3 "$HERE/punch_check.py" probe "$2"; }
HOST=100.64.0.1:$((PORT + 1))
SITE=192.168.50.2:$((PORT + 2))

$NET up --site-nat eim --core-nat eim || { echo "[net] FAIL: net.sh up"; exit 1; }
ip netns exec vs-site python3 "$HERE/punch_check.py" echo "0.0.0.0:$((PORT + 2))" &
site_echo=$!
check "site reaches the cluster's public address through its NAT" reach vs-site "$HOST"
refuse "the WAN cannot reach into the site's LAN" reach vs-core-nat "$SITE"
refuse "the core side cannot reach the site's LAN directly" reach vs-core "$SITE"
check "hole punch through two endpoint-independent NATs opens" punch 3
$NET cut site
refuse "a cut uplink cuts the site off" reach vs-site "$HOST"
$NET restore site
check "a restored uplink carries again" reach vs-site "$HOST"
$NET lan on
check "the LAN leg lets the core side reach the site directly" reach vs-core "$SITE"

$NET up --site-nat symmetric --core-nat eim || { echo "[net] FAIL: net.sh up"; exit 1; }
refuse "hole punch through a symmetric NAT does not open" punch 3

echo "net: $passed passed, $failed failed"
[ "$failed" = 0 ]
