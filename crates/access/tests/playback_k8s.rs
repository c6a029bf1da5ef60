//! Kubernetes mode of `serve --pool` and `retention --pool` against the real local API server:
//! storage comes from the RecorderPool, the camera list from the pool's Cameras (not from
//! the store), and retention uses each Camera's `spec.retention.days`, never touching a
//! camera of another pool.
//!
//! Needs `KUBECONFIG` (e.g. `source /var/lib/vigil-cluster/env`); skipped without it.

use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_store::layout::{CameraId, Origin, SegmentKey};
use vigil_testkit::*;

const DAY: i64 = 86_400_000;

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut c = Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "kubectl apply failed");
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "ns", &self.0, "--wait=false"])
            .output();
    }
}

#[test]
fn pool_mode_lists_the_pools_cameras_and_applies_their_retention() {
    if !cluster_available() {
        println!("0 passed, 0 failed");
        return;
    }
    // The CRDs, whatever test ran first on a fresh cluster.
    vigil_api::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(kube::Client::try_default())
        .expect("client for KUBECONFIG");
    rt.block_on(apply_crds(&client));
    let ns = format!("vigil-pb-k8s-{:x}", now_ms() & 0xffffff);
    let _guard = Ns(ns.clone());
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let camera = |name: &str, pool: &str, days: u32| {
        format!(
            r#"
---
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {{name: {name}, namespace: {ns}}}
spec:
  source: {{url: "rtsp://127.0.0.1:1/{name}"}}
  expectedBitrateKbps: 1000
  pool: {pool}
  retention: {{days: {days}}}
"#
        )
    };
    kubectl_apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: vigil.dev/v1alpha1
kind: RecorderPool
metadata: {{name: main, namespace: {ns}}}
spec:
  replicas: 0
  capacityKbps: 10000
  storage: {{local: {{path: "{store}"}}}}
{door}{gate}{other}"#,
        store = store.display(),
        door = camera("door", "main", 7),
        gate = camera("gate", "main", 1),
        other = camera("yard", "other", 1),
    ));

    let now = now_ms();
    let put = |cam: &str, start: i64| -> std::path::PathBuf {
        let k = SegmentKey::new(
            CameraId::new(&ns, cam).unwrap(),
            start,
            start + 10_000,
            Origin::Live,
        )
        .unwrap();
        let p = store.join(k.relative());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        p
    };
    let door_new = put("door", now - 3 * DAY);
    let door_old = put("door", now - 10 * DAY);
    let gate_old = put("gate", now - 2 * DAY);
    let gate_new = put("gate", now - 60_000);
    let yard_old = put("yard", now - 30 * DAY); // another pool's camera: never touched

    // serve --pool: the camera list is the pool's Cameras.
    let port = free_port();
    let log = tmp.path().join("serve.log");
    let child = Command::new(bin("vigil-access"))
        .args(["serve", "--pool", &format!("{ns}/main"), "--no-auth"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _serve = Proc {
        child,
        name: "serve",
    };
    assert!(
        wait_for(Duration::from_secs(30), || http(
            "GET", port, "/readyz", b""
        )
        .is_some()),
        "serve --pool did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let body = http("GET", port, "/api/v1/cameras", b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["door", "gate"], "{body}");
    let rec = http(
        "GET",
        port,
        &format!(
            "/api/v1/cameras/{ns}/door/recordings?start={}&end={}",
            now - 3 * DAY - 1000,
            now - 3 * DAY + 20_000
        ),
        b"",
    )
    .unwrap();
    assert!(rec.contains("\"live\":[{"), "{rec}");

    // retention --pool: each camera's own retention.
    let out = Command::new(bin("vigil-jobs"))
        .args(["retention", "--pool", &format!("{ns}/main")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "retention failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("deleted=2"), "{stdout}");
    assert!(door_new.exists() && gate_new.exists() && yard_old.exists());
    assert!(!door_old.exists() && !gate_old.exists());
    println!("1 passed, 0 failed");
}
