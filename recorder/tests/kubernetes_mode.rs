//! `vigil-recorder record --kubernetes` against the real API server (the local cluster of
//! e2e/cluster, or kind in CI), run as a process with the downward-API variables set by hand:
//!
//! * reads its RecorderPool (local storage, 4 s segments) and renews its Lease every second,
//!   with the labels the operator looks for;
//! * records the Cameras labelled `vigil.dev/recorder=<pod>`, with the password from the Secret
//!   the Camera names, and starts/stops cameras as labels come and go;
//! * applies its fields of the Camera status (server-side apply, manager `vigil-recorder`):
//!   measured bitrate, last segment time, the `Recording` and `Degraded` conditions, leaving the
//!   operator's fields and conditions alone; `state` is left to the operator;
//! * creates a `StreamLoss` Backfill when a lost stream comes back, and a `RecorderFailure`
//!   Backfill when it takes over a camera after a failover, from where the store's footage ends
//!   to its own first footage;
//! * after a planned move, reports the hole before its first footage only once the recorder
//!   that handed the camera over is gone (its Lease no longer renewed): a living one may still
//!   be uploading it; a killed one took it with its spool.
//!
//! Needs `KUBECONFIG` (e.g. `source /var/lib/vigil-cluster/env`); skipped without it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vigil_api::{Backfill, BackfillReason, Camera};
use vigil_testkit::*;

const POD: &str = "rec-test-0";

fn camera(name: &str, url: &str, labelled: bool) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    if labelled {
        labels.insert("vigil.dev/recorder".into(), json!(POD));
    }
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Camera",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "source": { "url": url },
            "credentialsSecretRef": { "name": "cam-creds" },
            "expectedBitrateKbps": 1000,
            "pool": "main"
        }
    })
}

