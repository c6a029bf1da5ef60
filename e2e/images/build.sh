#!/usr/bin/env bash
# Builds an OCI image from scratch that holds the given host binaries and everything they need to
# run (for a dynamically linked binary: every library `ldd` reports plus the ELF interpreter), and
# imports it into containerd's k8s.io namespace, where the local cluster's kubelet finds it.
# Pods use it with `imagePullPolicy: Never`.
#
# Usage: e2e/images/build.sh [options] NAME BINARY [BINARY...]
#   -> localhost/vigil/NAME:dev (printed on stdout as the last line)
#   Binaries go to /usr/local/bin/<basename>; the first one is the entrypoint, so pods can give
#   just `args:` (or override with `command:`). The image runs as user 65532 (nonroot), with
#   /etc/passwd, /etc/group, /etc/nsswitch.conf, CA certificates, a writable /tmp and
#   /home/nonroot.
# Options:
#   --ref REF          image reference instead of localhost/vigil/NAME:dev
#   --dest DIR         where binaries go in the image (default /usr/local/bin)
#   --entrypoint JSON  entrypoint instead of the first binary, e.g. '["/bin/sh","-c"]'
#   --user UID:GID     default 65532:65532
#   --add SRC:DEST     also copy file or directory SRC to DEST (repeatable; not ldd-scanned)
#
# Idempotent and cheap when nothing changed: the image in containerd carries a label with a
# hash of its inputs, and an unchanged image is not rebuilt.
# Layers stay uncompressed (the archive only travels to the local containerd): big debug builds
# import in seconds.
# Needs: buildah (vfs storage, chroot isolation, no daemon), ctr and a running containerd
# (e2e/cluster/up.sh starts it).
set -euo pipefail

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

REF="" DEST=/usr/local/bin ENTRYPOINT="" USER_SPEC=65532:65532 ADDS=()
while [ $# -gt 0 ]; do
  case $1 in
    --ref) REF=$2; shift 2 ;;
    --dest) DEST=$2; shift 2 ;;
    --entrypoint) ENTRYPOINT=$2; shift 2 ;;
    --user) USER_SPEC=$2; shift 2 ;;
    --add) ADDS+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
