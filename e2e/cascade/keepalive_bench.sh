#!/usr/bin/env bash
# shellcheck disable=SC1090  # the domain's env file is known only at run time
# Keepalive cost of N child domains (default 1,000) at one parent (issue 16): one control plane
# (e2e/cluster/domain.sh, INDEX 16) holding N ChildDomains, the parent's access point (debug
# build) as a host process, and crates/access/examples/children_bench.rs simulating the N
# children (each its own client certificate, mutual TLS, one camera, keepalives at the
# parent's interval). Prints the parent's CPU and memory idle (baseline, same run) and under the
# children's keepalives, and the keepalive latency.
#   bash e2e/cascade/keepalive_bench.sh [N] [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
N=${1:-1000}
SECS=${2:-60}
target=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$target/debug/vigil-access
WORK=$(mktemp -d -t vigil-keepalive-bench-XXXXXX)
PARENT=cascade-kparent
P_HTTP=127.0.0.1:18161 P_FED=127.0.0.1:18162
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  bash e2e/cluster/domain.sh down $PARENT --purge >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "bench: $*" >&2; exit 1; }

cargo build --quiet -p vigil-access --bin vigil-access --example children_bench || die "build"
bash e2e/cluster/domain.sh up $PARENT 16 >"$WORK/p.log" 2>&1 || { cat "$WORK/p.log"; die "domain"; }
P_ENV=$(bash e2e/cluster/domain.sh env $PARENT)
pk() { (. "$P_ENV" && kubectl "$@"); }
pk apply -f crds/ >/dev/null || die "crds"
pk create namespace fed >/dev/null
"$target/debug/examples/children_bench" pki "$WORK" || die "pki"
for i in $(seq 0 $((N - 1))); do
  printf -- '---\napiVersion: vigil.dev/v1alpha1\nkind: ChildDomain\nmetadata: {name: child-%d, namespace: fed}\nspec: {identity: child-%d, rights: [playback]}\n' "$i" "$i"
done >"$WORK/children.yaml"
t0=$(date +%s)
pk apply -f "$WORK/children.yaml" >/dev/null || die "ChildDomains"
echo "created $N ChildDomains in $(($(date +%s) - t0)) s"
mkdir -p "$WORK/store"
echo "storage: {local: {path: $WORK/store}}" >"$WORK/parent.yaml"
(. "$P_ENV" && exec "$BIN" serve --config "$WORK/parent.yaml" --listen $P_HTTP --no-auth \
  --federation-listen $P_FED --federation-cert "$WORK/server.crt" --federation-key "$WORK/server.key" \
  --federation-client-ca "$WORK/ca.crt" --federation-namespace fed) >"$WORK/parent.log" 2>&1 &
PARENT_PID=$!
pids+=("$PARENT_PID")
for _ in $(seq 100); do curl -fsS "http://$P_HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 2
"$target/debug/examples/children_bench" run --parent "https://$P_FED" --pki "$WORK" \
  --pid "$PARENT_PID" --children "$N" --seconds "$SECS" || { tail -20 "$WORK/parent.log"; die "run"; }
ready=$(pk -n fed get childdomains -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
echo "ChildDomains Ready=True at the end: $ready of $N"
echo "parent log lines: $(wc -l <"$WORK/parent.log"), warnings: $(grep -c WARN "$WORK/parent.log")"
grep WARN "$WORK/parent.log" | sed 's/^.*WARN //; s/[0-9]\+/N/g' | sort | uniq -c | sort -rn | head -3
