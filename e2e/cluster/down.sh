#!/usr/bin/env bash
# Stops the local cluster started by up.sh and removes what it left on the host: the kubelet
# first (so nothing restarts pods), then every pod container, containerd, the control plane and
# etcd last; then kube-proxy's/CNI's iptables rules, the cni0 bridge, pod network namespaces and
# IP allocations, and the sysctls are put back. Idempotent: safe to run when nothing is running.
#
# Usage: e2e/cluster/down.sh [--purge]
#   --purge  also delete the state dir (certificates, etcd data, images, logs, kubeconfig), the
#            node's /etc/hosts entry and the pod logs in /var/log/pods.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PURGE=0
case ${1:-} in
  "") ;;
  --purge) PURGE=1 ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock

# --- Node daemons -------------------------------------------------------------------------------
stop_daemon kubelet 15
stop_daemon kube-proxy 10

# --- Pod containers -----------------------------------------------------------------------------
# The order mirrors what the kubelet does: application containers first (SIGTERM, a short grace
# period, SIGKILL), then the sandboxes. Deleting a sandbox task while its pod's containers still
# run can leave the pod's shared shim process behind.
CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
TASK_DIR=$CONTAINERD_STATE/io.containerd.runtime.v2.task
GRACE=${VIGIL_DOWN_GRACE:-5}
# Each task bundle holds its container's init pid (no trailing newline: read files one by one);
# the shim is that process's parent. Recorded now, since bundles vanish with their tasks.
init_pids() { local f; for f in "$TASK_DIR"/*/*/init.pid; do [ -f "$f" ] && echo "$(cat "$f" 2>/dev/null)"; done; return 0; }
shim_pids() {
  local pid ppid
  for pid in $(init_pids); do
    ppid=$(awk '$1 == "PPid:" {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    case $(readlink "/proc/$ppid/exe" 2>/dev/null) in */containerd-shim*) echo "$ppid" ;; esac
  done
  return 0
}
shims=$(shim_pids | sort -u)
if daemon_pid containerd >/dev/null && "${CTR[@]}" version >/dev/null 2>&1; then
  tasks=$("${CTR[@]}" tasks ls -q 2>/dev/null || true)
  apps="" sandboxes=""
  for id in $tasks; do
    if "${CTR[@]}" containers info "$id" 2>/dev/null | grep -q '"io.cri-containerd.kind": "sandbox"'; then
      sandboxes="$sandboxes $id"
    else
      apps="$apps $id"
    fi
  done
  if [ -n "$tasks" ]; then
    log "stopping $(wc -w <<<"$apps") containers in $(wc -w <<<"$sandboxes") pods"
  fi
  running() { "${CTR[@]}" tasks ls 2>/dev/null | awk -v id="$1" '$1 == id && $3 == "RUNNING" {f=1} END {exit !f}'; }
  for id in $apps; do "${CTR[@]}" tasks kill -a -s SIGTERM "$id" >/dev/null 2>&1 || true; done
  deadline=$((SECONDS + GRACE))
  for id in $apps; do
    while [ "$SECONDS" -lt "$deadline" ] && running "$id"; do sleep 0.2; done
  done
  for id in $apps; do "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
  # Sandbox ("pause") processes ignore SIGTERM as pid 1; containerd kills them outright too.
  for id in $sandboxes; do "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
  # Forget the containers as well (their snapshots go with them) so the next start is clean; the
  # kubelet recreates the pods that the API still assigns to this node.
  for id in $("${CTR[@]}" containers ls -q 2>/dev/null || true); do
    "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
fi

stop_daemon containerd 15

# Containers whose containerd is gone (crashed or killed) are still held by their shims; kill
# the shims we saw and the containers' init processes (pids from the task bundles).
shims="$shims $(shim_pids)"
for pid in $(init_pids); do
  # Only live container processes (their parent is a shim), never a recycled pid.
  ppid=$(awk '$1 == "PPid:" {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
  case $(readlink "/proc/$ppid/exe" 2>/dev/null) in
    */containerd-shim*) kill -KILL "$pid" 2>/dev/null || true ;;
  esac
done
for pid in $(tr " " "\n" <<<"$shims" | sort -u); do
  # Only if that pid still is a shim (pids recorded earlier may have been reused since).
  case $(readlink "/proc/$pid/exe" 2>/dev/null) in
    */containerd-shim*) log "killing leftover shim $pid"; kill -KILL "$pid" 2>/dev/null || true ;;
  esac
