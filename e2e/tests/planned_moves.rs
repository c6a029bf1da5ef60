//! Planned moves without a gap, end to end with real processes: the camera simulator, the
//! operator and `vigil-recorder record --kubernetes` processes against the real API server (the
//! rig of the failover test; SIGTERM to a recorder process stands in for the kubelet stopping a
//! recorder pod).
//!
//! 1. Spread and rebalance: 6 cameras (`VIGIL_E2E_CAMERAS` for more) record on 2 recorders; a
//!    third joins, and the rebalance moves cameras onto it (make-before-break, rate-limited)
//!    until the pool of 3 reports max/ideal within its threshold (125 %) with every recorder
//!    used.
//! 2. A rolling restart: for each recorder in turn a new one starts (the Deployment's surge),
//!    then the old one gets SIGTERM, drains (its cameras are handed over make-before-break)
//!    and exits.
//! 3. A scale-down from 3 to 2: one recorder gets SIGTERM without a replacement.
//!
//! Judged from the store: for every camera (none has edge storage) no hole longer than
//! [`MAX_HOLE_MS`] from before the first restart to after the scale-down, and no Backfill at
//! all. Prints, per camera, the overlap or gap at each seam between two recorders' footage and
//! how long each drain took (the figures of docs/benchmarks.md, "Planned moves").

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use vigil_api::{Backfill, RecorderPool};
use vigil_e2e::rig::{Rig, RigConfig};
use vigil_e2e::*;

/// One frame at 15 fps is 67 ms; two recorders map the camera's clock to UTC each on its own,
/// so their seams may be off by a few tens of ms. Anything longer is a lost picture.
const MAX_HOLE_MS: i64 = 200;
const SEGMENT_SECONDS: u32 = 4;

/// Overlaps (negative) and gaps (positive), ms, at each seam of `segments` (sorted by start)
/// within `[from, to]`. Segments of one recorder abut exactly and make no seam.
fn seams(segments: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut out = vec![];
    let mut covered_to: Option<i64> = None;
    for &(start, end) in segments {
        if let Some(c) = covered_to
            && start != c
            && start >= from
            && start <= to
        {
            out.push((start, start - c));
        }
        covered_to = Some(covered_to.map_or(end, |c| c.max(end)));
    }
    out
}

/// The holes of `segments` inside `[from, to]` (including before the first and after the
/// last segment), ms.
fn holes(segments: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut out = vec![];
    let mut at = from;
    for &(start, end) in segments {
        if end <= at {
            continue;
        }
        if start > at {
            out.push((at, start.min(to)));
        }
        at = at.max(end);
        if at >= to {
            break;
        }
    }
    if at < to {
        out.push((at, to));
    }
    out.retain(|(s, e)| e > s);
    out
}

async fn pool_balance(rig: &Rig) -> Option<vigil_api::PoolBalance> {
    Api::<RecorderPool>::namespaced(rig.client.clone(), &rig.namespace)
        .get("main")
        .await
        .ok()?
        .status?
        .balance
}

/// Waits until no handover is under way and every camera records on a live recorder.
async fn settle(rig: &Rig, timeout: Duration) {
    wait_for(timeout, "no handover under way", || async {
        let b = pool_balance(rig).await?;
        (b.handovers == 0).then_some(())
    })
    .await;
    rig.wait_all_recording(timeout).await;
}

