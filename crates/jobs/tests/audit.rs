//! `vigil-jobs audit --pool ns/name` against the real API server (the local cluster of
//! e2e/cluster, or kind in CI):
//!
//! * a pool with local storage and a camera; segment objects in the store's layout tile the
//!   hour after the camera's creation except two holes, one of which a Backfill already covers;
//! * the audit applies `status.coverage` with exactly the missing seconds of both holes and
//!   creates one Backfill with reason `Audit`, named after the hole, for the uncovered hole;
//! * a second run changes nothing (no duplicate Backfill).
//!
//! The audit only lists keys, so the segment files are empty. Needs `KUBECONFIG` (e.g.
//! `source /var/lib/vigil-cluster/env`); skipped without it.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vigil_api::{Backfill, BackfillReason, Camera};
use vigil_store::layout::{CameraId, Origin, SegmentKey};
use vigil_testkit::*;

/// Empty segment files tiling `[from, to)` in 10 s steps, minus `holes`.
fn write_segments(
    store: &std::path::Path,
    cam: &CameraId,
    from: i64,
    to: i64,
    holes: &[(i64, i64)],
) {
    let mut t = from;
    while t < to {
        let mut pieces = vec![(t, (t + 10_000).min(to))];
        for &(a, b) in holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if e <= a || s >= b {
                        vec![(s, e)]
                    } else {
                        [(s, a), (b, e)]
                            .into_iter()
                            .filter(|(x, y)| x < y)
                            .collect()
                    }
                })
                .collect();
        }
        for (s, e) in pieces {
            let key = SegmentKey::new(cam.clone(), s, e, Origin::Live)
                .unwrap()
                .to_key("");
            let path = store.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        t += 10_000;
    }
}

fn audit(pool: &str, now_ms: i64) -> std::process::Output {
    std::process::Command::new(bin("vigil-jobs"))
        .args(["audit", "--pool", pool, "--window-hours", "24"])
        .args([
            "--startup-grace-seconds",
            "0",
            "--now-ms",
            &now_ms.to_string(),
        ])
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn run_audit(ns: &str, now_ms: i64) -> String {
    let out = audit(&format!("{ns}/main"), now_ms);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "audit failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Audit windows of `camera`: the Backfills with reason Audit, each named after its hole.
async fn audit_windows(client: &Client, ns: &str, camera: &str) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = Vec::new();
    let bfs: Api<Backfill> = Api::namespaced(client.clone(), ns);
    for b in bfs.list(&ListParams::default()).await.unwrap() {
        if b.spec.camera == camera && b.spec.reason == BackfillReason::Audit {
            assert_eq!(
                b.name_any(),
                vigil_api::hole_backfill_name(camera, &b.spec.window),
                "deterministic name"
            );
            v.push((
                b.spec.window.start.timestamp_millis(),
                b.spec.window.end.timestamp_millis(),
            ));
        }
    }
    v.sort();
    v
}

#[test]
fn audit_reports_coverage_and_one_backfill_per_unknown_hole() {
    if !cluster_available() {
        return;
    }
    vigil_api::install_crypto_provider();
    let rt = rt();
    let client = rt
        .block_on(Client::try_default())
        .expect("client for KUBECONFIG");
    let ns = format!("vigil-audit-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();

    let created = rt.block_on(async {
        apply_crds(&client).await;
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
        let pools: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                "vigil.dev",
                "v1alpha1",
                "RecorderPool",
            )),
        );
        pools
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1",
                    "kind": "RecorderPool",
                    "metadata": {"name": "main"},
                    "spec": {
                        "replicas": 0,
                        "capacityKbps": 100000,
                        "storage": {"local": {"path": store.display().to_string()}},
                        "segmentSeconds": 10,
                        "audit": {"schedule": "*/15 * * * *", "windowHours": 24}
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
        let cam = cams
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1",
                    "kind": "Camera",
                    "metadata": {"name": "door"},
                    "spec": {
                        "source": {"url": "rtsp://10.0.0.5/live"},
                        "expectedBitrateKbps": 1000,
                        "pool": "main"
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        cam.metadata
            .creation_timestamp
            .expect("creationTimestamp")
            .0
            .as_millisecond()
    });

    // "Now" is an hour after the camera was created: with a 10 s segment length the audit
    // window ends 80 s before it, and the camera is expected from its creation on (grace 0).
    let now = created + 3_600_000;
    let hole_a = (created + 600_000, created + 695_000);
    let hole_b = (created + 1_800_000, created + 1_830_000);
    let cam_id = CameraId::new(&ns, "door").unwrap();
    write_segments(&store, &cam_id, created - 20_000, now, &[hole_a, hole_b]);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A local store that is not there is an error, not a store with every camera missing.
        rt.block_on(async {
            let pools: Api<kube::api::DynamicObject> = Api::namespaced_with(
                client.clone(),
                &ns,
                &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                    "vigil.dev",
                    "v1alpha1",
                    "RecorderPool",
                )),
            );
            pools
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                        "apiVersion": "vigil.dev/v1alpha1",
                        "kind": "RecorderPool",
                        "metadata": {"name": "unmounted"},
                        "spec": {
                            "replicas": 0,
                            "capacityKbps": 100000,
                            "storage": {"local": {"path": tmp.path().join("missing").display().to_string()}}
                        }
                    }))
                    .unwrap(),
                )
                .await
                .unwrap();
        });
        let out = audit(&format!("{ns}/unmounted"), now);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("does not exist"), "{stderr}");

        rt.block_on(async {
            // Hole B is already being handled.
            let bfs: Api<Backfill> = Api::namespaced(client.clone(), &ns);
            let t = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            bfs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1",
                    "kind": "Backfill",
                    "metadata": {"name": "door-manual"},
                    "spec": {
                        "camera": "door",
                        "window": {"start": t(hole_b.0), "end": t(hole_b.1)},
                        "reason": "Manual"
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        });

        let out = run_audit(&ns, now);
        assert!(out.contains("audit: cameras=1 holes=2"), "{out}");
        assert!(out.contains("reported=1 errors=0"), "{out}");

        rt.block_on(async {
            let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
            let cam = cams.get("door").await.unwrap();
            let cov = cam
                .status
                .clone()
                .unwrap_or_default()
                .coverage
                .expect("coverage");
            assert_eq!(cov.missing_seconds, 125.0, "{cov:?}");
            assert_eq!(cov.expected_seconds, 3520.0, "{cov:?}");
            // 3395 / 3520 = 96.4488 %, rounded down.
            assert_eq!(cov.percent, "96.44%");
            assert_eq!(cov.window.end.timestamp_millis(), now - 80_000);
            assert_eq!(cov.window.start.timestamp_millis(), now - 24 * 3_600_000);
            assert_eq!(cov.checked_at.timestamp_millis(), now);
            assert_eq!(audit_windows(&client, &ns, "door").await, vec![hole_a]);
        });

        // Idempotent: the hole is known now (its Backfill exists).
        let out = run_audit(&ns, now);
        assert!(out.contains("reported=0 errors=0"), "{out}");
        rt.block_on(async {
            assert_eq!(audit_windows(&client, &ns, "door").await, vec![hole_a]);
        });
    }));

    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(client.clone());
        let _ = nss.delete(&ns, &DeleteParams::default()).await;
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
