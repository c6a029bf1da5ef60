#!/usr/bin/env bash
# A small internet on this machine, for the remote-site tests: network namespaces joined by veth
# pairs, with real NATs (iptables MASQUERADE) between a site's LAN, the "WAN" and the cluster side.
#
#   host (the cluster: rendezvous/relay, S3)  100.64.0.1 ─┐
#                                                        br-wan (namespace vs-wan) 100.64.0.0/24
#   vs-site-nat  wan 100.64.0.10  lan 192.168.50.1 ──────┤   NAT for the site's LAN
#   vs-site      192.168.50.2 (gateway, camera simulator)│
#   vs-core-nat  wan 100.64.0.20  lan 192.168.60.1 ──────┘   NAT for the recorder's side
#   vs-core      192.168.60.2 (a recorder behind its own NAT)
#
# NAT kinds (per NAT box): `eim` (MASQUERADE: Linux keeps the source port, so the mapping is
# endpoint-independent and a hole punched by both sides opens) or `symmetric`
# (MASQUERADE --random-fully: a new port per destination, so hole punching fails and only a relay
# gets through).
#
#   e2e/sites/net.sh up [--site-nat eim|symmetric] [--core-nat eim|symmetric]
#   e2e/sites/net.sh cut site|core      drop the box's uplink (its WAN veth down)
#   e2e/sites/net.sh restore site|core
#   e2e/sites/net.sh nat site|core eim|symmetric   change a NAT box's kind (new mappings only)
#   e2e/sites/net.sh lan on|off         also join vs-core to the site's LAN (192.168.50.3): the
#                                       "recorder can reach the site directly" case
#   e2e/sites/net.sh down
# Run a program inside one: ip netns exec vs-site CMD...
set -euo pipefail

WAN=100.64.0
log() { printf '[sites %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

ns() { ip netns exec "$@"; }

nat_rules() { # NAT-NAMESPACE KIND
  local box=$1 kind=$2 extra=()
  case $kind in
    eim) ;;
    symmetric) extra=(--random-fully) ;;
    *) die "NAT kind must be eim or symmetric: $kind" ;;
  esac
  # The LAN side is `lan`, or the bridge `lan on` made of it.
  local lanif=lan
  if ns "$box" ip link show br-lan >/dev/null 2>&1; then lanif=br-lan; fi
  ns "$box" iptables -w -t nat -F POSTROUTING
  ns "$box" iptables -w -t nat -A POSTROUTING -o wan -j MASQUERADE "${extra[@]}"
  # A NAT box forwards only what its LAN started (and the replies): nothing from the WAN reaches
  # the LAN unless a mapping exists, as at a real branch office.
  ns "$box" iptables -w -P FORWARD DROP
  ns "$box" iptables -w -F FORWARD
  ns "$box" iptables -w -A FORWARD -i $lanif -o wan -j ACCEPT
  if [ $lanif = br-lan ]; then ns "$box" iptables -w -A FORWARD -i br-lan -o br-lan -j ACCEPT; fi
  ns "$box" iptables -w -A FORWARD -i wan -o $lanif -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  # Unsolicited packets to the box itself are dropped, as a router's firewall does. This matters
  # for hole punching: a dropped packet leaves no conntrack entry, while one answered with "port
  # unreachable" would leave an entry that clashes with the mapping the LAN side makes next, and
  # the NAT would then pick another port.
  ns "$box" iptables -w -F INPUT
  ns "$box" iptables -w -A INPUT -i wan -m conntrack --ctstate NEW -j DROP
}

