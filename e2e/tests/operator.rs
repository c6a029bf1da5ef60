//! The operator against a real API server: a pool of 3 recorders and 12 cameras of mixed
//! bitrates is placed within capacity; a recorder that stops renewing its Lease loses its cameras
//! to the others within seconds, and only its cameras move; each moved camera gets a
//! `status.failover` record (from, when, footage safe until) and turns `Recording` when its new
//! recorder reports so; the Backfill that recorder creates runs; when the leader operator is
//! SIGKILLed the standby takes over and moves nothing needlessly.
//!
//! Recorders here are represented by the protocol the operator sees — a Lease per recorder,
//! renewed every 500 ms, and the `Recording` condition a recorder writes — so this test isolates
//! the operator. The recorder's own side is tested in recorder/tests and e2e/tests/failover.rs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use vigil_api::{
    Backfill, BackfillPhase, BackfillReason, Camera, CameraState, RecorderPool, TimeWindow,
};
use vigil_e2e::*;
use vigil_operator::leader::micro_time_now;

const RECORDERS: [&str; 3] = ["rec-a", "rec-b", "rec-c"];
const CAPACITY_KBPS: u64 = 20_000;
const HEADROOM_PERCENT: u64 = 20;

/// A recorder's Lease, renewed every 500 ms until `alive` turns false.
fn spawn_lease(
    client: Client,
    ns: String,
    pool: String,
    name: &'static str,
    alive: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &ns);
        while alive.load(Ordering::Relaxed) {
            let mut lease = Lease {
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(4),
                    renew_time: Some(micro_time_now()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            lease.metadata.name = Some(name.into());
            lease.metadata.labels = Some(BTreeMap::from([
                ("vigil.dev/pool".to_string(), pool.clone()),
                ("vigil.dev/recorder-kind".to_string(), "process".to_string()),
            ]));
            let mut value = serde_json::to_value(&lease).expect("lease json");
            value["apiVersion"] = "coordination.k8s.io/v1".into();
            value["kind"] = "Lease".into();
            let _ = api
                .patch(
                    name,
                    &PatchParams::apply("e2e-recorder").force(),
                    &Patch::Apply(&value),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

fn start_operator(ns: &str, identity: &str, port: u16) -> ChildGuard {
    let extra = ["--leader-lease-seconds", "3"];
    vigil_e2e::harness::start_operator(ns, identity, port, &std::env::temp_dir(), &extra)
}

async fn assignments(api: &Api<Camera>) -> BTreeMap<String, String> {
    camera_assignments(api).await
}

fn loads(
    assigned: &BTreeMap<String, String>,
    bitrates: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut loads = BTreeMap::new();
    for (cam, rec) in assigned {
        *loads.entry(rec.clone()).or_default() += bitrates[cam];
    }
    loads
}

#[tokio::test]
async fn places_fails_over_and_survives_leader_loss() {
    let client = client().await;
    apply_crds(&client).await;
    let ns = create_namespace(&client, "vigil-e2e-operator", &[]).await;

    // replicas: 0 — the recorders of this test are the Leases below, not pods.
    let pool: RecorderPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
        "metadata": {"name": "main"},
        "spec": {"replicas": 0, "capacityKbps": CAPACITY_KBPS, "failoverHeadroomPercent": HEADROOM_PERCENT,
                 "segmentSeconds": 10, "storage": {"local": {"path": "/data"}}}
    }))
    .expect("pool");
    Api::<RecorderPool>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");

    let alive: BTreeMap<&str, Arc<AtomicBool>> = RECORDERS
        .iter()
        .map(|r| (*r, Arc::new(AtomicBool::new(true))))
        .collect();
    for r in RECORDERS {
        spawn_lease(
            client.clone(),
            ns.clone(),
            "main".into(),
            r,
            alive[r].clone(),
        );
    }

    // 12 cameras, 1–8 Mbit/s, 37 Mbit/s in all: fits under 3 × 16 Mbit/s (capacity less headroom)
    // and, after one recorder is lost, on the other two at full capacity (2 × 20 Mbit/s).
    let bitrates: BTreeMap<String, u64> = [
        8000, 6000, 5000, 4000, 3000, 3000, 2000, 2000, 1000, 1000, 1000, 1000,
    ]
    .iter()
    .enumerate()
    .map(|(i, b)| (format!("cam-{i:02}"), *b))
    .collect();
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    for (name, kbps) in &bitrates {
        let cam: Camera = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera", "metadata": {"name": name},
            "spec": {"source": {"url": format!("rtsp://127.0.0.1:8554/{name}/live")}, "expectedBitrateKbps": kbps, "pool": "main"}
        }))
        .expect("camera");
        cameras
            .create(&PostParams::default(), &cam)
            .await
            .expect("create camera");
    }

    // The second replica starts once the first holds the leader lease, so we know which to kill.
    let mut leader = start_operator(&ns, "operator-1", 18181);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    wait_for(Duration::from_secs(20), "operator-1 to lead", || {
        let leases = leases.clone();
        async move {
            let l = leases.get("vigil-operator-leader").await.ok()?;
            (l.spec?.holder_identity.as_deref() == Some("operator-1")).then_some(())
        }
    })
    .await;
    let mut standby = start_operator(&ns, "operator-2", 18182);

    // 1. Everything placed, within the normal limit (capacity less headroom).
    let placed = wait_for(Duration::from_secs(30), "all 12 cameras placed", || {
        let cameras = cameras.clone();
        async move { Some(assignments(&cameras).await).filter(|a| a.len() == 12) }
    })
    .await;
    let normal_limit = CAPACITY_KBPS * (100 - HEADROOM_PERCENT) / 100;
    for (rec, load) in loads(&placed, &bitrates) {
        assert!(
            load <= normal_limit,
            "{rec} carries {load} kbit/s > {normal_limit}: {placed:?}"
        );
    }
    assert_eq!(
        loads(&placed, &bitrates).len(),
        3,
        "all three recorders used: {placed:?}"
    );
    let status = wait_for(Duration::from_secs(10), "camera status written", || {
        let cameras = cameras.clone();
        async move {
            let c = cameras.get("cam-00").await.ok()?;
            let s = c.status?;
            (s.recorder.is_some() && s.state == Some(CameraState::Scheduled)).then_some(s)
        }
    })
    .await;
    assert_eq!(
        status.recorder.as_deref(),
        placed.get("cam-00").map(String::as_str)
    );

    // 2. rec-b stops renewing (SIGKILL of a recorder): its cameras move, no others do.
    let victim = "rec-b";
    let victims: Vec<String> = placed
        .iter()
        .filter(|(_, r)| *r == victim)
        .map(|(c, _)| c.clone())
        .collect();
    assert!(!victims.is_empty());
    alive[victim].store(false, Ordering::Relaxed);
    let killed_at = Instant::now();
    let moved = wait_for(Duration::from_secs(15), "rec-b's cameras to move", || {
        let cameras = cameras.clone();
        async move {
            Some(assignments(&cameras).await)
                .filter(|a| a.len() == 12 && a.values().all(|r| r != victim))
        }
    })
    .await;
    let failover = killed_at.elapsed();
    println!(
        "failover of {} cameras after lease stop: {:.2} s (lease 4 s)",
        victims.len(),
        failover.as_secs_f64()
    );
    assert!(
        failover < Duration::from_secs(7),
        "failover took {failover:?}"
    );
    for (cam, rec) in &placed {
        if rec != victim {
            assert_eq!(&moved[cam], rec, "{cam} moved needlessly");
        }
    }
    for (rec, load) in loads(&moved, &bitrates) {
        assert!(load <= CAPACITY_KBPS, "{rec} above full capacity: {load}");
    }

    // Each moved camera has a failover record: footage safe until one segment before rec-b's
    // last renewal. Its new recorder reports Recording (its own field manager).
    let mut safe_until = BTreeMap::new();
    for cam in &victims {
        let c = cameras.get(cam).await.expect("camera");
        let s = c.status.expect("status");
        let failover = s.failover.clone().expect("failover recorded");
        assert_eq!(failover.from, victim);
        assert_eq!(Some(failover.at), s.assigned_at, "recorded with the move");
        let age = chrono::Utc::now() - failover.footage_safe_until;
        assert!(
            age.num_seconds() >= 10 && age.num_seconds() < 30,
            "footage safe until {age:?} ago"
        );
        safe_until.insert(cam.clone(), failover.footage_safe_until);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let recording = serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera", "metadata": {"name": cam},
            "status": {"conditions": [
                {"type": "Recording", "status": "True", "reason": "Streaming", "message": "receiving frames", "lastTransitionTime": now},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "AsExpected", "lastTransitionTime": now}]}
        });
        cameras
            .patch_status(
                cam,
                &PatchParams::apply("vigil-recorder").force(),
                &Patch::Apply(&recording),
            )
            .await
            .expect("recording condition");
    }
    // The new recorder creates the Backfill of the hole (here: by hand, as the recorder would);
    // these cameras have no edge storage, so it fails at once and counts the whole window lost.
    let backfills: Api<Backfill> = Api::namespaced(client.clone(), &ns);
    for cam in &victims {
        wait_for(Duration::from_secs(15), "Recording", || {
            let cameras = cameras.clone();
            async move {
                let s = cameras.get(cam).await.ok()?.status?;
                (s.state == Some(CameraState::Recording)).then_some(())
            }
        })
        .await;
        let hole = Backfill::for_hole(
            &ns,
            cam,
            TimeWindow {
                start: safe_until[cam],
                end: chrono::Utc::now(),
            },
            BackfillReason::RecorderFailure,
        );
        backfills
            .create(&PostParams::default(), &hole)
            .await
            .expect("backfill created");
        let done = finished_backfill(&backfills, cam, Duration::from_secs(15)).await;
        assert_eq!(done.spec.reason, BackfillReason::RecorderFailure);
        let window = done.spec.window.seconds();
        assert!(
            (10.0..40.0).contains(&window),
            "{cam}: window of {window} s"
        );
        let st = done.status.expect("backfill status");
        assert_eq!(st.phase, Some(BackfillPhase::Failed));
        assert_eq!(st.seconds_lost, Some(window), "{cam}: lost seconds counted");
        assert!(
            st.conditions.iter().any(|c| c.reason == "NoEdgeStorage"),
            "{:?}",
            st.conditions
        );
        // The recorder's condition and the operator's conditions coexist (server-side apply, list map).
        let c = cameras.get(cam).await.expect("camera");
        let types: Vec<String> = c
            .status
            .expect("status")
            .conditions
            .into_iter()
            .map(|c| c.type_)
            .collect();
        for t in ["Recording", "Scheduled", "Degraded", "Invalid"] {
            assert!(
                types.iter().any(|x| x == t),
                "{cam} lacks condition {t}: {types:?}"
            );
        }
    }
    let pool = Api::<RecorderPool>::namespaced(client.clone(), &ns)
        .get("main")
        .await
        .expect("pool");
    let ps = pool.status.expect("pool status");
    assert_eq!(ps.ready_recorders, 2);
    assert_eq!(ps.cameras, 12);
    assert!(ps.conditions.iter().any(|c| c.type_ == "Degraded"
        && c.reason == "RecorderUnhealthy"
        && c.message.contains(victim)));

    // 3. SIGKILL the leader; the standby takes over and moves nothing that does not need moving.
    let before = assignments(&cameras).await;
    leader.kill();
    let killed_leader = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "operator-2 to take the leader lease",
        || {
            let leases = leases.clone();
            async move {
                let l = leases.get("vigil-operator-leader").await.ok()?;
                (l.spec?.holder_identity.as_deref() == Some("operator-2")).then_some(())
            }
        },
    )
    .await;
    println!(
        "standby took over {:.2} s after the leader's SIGKILL",
        killed_leader.elapsed().as_secs_f64()
    );
    assert!(
        killed_leader.elapsed() < Duration::from_secs(8),
        "takeover within lease (3 s) + retry"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        assignments(&cameras).await,
        before,
        "the new leader moved cameras needlessly"
    );

    // The new leader acts: rec-c fails too, its cameras go to rec-a as far as capacity allows.
    alive["rec-c"].store(false, Ordering::Relaxed);
    // The labels and the pool's unplaceable list are written by the same reconcile, one after
    // the other: wait until both show the new state.
    let pools: Api<RecorderPool> = Api::namespaced(client.clone(), &ns);
    let (after, unplaced) = wait_for(
        Duration::from_secs(15),
        "the new leader to move rec-c's cameras and report the rest",
        || {
            let (cameras, pools) = (cameras.clone(), pools.clone());
            async move {
                let a = assignments(&cameras).await;
                let unplaced = pools.get("main").await.ok()?.status?.unplaceable;
                (a.values().all(|r| r == "rec-a") && a.len() + unplaced.len() == 12)
                    .then_some((a, unplaced))
            }
        },
    )
    .await;
    assert!(loads(&after, &bitrates)["rec-a"] <= CAPACITY_KBPS);
    assert!(
        !unplaced.is_empty(),
        "37 Mbit/s cannot fit on one 20 Mbit/s recorder"
    );
    let pending = cameras
        .get(&unplaced[0])
        .await
        .expect("camera")
        .status
        .expect("status");
    assert_eq!(pending.state, Some(CameraState::Pending));

    for a in alive.values() {
        a.store(false, Ordering::Relaxed);
    }
    standby.kill();
    delete_namespace(&client, &ns).await;
}
