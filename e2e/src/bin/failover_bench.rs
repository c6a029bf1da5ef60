//! Failover measurement: over many SIGKILLs of a recorder, the time from the kill to each of its
//! cameras' first segment bytes on another recorder. Prints every sample and p50 / p95 / max.
//!
//!     source /var/lib/vigil-cluster/env
//!     cargo build -p vigil-operator -p vigil-recorder
//!     cargo run -p vigil-e2e --bin failover-bench -- [KILLS] [LEASE_SECONDS]
//!
//! After each kill a replacement recorder is started (as a Deployment would) and the rig waits
//! until every camera records again before the next kill.

use std::time::Duration;

use vigil_e2e::harness::percentile;
use vigil_e2e::rig::{Rig, RigConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kills: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let lease_seconds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let client = vigil_e2e::client().await;
    let config = RigConfig {
        namespace_prefix: "vigil-e2e-failover",
        cameras: 12,
        recorders: 3,
        lease_seconds,
        segment_seconds: 10,
    };
    let mut rig = Rig::start(client.clone(), &config).await;
    rig.wait_all_recording(Duration::from_secs(120)).await;
    let mut all = vec![];
    let mut reassigned = vec![];
    for kill in 1..=kills {
        // Kill the recorder holding the most cameras, so every kill moves several.
        let assignments = rig.assignments().await;
        let victim = rig
            .recorders
            .keys()
            .max_by_key(|r| assignments.values().filter(|v| v == r).count())
            .cloned()
            .expect("a recorder");
        let samples = rig
            .kill_and_measure(&[victim.as_str()], Duration::ZERO, Duration::from_secs(60))
            .await;
        let worst = samples.iter().map(|s| s.seconds).fold(0.0, f64::max);
        println!(
            "kill {kill:2}: {victim} had {} cameras, all recording elsewhere after {worst:.2} s",
            samples.len()
        );
        for s in &samples {
            println!(
                "    {} → {}: reassigned after {:.2} s, recording after {:.2} s",
                s.camera, s.to, s.reassigned_seconds, s.seconds
            );
        }
        reassigned.extend(samples.iter().map(|s| s.reassigned_seconds));
        all.extend(samples.into_iter().map(|s| s.seconds));
        rig.add_recorder();
        rig.wait_all_recording(Duration::from_secs(60)).await;
    }
    println!(
        "failover, SIGKILL → first segment bytes on the new recorder, lease {lease_seconds} s, {} camera moves over {kills} kills: p50 {:.2} s, p95 {:.2} s, max {:.2} s",
        all.len(),
        percentile(&all, 50.0),
        percentile(&all, 95.0),
        percentile(&all, 100.0)
    );
    println!(
        "of which SIGKILL → reassigned by the operator (lease expiry + detection): p50 {:.2} s, p95 {:.2} s, max {:.2} s",
        percentile(&reassigned, 50.0),
        percentile(&reassigned, 95.0),
        percentile(&reassigned, 100.0)
    );
    vigil_e2e::delete_namespace(&client, &rig.namespace).await;
}
