#!/usr/bin/env bash
# Installs everything the local cluster, the camera simulator and the tests need, from Debian's
# packages, and builds the Kubernetes binaries from Debian 12's `kubernetes` source package.
# Idempotent: a second run installs nothing and builds nothing. Binaries are cached under
# $VIGIL_CACHE (default /var/cache/vigil), outside any clone, so CI pays the build once per machine.
# If $VIGIL_K8S_BIN points at a directory that already holds the binaries, that is used instead.
# --tools-only: just what the tests start on the host (camera simulator, ffmpeg, moto, buildah,
# faketime, chromium), for a machine that brings its own cluster (kind in e2e.yml).
set -euo pipefail
TOOLS_ONLY=0
[ "${1:-}" = --tools-only ] && TOOLS_ONLY=1

CACHE=${VIGIL_CACHE:-/var/cache/vigil}
K8S_VERSION=1.20.2
K8S_BIN=${VIGIL_K8S_BIN:-$CACHE/k8s-$K8S_VERSION/bin}
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
TOOL_PACKAGES="buildah openssl ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0
  gir1.2-gstreamer-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  iproute2 curl procps python3-venv python3-pip chromium faketime"
CLUSTER_PACKAGES="golang-go dpkg-dev rsync etcd-server containerd runc containernetworking-plugins
  iptables conntrack socat busybox-static golang-github-modern-go-reflect2-dev"
PACKAGES=$TOOL_PACKAGES
[ "$TOOLS_ONLY" = 1 ] || PACKAGES="$CLUSTER_PACKAGES $TOOL_PACKAGES"

log() { printf '[deps] %s\n' "$*" >&2; }

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  # Extra third-party apt sources on some images are unreachable; Debian's own must work.
  apt-get update -qq || log "apt-get update reported errors (third-party sources?); continuing"
  # Some postinst scripts try to start services (no init system in CI sandboxes) and fail the
  # first pass; a second configure pass finishes the install.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -f >/dev/null
  dpkg --configure -a
fi

# moto (a real S3 server, in memory) for the recorder's tests, in a virtualenv of Debian's
# Python cached outside the clone; tests find it through $VIGIL_MOTO_PYTHON.
VENV=$CACHE/venv
if ! "$VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
  log "installing moto[server] into $VENV"
  mkdir -p "$CACHE"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.*'
fi

if [ "$TOOLS_ONLY" = 1 ]; then
  log "test tools ready (--tools-only: no Kubernetes binaries)"
  exit 0
fi

have_all=1
for b in $BINARIES; do [ -x "$K8S_BIN/$b" ] || have_all=0; done
if [ "$have_all" = 1 ]; then
  log "Kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
  exit 0
fi

log "building Kubernetes $K8S_VERSION from Debian's source package (about 8 minutes on 2 cores)"
SRC=$CACHE/k8s-src
mkdir -p "$SRC" "$K8S_BIN"
if ! ls "$SRC"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  uris=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uris" ] || uris=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uris" ] || { log "cannot find a Debian mirror URI in apt sources"; exit 1; }
  cat > /etc/apt/sources.list.d/vigil-src.sources <<SRCS
Types: deb-src
URIs: $uris
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRCS
  apt-get update -qq || true
  (cd "$SRC" && apt-get source --download-only kubernetes >/dev/null)
fi
TREE=$SRC/tree
if [ ! -f "$TREE/.vigil-patched" ]; then
  rm -rf "$TREE" && mkdir -p "$TREE"
  tar -xzf "$SRC"/kubernetes_*.orig.tar.gz -C "$TREE" --strip-components=1
  # The vendored reflect2 v1.0.1 crashes on Go >= 1.18 (fault in map iteration on the first
  # server-side apply of a custom resource); Debian ships the fixed v1.0.2.
  rm -rf "$TREE/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$TREE/vendor/github.com/modern-go/reflect2"
  mkdir -p "$TREE/.go/src/k8s.io"
  ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"
  touch "$TREE/.vigil-patched"
fi
what=""
for b in $BINARIES; do what="$what cmd/$b"; done
(cd "$TREE" && GO111MODULE=off GOPATH="$TREE/.go" CGO_ENABLED=0 HOME="$SRC/home" GOFLAGS= \
  make WHAT="${what# }" >"$SRC/build.log" 2>&1) || { tail -40 "$SRC/build.log" >&2; exit 1; }
for b in $BINARIES; do cp "$TREE/_output/local/bin/linux/amd64/$b" "$K8S_BIN/$b"; done
log "built: $(ls "$K8S_BIN" | tr '\n' ' ')"