#[test]
fn records_the_cameras_labelled_for_it_and_reports_status() {
    if !cluster_available() {
        return;
    }
    vigil_api::install_crypto_provider();
    let rt = rt();
    let client = rt
        .block_on(Client::try_default())
        .expect("client for KUBECONFIG");
    let ns = format!("vigil-rec-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let sim = Sim::start(&[
        "name=door,codec=h264,bitrate=800,fps=25,width=640,height=360,user=viewer,password=Door-Pw-123".into(),
        "name=yard,codec=h265,bitrate=800,fps=25,width=640,height=360,user=viewer,password=Door-Pw-123".into(),
    ]);

    rt.block_on(async {
        apply_crds(&client).await;
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "cam-creds"},
                    "stringData": {"username": "viewer", "password": "Door-Pw-123\n"}
                }))
                .unwrap(),
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
                        "segmentSeconds": 4,
                        "localBufferMib": 64,
                        "lease": {"durationSeconds": 4, "renewSeconds": 1},
                        // The simulator is on loopback, which only an explicit entry opens.
                        "cameraNetworks": {"allow": ["127.0.0.1/32"]}
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
        cams.create(
            &PostParams::default(),
            &serde_json::from_value(camera("door", &sim.url("door"), true)).unwrap(),
        )
        .await
        .unwrap();
        // The operator's condition, which the recorder must leave alone.
        cams.patch_status(
            "door",
            &PatchParams::apply("vigil-operator").force(),
            &Patch::Apply(json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                "metadata": {"name": "door"},
                "status": {"conditions": [{
                "type": "Scheduled", "status": "True", "reason": "Assigned", "message": "by the test",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
        )
        .await
        .unwrap();
    });

    let log = tmp.path().join("recorder.log");
    let port = free_port();
    let logf = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(bin("vigil-recorder"))
        .args([
            "record",
            "--kubernetes",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--buffer-dir")
        .arg(tmp.path().join("buf"))
        .args(["--reconnect-max-ms", "500"])
        // No operator runs here, so nobody takes the cameras over on SIGTERM: the drain gives
        // up after 2 s and the recorder closes its segments and exits.
        .args(["--drain-timeout", "2"])
        .env("POD_NAME", POD)
        .env("POD_NAMESPACE", &ns)
        .env("POOL_NAME", "main")
        .env("RUST_LOG", "info,vigil_recorder=debug")
        .stderr(logf)
        .spawn()
        .unwrap();
    let mut rec = Proc {
        child,
        name: "vigil-recorder",
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let metrics = || http("GET", port, "/metrics", b"").unwrap_or_default();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
            let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
            // The Lease is renewed every second, with the labels the operator lists by.
            let mut first = None;
            for _ in 0..40 {
                if let Ok(l) = leases.get(POD).await {
                    let spec = l.spec.clone().unwrap_or_default();
                    assert_eq!(spec.holder_identity.as_deref(), Some(POD));
                    assert_eq!(spec.lease_duration_seconds, Some(4));
                    assert_eq!(
                        l.labels().get("vigil.dev/pool").map(String::as_str),
                        Some("main")
                    );
                    assert_eq!(
                        l.labels()
                            .get("vigil.dev/recorder-kind")
                            .map(String::as_str),
                        Some("process")
                    );
                    let renew = spec.renew_time.map(|t| t.0);
                    match first {
                        None => first = renew,
                        Some(f) if renew > Some(f) => break,
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert!(first.is_some(), "no Lease; log:\n{}", log_text());

            // Status: Recording, bitrate, last segment, condition; the other condition kept.
            let mut ok = false;
            for _ in 0..60 {
                let c = cams.get("door").await.unwrap();
                let st = c.status.clone().unwrap_or_default();
                let recording = st
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Recording")
                    .is_some_and(|c| {
                        c.status == vigil_api::ConditionStatus::True && c.reason == "Streaming"
                    });
                if let Some(kbps) = st.measured_bitrate_kbps
                    && recording
                    && st.last_segment_time.is_some()
                {
                    // `state` is the operator's (derived from the Recording condition).
                    assert!(st.state.is_none(), "{st:?}");
                    assert!(
                        st.conditions.iter().any(|c| c.type_ == "Scheduled"),
                        "{st:?}"
                    );
                    assert!(
                        st.conditions.iter().any(|c| c.type_ == "Degraded"
                            && c.status == vigil_api::ConditionStatus::False),
                        "{st:?}"
                    );
                    assert!((300..3000).contains(&kbps), "bitrate {kbps}");
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert!(
                ok,
                "camera status never showed Recording; log:\n{}",
                log_text()
            );

            // A second camera gets the label: the recorder starts it.
            cams.create(
                &PostParams::default(),
                &serde_json::from_value(camera("yard", &sim.url("yard"), true)).unwrap(),
            )
            .await
            .unwrap();
            assert!(
                wait_for(Duration::from_secs(20), || metric(
                    &metrics(),
                    "vigil_recorder_segments_written_total",
                    "camera=\"yard\""
                ) >= 1.0),
                "yard not recorded; log:\n{}",
                log_text()
            );
            // The first camera loses its label: the recorder stops it.
            cams.patch(
                "door",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"vigil.dev/recorder": null}}})),
            )
            .await
            .unwrap();
            assert!(
                wait_for(Duration::from_secs(20), || metric(
                    &metrics(),
                    "vigil_recorder_cameras",
                    ""
                ) == 1.0),
                "door not stopped; log:\n{}",
                log_text()
            );

            // A stream loss becomes a StreamLoss Backfill when the stream comes back.
            sim.drop_camera("yard");
            tokio::time::sleep(Duration::from_secs(3)).await;
            sim.restore_camera("yard");
            let bfs: Api<Backfill> = Api::namespaced(client.clone(), &ns);
            let find = |camera: &'static str, reason: BackfillReason| {
                let bfs = bfs.clone();
                async move {
                    bfs.list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .into_iter()
                        .find(|b| b.spec.camera == camera && b.spec.reason == reason)
                }
            };
            let mut loss = None;
            for _ in 0..40 {
                loss = find("yard", BackfillReason::StreamLoss).await;
                if loss.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let b = loss.unwrap_or_else(|| panic!("no StreamLoss Backfill; log:\n{}", log_text()));
            eprintln!("stream loss backfill {} {:?}", b.name_any(), b.spec.window);
            assert!(b.spec.window.seconds() >= 2.0, "{:?}", b.spec.window);
            assert_eq!(
                b.name_any(),
                vigil_api::hole_backfill_name("yard", &b.spec.window)
            );

            // A failover: the operator moves "door" (stopped above, its footage in the store)
            // from a dead recorder to this one, recording where footage is safe until. This
            // recorder finds the hole from the end of the stored footage to its first footage.
            let (segs, _) = read_store(&store, &ns, "door");
            let stored_end = segs
                .iter()
                .map(|s| s.key.end_ms)
                .max()
                .expect("door footage");
            let now = chrono::Utc::now();
            let safe = chrono::DateTime::from_timestamp_millis(stored_end - 2_000).unwrap();
            // A recorder in between took "door" over from the same safe point, reported the
            // start of this hole and died (the operator carries the safe point forward over
            // it): this recorder reports only the rest, so no second counts seconds twice.
            let reported_end = stored_end + 1_000;
            let t = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            bfs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "Backfill",
                    "metadata": {"name": "door-earlier"},
                    "spec": {"camera": "door", "reason": "RecorderFailure",
                        "window": {"start": t(stored_end), "end": t(reported_end)}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
            cams.patch_status(
                "door",
                &PatchParams::apply("vigil-operator").force(),
                &Patch::Apply(json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                    "metadata": {"name": "door"},
                    "status": {"recorder": POD, "assignedAt": now, "state": "Scheduled",
                        "failover": {"from": "rec-dead-0", "at": now, "footageSafeUntil": safe}}})),
            )
            .await
            .unwrap();
            cams.patch(
                "door",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"vigil.dev/recorder": POD}}})),
            )
            .await
            .unwrap();
            let mut takeover = None;
            for _ in 0..40 {
                takeover = bfs
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .find(|b| {
                        b.spec.camera == "door"
                            && b.spec.reason == BackfillReason::RecorderFailure
                            && b.name_any() != "door-earlier"
                    });
                if takeover.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let b = takeover
                .unwrap_or_else(|| panic!("no RecorderFailure Backfill; log:\n{}", log_text()));
            eprintln!("takeover backfill {} {:?}", b.name_any(), b.spec.window);
            assert_eq!(
                b.spec.window.start.timestamp_millis(),
                reported_end,
                "the hole starts where the stored footage ends, less what was reported already"
            );
            assert!(
                b.spec.window.end > now - chrono::Duration::seconds(1),
                "{:?}",
                b.spec.window
            );
            // After a failover the hole is reported at the first fragment, before the first
            // segment is stored: wait for that segment.
            let starts_at_hole_end = |segs: &[vigil_testkit::Segment]| {
                segs.iter()
                    .any(|s| s.key.start_ms == b.spec.window.end.timestamp_millis())
            };
            let mut segs = vec![];
            for _ in 0..30 {
                segs = read_store(&store, &ns, "door").0;
                if starts_at_hole_end(&segs) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert!(
                starts_at_hole_end(&segs),
                "the hole ends where this recorder's footage starts: {:?} {segs:?}",
                b.spec.window
            );

            // A planned move whose owner dies before its footage reaches the store. "door" is
            // stopped here (its last segment stored), then handed "back" to this recorder by
            // rec-ghost, which stands for a recorder that recorded in between and was killed
            // with that footage in its spool. While rec-ghost's Lease is renewed the hole may
            // still be on its way and is not reported; once the Lease stops changing it is.
            cams.patch(
                "door",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"vigil.dev/recorder": null}}})),
            )
            .await
            .unwrap();
            assert!(
                wait_for(Duration::from_secs(20), || metric(
                    &metrics(),
                    "vigil_recorder_cameras",
                    ""
                ) == 1.0),
                "door not stopped; log:\n{}",
                log_text()
            );
            // Its last segment is uploaded as it stops; give the upload a moment.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stored_end = read_store(&store, &ns, "door")
                .0
                .iter()
                .map(|s| s.key.end_ms)
                .max()
                .expect("door footage");
            let ghost_lease = |renew: chrono::DateTime<chrono::Utc>| {
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "rec-ghost"},
                    "spec": {"holderIdentity": "rec-ghost", "leaseDurationSeconds": 4,
                        "renewTime": renew.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}})
            };
            let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let renewer = {
                let leases = leases.clone();
                let renewing = renewing.clone();
                tokio::spawn(async move {
                    while renewing.load(std::sync::atomic::Ordering::SeqCst) {
                        leases
                            .patch(
                                "rec-ghost",
                                &PatchParams::apply("test-ghost").force(),
                                &Patch::Apply(ghost_lease(chrono::Utc::now())),
                            )
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                })
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            // The operator's record: rec-ghost got "door" after the failover above (which is
            // therefore no longer this assignment's), and now hands it over.
            let assign = |at: chrono::DateTime<chrono::Utc>| {
                let cams = cams.clone();
                async move {
                    cams.patch_status(
                        "door",
                        &PatchParams::apply("vigil-operator").force(),
                        &Patch::Apply(json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                            "metadata": {"name": "door"},
                            "status": {"recorder": POD, "assignedAt": at, "state": "Recording"}})),
                    )
                    .await
                    .unwrap();
                }
            };
            assign(chrono::Utc::now()).await;
            cams.patch(
                "door",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "vigil.dev/recorder": "rec-ghost", "vigil.dev/incoming-recorder": POD}}})),
            )
            .await
            .unwrap();
            // The operator's part: the handover completes once this recorder has footage.
            let mut ready = false;
            for _ in 0..40 {
                let st = cams
                    .get_status("door")
                    .await
                    .unwrap()
                    .status
                    .unwrap_or_default();
                if st.handover_ready.as_deref() == Some(POD) {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert!(ready, "no handoverReady; log:\n{}", log_text());
            cams.patch(
                "door",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "vigil.dev/recorder": POD, "vigil.dev/incoming-recorder": null}}})),
            )
            .await
            .unwrap();
            // (The move keeps assignedAt.)
            // This recorder's first segment after the move is stored: the check may run.
            let mut first_start = None;
            for _ in 0..40 {
                first_start = read_store(&store, &ns, "door")
                    .0
                    .iter()
                    .map(|s| s.key.start_ms)
                    .filter(|&s| s > stored_end)
                    .min();
                if first_start.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let first_start = first_start
                .unwrap_or_else(|| panic!("door not recorded again; log:\n{}", log_text()));
            let hole_backfill = || {
                let bfs = bfs.clone();
                async move {
                    bfs.list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .into_iter()
                        .find(|b| {
                            b.spec.camera == "door"
                                && b.spec.window.start.timestamp_millis() == stored_end
                        })
                }
            };
            // The owner lives: no report for a few rounds.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let early = hole_backfill().await;
                assert!(
                    early.is_none(),
                    "reported while the owner's Lease is renewed: {early:?}"
                );
            }
            renewing.store(false, std::sync::atomic::Ordering::SeqCst);
            renewer.await.unwrap();
            let mut reported = None;
            for _ in 0..30 {
                reported = hole_backfill().await;
                if reported.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let b = reported.unwrap_or_else(|| {
                panic!(
                    "the hole of the dead owner was not reported; log:\n{}",
                    log_text()
                )
            });
            eprintln!(
                "planned-move hole backfill {} {:?}",
                b.name_any(),
                b.spec.window
            );
            assert_eq!(b.spec.reason, BackfillReason::RecorderFailure);
            assert_eq!(
                b.spec.window.end.timestamp_millis(),
                first_start,
                "the hole ends where this recorder's footage starts"
            );
            assert!(
                log_text().contains("footage before the handover never reached the store"),
                "no log line for the hole"
            );
        })
    }));

    rec.signal("TERM");
    let status = rec.wait_timeout(Duration::from_secs(40));
    let text = log_text();
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(client.clone());
        let _ = nss.delete(&ns, &DeleteParams::default()).await;
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "recorder did not exit cleanly: {text}"
    );
    assert!(
        !text.contains("Door-Pw-123"),
        "password in the log:\n{text}"
    );
    let (segs, _) = read_store(&store, &ns, "door");
    assert!(segs.len() >= 2, "door segments: {segs:?}");
    let (segs, _) = read_store(&store, &ns, "yard");
    assert!(!segs.is_empty());
}
