//! Placement benchmark: 10,000 cameras of 1–16 Mbit/s on 100 recorders.
//!
//! (a) full placement from scratch, (b) repair after one recorder is lost. Also prints, once,
//! how far the most loaded recorder is above the ideal (total / recorders).
//!
//! Run: `cargo bench -p vigil-operator --bench placement`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_operator::placement::{
    MoveReason, Placement, PlacementCamera, PlacementInput, PlacementRecorder, place,
};

const CAMERAS: usize = 10_000;
const RECORDERS: usize = 100;
const HEADROOM_PERCENT: u32 = 20;
const POOL: &str = "pool";

/// xorshift64: a seeded generator, so every run benchmarks the same cameras without a new
/// dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `low..=high` (modulo bias is irrelevant here).
    fn between(&mut self, low: u32, high: u32) -> u32 {
        let span = u64::from(high - low) + 1;
        low + (self.next() % span) as u32
    }
}

fn bitrates() -> Vec<u32> {
    let mut rng = XorShift(0x5eed_ca3e_2024_0004);
    (0..CAMERAS).map(|_| rng.between(1_000, 16_000)).collect()
}

/// Recorders whose normal limit (capacity minus headroom) is `slack` above the ideal load.
fn recorders(total_kbps: u64, slack: f64) -> Vec<PlacementRecorder> {
    let ideal = total_kbps as f64 / RECORDERS as f64;
    let capacity = ideal * slack / (1.0 - f64::from(HEADROOM_PERCENT) / 100.0);
    (0..RECORDERS)
        .map(|i| PlacementRecorder {
            id: format!("recorder-{i:03}"),
            capacity_kbps: capacity.ceil() as u32,
            healthy: true,
            draining: false,
        })
        .collect()
}

fn scratch_input(slack: f64) -> PlacementInput {
    let bitrates = bitrates();
    let total: u64 = bitrates.iter().map(|&b| u64::from(b)).sum();
    let cameras = bitrates
        .into_iter()
        .enumerate()
        .map(|(i, bitrate_kbps)| PlacementCamera {
            id: format!("site-{:02}/camera-{i:05}", i % 40),
            bitrate_kbps,
            current_recorder: None,
            pool: POOL.to_string(),
        })
        .collect();
    PlacementInput {
        pool: POOL.to_string(),
        cameras,
        recorders: recorders(total, slack),
        failover_headroom_percent: HEADROOM_PERCENT,
    }
}

/// The placed pool with one recorder lost.
fn repair_input(scratch: &PlacementInput, placed: &Placement, lost: &str) -> PlacementInput {
    let mut input = scratch.clone();
    for camera in &mut input.cameras {
        camera.current_recorder = placed.assignments.get(&camera.id).cloned();
    }
    for recorder in &mut input.recorders {
        recorder.healthy = recorder.id != lost;
    }
    input
}

fn report(label: &str, placement: &Placement) {
    let balance = placement.balance();
    let lost_moves = placement
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::RecorderLost)
        .count();
    println!(
        "placement balance [{label}]: {} placed, {} unplaced, {} moves ({} recorder-lost); \
         total {} kbit/s on {} recorders, ideal {:.0} kbit/s, max {} kbit/s, max/ideal {:.4}",
        placement.assignments.len(),
        placement.unplaced.len(),
        placement.moves.len(),
        lost_moves,
        balance.total_kbps,
        balance.healthy_recorders,
        balance.ideal_kbps,
        balance.max_kbps,
        balance.max_over_ideal,
    );
}

fn bench_placement(c: &mut Criterion) {
    // Normal limit 20 % above the ideal load (capacity 50 % above it with 20 % headroom).
    let scratch = scratch_input(1.2);
    let placed = place(&scratch);
    let repair = repair_input(&scratch, &placed, "recorder-042");
    let repaired = place(&repair);
    report("full, normal limit = 1.20 x ideal", &placed);
    report("repair, recorder-042 lost", &repaired);
    // A tight pool: the normal limit only 0.5 % above the ideal load, so the lost recorder's
    // cameras no longer fit under the normal limits and go into the failover headroom.
    let tight = scratch_input(1.005);
    let tight_placed = place(&tight);
    report("full, normal limit = 1.005 x ideal", &tight_placed);
    let tight_repaired = place(&repair_input(&tight, &tight_placed, "recorder-042"));
    report(
        "repair of the tight pool, recorder-042 lost",
        &tight_repaired,
    );
    let above_normal_limit = tight_repaired
        .loads
        .iter()
        .filter(|l| l.load_kbps > u64::from(l.normal_limit_kbps))
        .count();
    println!("placement balance [tight repair]: {above_normal_limit} recorders use their headroom");

    c.bench_function("placement/full_10000_cameras_100_recorders", |b| {
        b.iter(|| place(black_box(&scratch)))
    });
    c.bench_function("placement/repair_one_recorder_lost", |b| {
        b.iter(|| place(black_box(&repair)))
    });
}

criterion_group!(benches, bench_placement);
criterion_main!(benches);