box() { # NAME WAN-HOST LAN-PREFIX KIND
  local name=$1 wanhost=$2 lan=$3 kind=$4 box=vs-$1-nat inner=vs-$1
  ip netns add "$box"
  ip netns add "$inner"
  ns "$box" sysctl -qw net.ipv4.ip_forward=1
  ip link add "vs-$name-w" type veth peer name wan netns "$box"
  ip link set "vs-$name-w" netns vs-wan
  ns vs-wan ip link set "vs-$name-w" master br-wan up
  ns "$box" ip addr add "$WAN.$wanhost/24" dev wan
  ns "$box" ip link set wan up
  ns "$box" ip link set lo up
  ip link add "vs-$name-l" type veth peer name eth0 netns "$inner"
  ip link set "vs-$name-l" netns "$box"
  ns "$box" ip link set "vs-$name-l" name lan
  ns "$box" ip addr add "$lan.1/24" dev lan
  ns "$box" ip link set lan up
  ns "$inner" ip addr add "$lan.2/24" dev eth0
  ns "$inner" ip link set eth0 up
  ns "$inner" ip link set lo up
  ns "$inner" ip route add default via "$lan.1"
  nat_rules "$box" "$kind"
}

down() {
  local n
  for n in vs-site vs-site-nat vs-core vs-core-nat vs-wan; do
    ip netns del "$n" 2>/dev/null || true
  done
  ip link del vs-host 2>/dev/null || true
}

up() {
  local site_nat=eim core_nat=eim
  while [ $# -gt 0 ]; do
    case $1 in
      --site-nat) site_nat=$2; shift 2 ;;
      --core-nat) core_nat=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  down
  ip netns add vs-wan
  ns vs-wan ip link set lo up
  ns vs-wan ip link add br-wan type bridge
  ns vs-wan ip link set br-wan up
  # The host is the cluster's public side on the WAN: rendezvous, relay and S3 listen here.
  ip link add vs-host type veth peer name vs-host-w netns vs-wan
  ns vs-wan ip link set vs-host-w master br-wan up
  ip addr add "$WAN.1/24" dev vs-host
  ip link set vs-host up
  box site 10 192.168.50 "$site_nat"
  box core 20 192.168.60 "$core_nat"
  log "up: site behind a $site_nat NAT ($WAN.10), core behind a $core_nat NAT ($WAN.20), host $WAN.1"
}

cut() { # site|core
  ns "vs-$1-nat" ip link set wan down
  log "$1 uplink cut"
}

restore() {
  ns "vs-$1-nat" ip link set wan up
  log "$1 uplink restored"
}

lan() { # on|off
  if [ "$1" = on ]; then
    ip link add vs-core-lan type veth peer name lan2 netns vs-core
    ip link set vs-core-lan netns vs-site-nat
    ns vs-site-nat ip link add br-lan type bridge 2>/dev/null || true
    ns vs-core ip addr add 192.168.50.3/24 dev lan2
    ns vs-core ip link set lan2 up
    # The site NAT's LAN becomes a bridge holding both: vs-site's port and vs-core's second leg.
    ns vs-site-nat ip addr flush dev lan
    ns vs-site-nat ip link set lan master br-lan
    ns vs-site-nat ip link set vs-core-lan master br-lan up
    ns vs-site-nat ip addr add 192.168.50.1/24 dev br-lan
    ns vs-site-nat ip link set br-lan up
    ns vs-site-nat iptables -w -t nat -F POSTROUTING
    ns vs-site-nat iptables -w -t nat -A POSTROUTING -o wan -j MASQUERADE
    ns vs-site-nat iptables -w -F FORWARD
    ns vs-site-nat iptables -w -A FORWARD -i br-lan -o wan -j ACCEPT
    # Bridged traffic between the two LAN ports passes FORWARD too (br_netfilter).
    ns vs-site-nat iptables -w -A FORWARD -i br-lan -o br-lan -j ACCEPT
    ns vs-site-nat iptables -w -A FORWARD -i wan -o br-lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    log "vs-core joined the site LAN as 192.168.50.3"
  else
    ns vs-core ip link del lan2 2>/dev/null || true
    log "vs-core left the site LAN"
  fi
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down; log "down" ;;
  cut) cut "${2:?site or core}" ;;
  restore) restore "${2:?site or core}" ;;
  lan) lan "${2:?on or off}" ;;
  nat) nat_rules "vs-${2:?site or core}-nat" "${3:?eim or symmetric}"; log "$2 NAT now $3" ;;
  *) sed -n '16,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
