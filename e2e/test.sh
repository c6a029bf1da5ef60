#!/usr/bin/env bash
# Vigil's whole test suite — the command README.md gives and .ci/run calls:
#   format, lint, CRD drift, unit and component tests, then integration tests against a real
#   Kubernetes API server (the local cluster from e2e/cluster/up.sh, started if not running).
# Prints a closing line "tests: N passed, M failed".
# Environment: VIGIL_KEEP_CLUSTER=1 leaves a cluster this script started running afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGDIR=$(mktemp -d -t vigil-test-XXXXXX)
passed=0; failed=0; failed_stages=()

stage() { printf '\n==> %s\n' "$*"; }
# Runs a test command, echoing its output and adding up its counts: cargo's "test result: ok. N
# passed; M failed" lines and plain "N passed, M failed" summary lines.
count_run() {
  local name=$1; shift
  local log="$LOGDIR/$name.log"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local p f
  p=$(grep -Eo '(test result: [A-Za-z]+\. |^([A-Za-z-]+: )?)[0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
  f=$(grep -Eo '(test result: [A-Za-z]+\. [0-9]+ passed; |^([A-Za-z-]+: )?[0-9]+ passed, )[0-9]+ failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ]; then
    failed_stages+=("$name")
    [ "$f" -gt 0 ] || failed=$((failed + 1))  # a build failure counts as one failed test
  fi
}
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_stages+=("$name"); fi
}

stage "cargo fmt --check"
check fmt cargo fmt --all --check

stage "cargo clippy --all-targets -D warnings"
check clippy cargo clippy --workspace --all-targets --quiet -- -D warnings

stage "CRD drift: crds/ matches crdgen"
check crd-drift cargo run --quiet -p vigil-operator --bin crdgen -- --check crds

export VIGIL_MOTO_PYTHON=${VIGIL_MOTO_PYTHON:-${VIGIL_CACHE:-/var/cache/vigil}/venv/bin/python}

stage "camera simulator self-test (GStreamer RTSP server, ONVIF replay)"
count_run camera-sim bash e2e/camera-sim/test_camera_sim.sh

stage "remote-site network harness (namespaces, real NATs, hole punching)"
count_run sites-net bash e2e/sites/net_test.sh

stage "remote site through a symmetric NAT: camera recorded over the relay, uplink cut and restored (issue 15)"
count_run sites-relay bash e2e/sites/relay_test.sh

stage "remote-site path selection through real NATs: lan, direct (hole punched, QUIC), relay (issue 15)"
count_run sites-paths bash e2e/sites/paths_test.sh

stage "local Kubernetes cluster"
started_cluster=0
CLUSTER_ENV=${VIGIL_CLUSTER_DIR:-/var/lib/vigil-cluster}/env
if [ -z "${KUBECONFIG:-}" ]; then
  # Reuse a running cluster (and leave it running); stop one this script started.
  if ! { [ -f "$CLUSTER_ENV" ] && (source "$CLUSTER_ENV" && kubectl get --raw=/readyz >/dev/null 2>&1); }; then
    started_cluster=1
  fi
  if bash e2e/cluster/up.sh; then
    # shellcheck disable=SC1091
    source "$CLUSTER_ENV"
  else
    failed=$((failed + 1)); failed_stages+=("cluster-up")
  fi
fi
cleanup() {
  if [ "$started_cluster" = 1 ] && [ -z "${VIGIL_KEEP_CLUSTER:-}" ]; then
    bash "$ROOT/e2e/cluster/down.sh" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
# With a cluster up, a Kubernetes-mode test that finds no KUBECONFIG fails instead of skipping.
if [ -n "${KUBECONFIG:-}" ]; then export VIGIL_REQUIRE_CLUSTER=1; fi

# After the cluster, so the recorder's Kubernetes-mode tests (recorder/tests/kubernetes_mode.rs,
# playback_k8s.rs, …) run against the real API server instead of skipping for want of KUBECONFIG.
stage "unit and component tests (recorder tests use the simulator, a real S3 server and the API server)"
count_run unit cargo test --no-fail-fast --workspace --exclude vigil-e2e

stage "playback web page in headless Chromium (timeline, hls.js, screenshot)"
count_run ui bash e2e/ui/test.sh

stage "live view in headless Chromium (recorder live tap → WHEP/WebRTC and LL-HLS, moving picture, latency, recorder SIGKILL; a camera's page: live beside the timeline, back 30 s, exports ffprobed; H.265 LL-HLS via ffprobe; ~3.5 min)"
count_run live bash e2e/ui/live_test.sh

if [ -n "${KUBECONFIG:-}" ]; then
  stage "integration tests against $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null)"
  # The integration tests put these binaries into images and processes.
  check build-binaries cargo build --quiet -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-access
  count_run integration cargo test --no-fail-fast -p vigil-e2e -- --test-threads=2
fi

stage "cascaded domains: parent and child control planes (e2e/cluster/domain.sh), access points linked by mutual TLS"
count_run cascade bash e2e/cascade/test.sh

stage "Helm chart: lint, template, CRDs in sync, server-side dry run"
count_run chart bash e2e/chart/test.sh

if [ -n "${KUBECONFIG:-}" ]; then
  # After the integration tests, which built the binaries it puts into images; its operator only
  # watches its own namespace, so it cannot act on what other tests left behind.
  stage "helm install with the quickstart pool, the user's install path (recorders up, cameras recorded)"
  count_run quickstart bash e2e/chart/quickstart_test.sh
fi

stage "summary"
if [ ${#failed_stages[@]} -gt 0 ]; then echo "failed stages: ${failed_stages[*]} (logs in $LOGDIR)"; fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
