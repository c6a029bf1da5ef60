//! `vigil-jobs audit --pool ns/name` against the real API server (the local cluster of
//! e2e/cluster, or kind in CI):
//!
//! * a pool with local storage and a camera; segment objects in the store's layout tile the
//!   hour after the camera's creation except two holes, one of which a Backfill already covers;
//! * the audit applies `status.coverage` with exactly the missing seconds of both holes and
//!   creates one Backfill with reason `Audit`, named after the hole, for the uncovered hole;
//! * a second run changes nothing (no duplicate Backfill).
//!
//! * two holes only the segments' frames show (frames stopping inside a segment, a key
//!   misstating its content's length) are found, counted and reported the same way; with
//!   `--content-hours 0` (keys only) they are not.
//!
//! The segment files are fMP4 with real `moov`/`moof` boxes and filler samples. Needs `KUBECONFIG` (e.g.
//! `source /var/lib/vigil-cluster/env`); skipped without it.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vigil_api::{Backfill, BackfillReason, Camera};
use vigil_store::layout::{CameraId, Origin, SegmentKey};
use vigil_testkit::*;

/// A segment whose video frames last `durations` (90 kHz ticks), in fragments of 15 frames.
/// Only the boxes the audit reads are real (the sample data is filler): the audit judges frame
/// timing, and the backfill tests check the same reader on real recorded H.264/H.265.
fn fmp4(durations: &[u32]) -> Vec<u8> {
    use vigil_media::mp4::{SampleInfo, TrackRun, VideoTrack, init_segment, mdat_header, moof};
    let video = VideoTrack {
        sample_entry: b"\0\0\0\x08avc1".to_vec(),
        width: 640,
        height: 360,
    };
    let mut data = init_segment(&video, None, 0);
    let mut dts = 0u64;
    for (i, chunk) in durations.chunks(15).enumerate() {
        let samples: Vec<SampleInfo> = chunk
            .iter()
            .enumerate()
            .map(|(j, d)| SampleInfo {
                duration: *d,
                size: 4,
                sync: i == 0 && j == 0,
            })
            .collect();
        data.extend(moof(
            i as u32 + 1,
            &[TrackRun {
                track_id: 1,
                base_decode_time: dts,
                samples: &samples,
                sample_flags: true,
            }],
        ));
        data.extend(mdat_header(4 * samples.len() as u32));
        data.extend(std::iter::repeat_n(0u8, 4 * samples.len()));
        dts += chunk.iter().map(|d| u64::from(*d)).sum::<u64>();
    }
    data
}

/// 15 fps frames lasting `ms` in all (the last frame takes the remainder).
fn steady(ms: i64) -> Vec<u32> {
    let total = (ms * 90) as u32;
    let mut v = vec![6000; (total / 6000) as usize];
    if !total.is_multiple_of(6000) {
        v.push(total % 6000);
    }
    v
}

fn put(store: &std::path::Path, cam: &CameraId, s: i64, e: i64, durations: &[u32]) {
    let key = SegmentKey::new(cam.clone(), s, e, Origin::Live)
        .unwrap()
        .to_key("");
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, fmp4(durations)).unwrap();
}

/// Segments whose frames match their keys tiling `[from, to)` in 10 s steps, minus `holes`.
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
            put(store, cam, s, e, &steady(e - s));
        }
        t += 10_000;
    }
}

fn audit(pool: &str, now_ms: i64, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("vigil-jobs"))
        .args(["audit", "--pool", pool, "--window-hours", "24"])
        .args(extra)
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
    let out = audit(&format!("{ns}/main"), now_ms, &[]);
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
    // Two holes only the frames show: a segment whose frames stop for 4 s inside it (frame 45,
    // at 3 s, lasts 4 s: frames cover up to 3.066 s, then from 7 s), and a 16.9 s key holding
    // 10 s of video (a timeline re-anchored inside it: no frame's time can be trusted).
    let seg_c = (created + 2_400_000, created + 2_410_000);
    let hole_c = (seg_c.0 + 3_066, seg_c.0 + 7_000);
    let hole_d = (created + 3_000_000, created + 3_016_900);
    write_segments(
        &store,
        &cam_id,
        created - 20_000,
        now,
        &[hole_a, hole_b, seg_c, hole_d],
    );
    let mut gap = steady(3_000);
    gap.push(4 * 90_000);
    gap.extend(steady(3_000));
    put(&store, &cam_id, seg_c.0, seg_c.1, &gap);
    put(&store, &cam_id, hole_d.0, hole_d.1, &steady(10_000));

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
        let out = audit(&format!("{ns}/unmounted"), now, &[]);
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

        // Judged by keys alone, only the two holes between keys show.
        let out = audit(
            &format!("{ns}/main"),
            now,
            &["--content-hours", "0", "--dry-run"],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("audit: cameras=1 holes=2 missing_seconds=125.000 reported=1"),
            "{stdout}"
        );

        // The frames of the whole window are judged (the default judges the last hour; this
        // window is an hour long anyway).
        let out = run_audit(&ns, now);
        assert!(out.contains("audit: cameras=1 holes=4"), "{out}");
        assert!(
            out.contains("reported=3 errors=0 inside_segments_seconds=20.834"),
            "{out}"
        );

        rt.block_on(async {
            let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
            let cam = cams.get("door").await.unwrap();
            let cov = cam
                .status
                .clone()
                .unwrap_or_default()
                .coverage
                .expect("coverage");
            // 95 + 30 between keys, 3.934 + 16.9 inside them.
            assert_eq!(cov.missing_seconds, 145.834, "{cov:?}");
            assert_eq!(cov.expected_seconds, 3520.0, "{cov:?}");
            // 3374.166 / 3520 = 95.857 %, rounded down.
            assert_eq!(cov.percent, "95.85%");
            assert_eq!(cov.window.end.timestamp_millis(), now - 80_000);
            assert_eq!(cov.window.start.timestamp_millis(), now - 24 * 3_600_000);
            assert_eq!(cov.checked_at.timestamp_millis(), now);
            assert_eq!(
                audit_windows(&client, &ns, "door").await,
                vec![hole_a, hole_c, hole_d]
            );
        });

        // Idempotent: the hole is known now (its Backfill exists).
        let out = run_audit(&ns, now);
        assert!(out.contains("reported=0 errors=0"), "{out}");
        rt.block_on(async {
            assert_eq!(
                audit_windows(&client, &ns, "door").await,
                vec![hole_a, hole_c, hole_d]
            );
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