done

# unmount_under PREFIX: unmounts everything mounted below PREFIX, deepest first.
unmount_under() {
  local m
  { awk '{print $2}' /proc/self/mounts | grep -E "^$1(/|$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
  done
}
unmount_under "$CONTAINERD_STATE"
unmount_under "$STATE/kubelet"
unmount_under "$STATE/containerd"
for ns in /run/netns/cni-*; do
  [ -e "$ns" ] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
  rm -f "$ns"
done

# --- Control plane --------------------------------------------------------------------------------
for d in $CONTROL_DAEMONS; do stop_daemon "$d" 15; done

# --- Network state --------------------------------------------------------------------------------
if [ -x "$K8S_BIN/kube-proxy" ]; then
  # Removes the KUBE-* chains of every proxy mode; it complains about modes never used (ipvs).
  mkdir -p "$LOGS"
  "$K8S_BIN/kube-proxy" --cleanup >"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
fi
# Whatever is left from the kubelet (KUBE-FIREWALL, KUBE-MARK-*), the CNI plugins (CNI-*, per-pod
# masquerade chains) and our own guard (VIGIL-*): delete the jumps from other chains, then flush
# and delete the chains. Rules of anyone else are untouched.
OURS='^(KUBE-|CNI-|VIGIL-)'
for t in nat filter mangle raw; do
  rules=$(iptables -w -t "$t" -S 2>/dev/null || true)
  [ -n "$rules" ] || continue
  while IFS= read -r line; do
    read -r -a words <<<"$line"
    [ "${words[0]:-}" = -A ] || continue
    [[ ${words[1]} =~ $OURS ]] && continue
    [[ $line =~ -[jg]\ (KUBE-|CNI-|VIGIL-) ]] || continue
    eval "iptables -w -t $t -D ${line#-A }" 2>/dev/null || true
  done <<<"$rules"
  chains=$(awk '$1 == "-N" {print $2}' <<<"$rules" | grep -E "$OURS" || true)
  for c in $chains; do iptables -w -t "$t" -F "$c" 2>/dev/null || true; done
  for c in $chains; do iptables -w -t "$t" -X "$c" 2>/dev/null || true; done
done

if ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "removing bridge $BRIDGE"
  ip link del "$BRIDGE" 2>/dev/null || true
fi
rm -rf "$STATE/cni/ipam"
rm -f /var/lib/cni/results/vigil-* 2>/dev/null || true
# Connection tracking entries of pods and Services would point at addresses that no longer exist.
conntrack -D -s "${CLUSTER_CIDR%/*}" --mask-src 255.255.0.0 >/dev/null 2>&1 || true
conntrack -D -d "${SERVICE_CIDR%/*}" --mask-dst 255.240.0.0 >/dev/null 2>&1 || true

if [ -f "$STATE/sysctl.orig" ]; then
  while IFS== read -r key val; do
    [ -n "$key" ] && echo "$val" >"/proc/sys/${key//.//}" 2>/dev/null || true
  done <"$STATE/sysctl.orig"
  rm -f "$STATE/sysctl.orig"
fi

if [ "$PURGE" = 1 ]; then
  log "purging $STATE"
  rm -rf "$STATE" "$CONTAINERD_STATE" /var/log/pods /var/log/containers
  sed -i "/$HOSTS_MARK\$/d" /etc/hosts
fi
log "cluster is down"
