# Shared settings and helpers for e2e/cluster/{up,down,smoke}.sh. Sourced, not executed.
#
# Network layout (single node, everything host-internal):
#   cni0 bridge     10.244.0.1/24  created by up.sh before anything starts; the CNI bridge plugin
#                                  finds it already configured and only attaches pod veths to it.
#   pods            10.244.0.0/24  (host-local IPAM, state in $STATE/cni/ipam)
#   services        10.96.0.0/12   the `kubernetes` Service is 10.96.0.1:443
#   kube-apiserver  10.244.0.1:6443  bound to (and advertised on) the bridge address: pods reach
#                                  it through 10.96.0.1 -> kube-proxy DNAT -> 10.244.0.1:6443, and
#                                  host tools use it directly. The API server can bind one address
#                                  only and the Service endpoint may not be a loopback address, so
#                                  the bridge address is the one that serves both. A VIGIL-GUARD
#                                  iptables chain drops traffic for 10.244.0.0/16 that arrives on
#                                  any interface other than lo/cni0, so nothing outside the VM can
#                                  reach the API server or pods even by routing through us.
#   etcd            127.0.0.1:2379/2380, kubelet 127.0.0.1:10250 (the node name resolves to
#                   127.0.0.1 via /etc/hosts, which is how the API server reaches it for logs/exec),
#   controller-manager/scheduler/kube-proxy health+metrics on 127.0.0.1, NodePorts only on
#   127.0.0.1 and 10.244.0.1.

VIGIL_CLUSTER_DIR=${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}
STATE=$VIGIL_CLUSTER_DIR
K8S_VERSION=1.20.2
K8S_BIN=${VIGIL_K8S_BIN:-${VIGIL_CACHE:-/var/cache/vigil}/k8s-$K8S_VERSION/bin}
NODE_NAME=${VIGIL_NODE_NAME:-vigil-node}

BRIDGE=cni0
HOST_IP=10.244.0.1
POD_SUBNET=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/12
API_SERVICE_IP=10.96.0.1
API_PORT=6443
API_URL=https://$HOST_IP:$API_PORT
ETCD_URL=http://127.0.0.1:2379
ETCD_PEER_URL=http://127.0.0.1:2380
CONTAINERD_SOCK=/run/containerd/containerd.sock
CONTAINERD_STATE=/run/containerd
# What Debian's containerd 1.6 uses as sandbox_image (`containerd config default`); we keep it so
# the config stays close to the packaged default. Built locally by up.sh, never pulled.
PAUSE_IMAGE=registry.k8s.io/pause:3.6

PKI=$STATE/pki
LOGS=$STATE/logs
RUN=$STATE/run
KCFG_DIR=$STATE/kubeconfigs
ADMIN_KUBECONFIG=$STATE/kubeconfig
ENV_FILE=$STATE/env
HOSTS_MARK="# vigil-cluster"

KUBECTL=$K8S_BIN/kubectl
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Order matters for shutdown: the node first, then the control plane, etcd last.
NODE_DAEMONS="kubelet kube-proxy"
CONTROL_DAEMONS="kube-scheduler kube-controller-manager kube-apiserver etcd"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kubectl_admin() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

daemon_binary() {
  case $1 in
    etcd) command -v etcd ;;
    containerd) command -v containerd ;;
    *) echo "$K8S_BIN/$1" ;;
  esac
}

# Prints the pid of daemon $1 if its pid file names a live process running the expected binary
# (guards against a recycled pid after a crash or reboot); returns 1 otherwise.
daemon_pid() {
  local name=$1 pid exe want
  [ -f "$RUN/$name.pid" ] || return 1
  pid=$(cat "$RUN/$name.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  want=$(readlink -f "$(daemon_binary "$name")")
  [ "$exe" = "$want" ] || return 1
  echo "$pid"
}

# alive PID: the process exists and is not a zombie. Our daemons are orphans whose parent is the
# VM's init, which may reap exited children only now and then.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# start_daemon NAME ARGS... : runs $(daemon_binary NAME) ARGS in its own session (it must outlive
# the calling shell and any job-control group it ran in), log in $LOGS/NAME.log (the previous one
# kept as NAME.log.1), pid in $RUN/NAME.pid written by the process itself right before exec, so it
# is right whether or not setsid had to fork.
# All cluster traffic is host-internal, so: no proxy variables, and AWS_EC2_METADATA_DISABLED,
# because the kubelet's in-tree ECR credential provider otherwise probes the EC2 metadata
# service at 169.254.169.254 on startup.
start_daemon() {
  local name=$1; shift
  local bin; bin=$(daemon_binary "$name")
  # containerd gets a proxy that refuses every connection: nothing can be pulled from outside
  # (this machine may only talk to itself), and a pod whose image was not imported fails at once
  # with ErrImagePull instead of trying the internet.
  local extra_env=()
  [ "$name" = containerd ] && extra_env=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=)
  [ -f "$LOGS/$name.log" ] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
  rm -f "$RUN/$name.pid"
  setsid env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
    AWS_EC2_METADATA_DISABLED=true ${extra_env[@]+"${extra_env[@]}"} bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$bin" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
  local i
  for i in $(seq 1 50); do
    daemon_pid "$name" >/dev/null && return 0
    sleep 0.1
  done
  tail -20 "$LOGS/$name.log" >&2 || true
  die "$name did not start (log: $LOGS/$name.log)"
}

# stop_daemon NAME [SECONDS]: SIGTERM, wait, then SIGKILL.
stop_daemon() {
  local name=$1 secs=${2:-10} pid i
  if pid=$(daemon_pid "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((secs * 10))); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name did not exit after ${secs}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$RUN/$name.pid"
}

# cluster_lock: serialises up.sh and down.sh across processes (several engineers share this
# machine). The lock lives outside the state dir so `down.sh --purge` cannot delete it while held;
# up.sh passes it on to the down.sh it runs through VIGIL_CLUSTER_LOCK_HELD. Daemons must not
# inherit fd 9 (start_daemon closes it), or they would hold the lock forever.
cluster_lock() {
  [ "${VIGIL_CLUSTER_LOCK_HELD:-}" = 1 ] && return 0
  exec 9>/run/lock/vigil-cluster.lock
  if ! flock -n 9; then
    log "another up.sh/down.sh is running; waiting for it"
    flock -w 600 9 || die "gave up waiting for /run/lock/vigil-cluster.lock"
  fi
  export VIGIL_CLUSTER_LOCK_HELD=1
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.25 s.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.25
  done
}