NAME=$1; shift
[[ $NAME =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "image name must be lowercase [a-z0-9._-]: $NAME"
REF=${REF:-localhost/vigil/$NAME:dev}
[ "$(id -u)" = 0 ] || die "must run as root (buildah storage and containerd import)"

CONTAINERD_SOCK=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
"${CTR[@]}" version >/dev/null 2>&1 ||
  die "containerd is not running at $CONTAINERD_SOCK; start the cluster with e2e/cluster/up.sh"

WORK=$(mktemp -d /tmp/vigil-image.XXXXXX)
BUILDAH_CTR=""
cleanup() {
  [ -n "$BUILDAH_CTR" ] && bh rm "$BUILDAH_CTR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Assemble the root filesystem in $WORK/rootfs
# ---------------------------------------------------------------------------------------------
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS$DEST" "$ROOTFS/etc/ssl/certs" "$ROOTFS/tmp" "$ROOTFS/home/nonroot" "$ROOTFS/root"
chmod 1777 "$ROOTFS/tmp"
chmod 700 "$ROOTFS/root"
chown 65532:65532 "$ROOTFS/home/nonroot"

# copy_file SRC DEST_IN_IMAGE: follows symlinks (the image gets real files at the path the loader
# asks for).
copy_file() {
  mkdir -p "$ROOTFS$(dirname "$2")"
  cp -L --preserve=mode "$1" "$ROOTFS$2"
}

declare -A LIBS=()
FIRST=""
for bin in "$@"; do
  [ -f "$bin" ] || die "no such file: $bin"
  [ -x "$bin" ] || die "not executable: $bin"
  target=$DEST/$(basename "$bin")
  copy_file "$bin" "$target"
  [ -n "$FIRST" ] || FIRST=$target
  # ldd prints "libx.so => /path (0x..)" for libraries and "/lib64/ld-linux-x86-64.so.2 (0x..)"
  # for the ELF interpreter; a static binary makes it fail with "not a dynamic executable".
  if out=$(ldd "$bin" 2>/dev/null); then
    if grep -q "not found" <<<"$out"; then
      die "$bin: missing libraries: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    while read -r lib; do LIBS[$lib]=1; done < <(grep -oE '(^|[[:space:]])/[^[:space:]]+' <<<"$out" | sed 's/^[[:space:]]*//' | sort -u)
  fi
done
for lib in "${!LIBS[@]}"; do copy_file "$lib" "$lib"; done
# With merged /usr on the host, ldd may report /lib/... while the loader also searches
# /usr/lib/...; it finds the library at the path ldd reported, which we preserved.

for spec in ${ADDS[@]+"${ADDS[@]}"}; do
  src=${spec%%:*} dst=${spec#*:}
  [ -e "$src" ] && [ -n "$dst" ] && [ "$src" != "$spec" ] || die "--add wants SRC:DEST with an existing SRC: $spec"
  mkdir -p "$ROOTFS$(dirname "$dst")"
  cp -a "$src" "$ROOTFS$dst"
done

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$ROOTFS/etc/nsswitch.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"

[ -n "$ENTRYPOINT" ] || ENTRYPOINT="[\"$FIRST\"]"
ENV_PATH="PATH=$DEST:/usr/local/bin:/usr/bin:/bin"
[ "$DEST" = /usr/local/bin ] && ENV_PATH="PATH=/usr/local/bin:/usr/bin:/bin"

# Inputs hash: file list with owners/modes and content, plus the image config.
INPUT_HASH=$(
  {
    echo "build.sh v1|$REF|$ENTRYPOINT|$USER_SPEC|$ENV_PATH"
    (cd "$ROOTFS" && find . -printf '%p %U:%G %m %l\n' | LC_ALL=C sort)
    (cd "$ROOTFS" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -c1-32
)
if "${CTR[@]}" images ls "name==$REF" 2>/dev/null | grep -q "vigil.dev/inputs=$INPUT_HASH"; then
  log "$REF is up to date"
  echo "$REF"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Build with buildah (own storage under the cluster state dir, vfs driver: no overlay mounts to
# leak, and it works whatever the filesystem), export as an OCI archive, import into containerd.
# ---------------------------------------------------------------------------------------------
STORE=${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/buildah
mkdir -p "$STORE"
export BUILDAH_ISOLATION=chroot
bh() { buildah --root "$STORE/root" --runroot "$STORE/runroot" --storage-driver vfs "$@"; }

log "building $REF"
BUILDAH_CTR=$(bh from --name "vigil-build-$NAME-$$" scratch)
MNT=$(bh mount "$BUILDAH_CTR")
cp -a "$ROOTFS/." "$MNT/"
bh umount "$BUILDAH_CTR" >/dev/null
bh config --entrypoint "$ENTRYPOINT" --user "$USER_SPEC" --workingdir / \
  --env "$ENV_PATH" --label "vigil.dev/inputs=$INPUT_HASH" "$BUILDAH_CTR"
# --timestamp 0: the same inputs give the same image digest.
bh commit -q --rm --timestamp 0 "$BUILDAH_CTR" "$REF" >/dev/null
BUILDAH_CTR=""
bh push -q --disable-compression "$REF" "oci-archive:$WORK/image.tar:$REF" >/dev/null
bh rmi -f "$REF" >/dev/null 2>&1 || true

# The archive names the image with its full reference; --base-name keeps ctr from discarding it.
"${CTR[@]}" images import --base-name "${REF%:*}" "$WORK/image.tar" >/dev/null
"${CTR[@]}" images ls -q "name==$REF" | grep -qx "$REF" || die "import did not create $REF"
"${CTR[@]}" images label "$REF" "vigil.dev/inputs=$INPUT_HASH" >/dev/null
log "imported $REF into containerd (k8s.io)"
echo "$REF"