#[tokio::test]
async fn rolling_restart_and_scale_down_lose_no_frame() {
    let cameras: usize = std::env::var("VIGIL_E2E_CAMERAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let client = client().await;
    let config = RigConfig {
        namespace_prefix: "moves-e2e",
        cameras,
        recorders: 2,
        // Not a failover test: a lease long enough that a loaded machine (CI's 2 cores) never
        // fails a recorder that is merely slow to renew.
        lease_seconds: 6,
        segment_seconds: SEGMENT_SECONDS,
    };
    let mut rig = Rig::start(client.clone(), &config).await;
    let started = Instant::now();

    // 1. A third recorder joins a pool of two: the rebalance spreads the cameras onto it.
    rig.wait_all_recording(Duration::from_secs(90)).await;
    settle(&rig, Duration::from_secs(60)).await;
    let from_ms = chrono::Utc::now().timestamp_millis();
    let before = pool_balance(&rig).await.expect("pool balance");
    let joined = rig.add_recorder();
    let join_start = Instant::now();
    let balance = wait_for(Duration::from_secs(90), "a balanced pool", || async {
        let b = pool_balance(&rig).await?;
        let per_recorder = rig.assignments().await;
        let used: std::collections::BTreeSet<&String> = per_recorder.values().collect();
        (b.handovers == 0 && b.max_over_ideal_percent <= 125 && used.len() == 3).then_some(b)
    })
    .await;
    println!(
        "{joined} joined 2 recorders (max/ideal {} %); 3 balanced {:.1} s later: max/ideal {} % (max {} kbit/s, ideal {} kbit/s), {:?}",
        before.max_over_ideal_percent,
        join_start.elapsed().as_secs_f64(),
        balance.max_over_ideal_percent,
        balance.max_kbps,
        balance.ideal_kbps,
        rig.assignments().await
    );
    settle(&rig, Duration::from_secs(60)).await;

    // 2. Rolling restart, one recorder at a time, a new one first (maxSurge 1, maxUnavailable 0).
    let rollout = Instant::now();
    let old: Vec<String> = rig.recorders.keys().cloned().collect();
    for name in &old {
        let new = rig.add_recorder();
        wait_for(
            Duration::from_secs(30),
            "the new recorder ready",
            || async {
                let pool = Api::<RecorderPool>::namespaced(rig.client.clone(), &rig.namespace)
                    .get("main")
                    .await
                    .ok()?;
                pool.status?
                    .recorders
                    .iter()
                    .any(|r| r.name == new && r.ready)
                    .then_some(())
            },
        )
        .await;
        let (took, clean) = rig.terminate(name, Duration::from_secs(90)).await;
        println!(
            "rolling restart: {name} drained and exited in {:.1} s (replaced by {new})",
            took.as_secs_f64()
        );
        assert!(clean, "{name} did not exit cleanly within the grace period");
        settle(&rig, Duration::from_secs(60)).await;
    }
    println!(
        "rolling restart of {} recorders with {cameras} cameras took {:.1} s",
        old.len(),
        rollout.elapsed().as_secs_f64()
    );

    // 3. Scale down from 3 to 2.
    let victim = rig.recorders.keys().next().cloned().expect("a recorder");
    let (took, clean) = rig.terminate(&victim, Duration::from_secs(90)).await;
    println!(
        "scale-down: {victim} drained and exited in {:.1} s",
        took.as_secs_f64()
    );
    assert!(clean, "{victim} did not exit cleanly");
    settle(&rig, Duration::from_secs(60)).await;
    let to_ms = chrono::Utc::now().timestamp_millis();

    // The footage up to `to_ms` reaches the store within a segment or two.
    let cams = rig.cameras.clone();
    wait_for(
        Duration::from_secs(u64::from(SEGMENT_SECONDS) * 5),
        "footage up to the end of the test in the store",
        || async {
            cams.iter()
                .all(|c| rig.stored_intervals(c).iter().any(|&(_, end)| end >= to_ms))
                .then_some(())
        },
    )
    .await;

    let mut failures = vec![];
    for cam in &cams {
        let segments = rig.stored_intervals(cam);
        let seams = seams(&segments, from_ms, to_ms);
        let text: Vec<String> = seams
            .iter()
            .map(|&(_, d)| {
                if d < 0 {
                    format!("overlap {} ms", -d)
                } else {
                    format!("GAP {d} ms")
                }
            })
            .collect();
        println!("{cam}: {} seams: {}", seams.len(), text.join(", "));
        for (start, end) in holes(&segments, from_ms, to_ms) {
            if end - start > MAX_HOLE_MS {
                failures.push(format!(
                    "{cam}: {} ms without footage at {start}",
                    end - start
                ));
            }
        }
    }
    let backfills = Api::<Backfill>::namespaced(client.clone(), &rig.namespace)
        .list(&ListParams::default())
        .await
        .expect("list backfills")
        .items;
    println!("backfills: {}", backfills.len());
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "holes: {failures:#?}");
    assert!(
        backfills.is_empty(),
        "planned moves created Backfills: {:?}",
        backfills
            .iter()
            .map(|b| (&b.spec.camera, &b.spec.reason, &b.spec.window))
            .collect::<Vec<_>>()
    );

    delete_namespace(&client, &rig.namespace).await;
}

#[test]
fn seams_and_holes_are_read_from_segment_times() {
    // One recorder's segments abut; a handover overlaps by 800 ms; a later seam misses 300 ms.
    let segments = [(0, 4000), (4000, 8000), (7200, 11_000), (11_300, 15_000)];
    assert_eq!(seams(&segments, 0, 15_000), [(7200, -800), (11_300, 300)]);
    assert_eq!(holes(&segments, 0, 15_000), [(11_000, 11_300)]);
    assert_eq!(
        holes(&segments, 500, 16_000),
        [(11_000, 11_300), (15_000, 16_000)]
    );
    assert!(holes(&segments, 0, 11_000).is_empty());
}
