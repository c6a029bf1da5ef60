//! Figures for `Event` mode (docs/benchmarks.md, issue 17):
//!
//! 1. Pre-event buffer memory of one 4 Mbit/s camera with `preSeconds: 60` (25 fps, 1 s GOPs,
//!    keyframes 3× a P frame): the gate's held bytes, peak over 10 minutes of stream, and the
//!    process's resident memory growth, against the baseline of 60 s of stream (30 MB).
//! 2. The event query (`vigil_store::events::query`, what `/events` runs) over a store holding
//!    30 days of events of 1,000 cameras (one event every 2 hours per camera, 360,000 records),
//!    in object_store's in-memory store: p50/p95 of a 24-hour and of a 30-day query of one
//!    camera. This is the listing and parsing cost; an S3 store adds one LIST round trip per hour
//!    directory (issued concurrently).
//!
//! 3. With `s3`: the same store in a real S3 server (moto, the one the tests use, started by the
//!    test kit), filled through object_store with real record bodies, and the same queries
//!    listed three ways — hour by hour (721 LISTs for 30 days, the old way), by whole days
//!    where a day needs 4 hours or more (`vigil_store::events::list_prefixes`, 31–32 LISTs) and
//!    as one key-ordered listing from the window's first hour (`Listing::Range`, S3
//!    `start-after`, stopped at the window's end: one LIST here), what `query` now does on S3.
//!
//! 4. With `prebuf-rss`: the pre-event buffer of item 1 (60 s, 4 Mbit/s, 10 minutes of
//!    stream, then an event) in two child processes, one keeping it all in memory and one with
//!    the spill (`--prebuffer-memory-bytes` 1 MiB: the gate's spilled GOPs appended to, trimmed
//!    in and read back from a `SpillStore` file in a temporary directory, as the camera task
//!    does): each child's peak RSS (VmHWM) while waiting and after the event's read-back.
//!
//! `cargo run --release -p vigil-recorder --example event_figures [cameras] [s3|prebuf-rss]`

use std::time::Instant;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use vigil_media::segmenter::VideoIn;
use vigil_recorder::event_gate::{EventGate, Item, Out};
use vigil_recorder::prebuf_spill::SpillStore;
use vigil_store::events::{EventKey, EventRecord, EventType, Listing, query, query_listing};
use vigil_store::layout::CameraId;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn prebuffer() {
    const FPS: i64 = 25;
    let bytes_per_s: usize = 4_000_000 / 8;
    // GOP of 25: one keyframe of 3 units, 24 P frames of 1 unit.
    let unit = bytes_per_s / 27;
    let mut gate = EventGate::new(60, 10, EventGate::bound_for(60));
    let rss0 = rss_bytes();
    let mut peak = 0usize;
    let mut peak_rss = 0u64;
    let mut out: Vec<Out> = Vec::new();
    for n in 0..(600 * FPS) {
        let key = n % FPS == 0;
        gate.video(
            VideoIn {
                ts: n * 3600,
                key,
                new_params: false,
                data: vec![(n % 251) as u8; if key { 3 * unit } else { unit }],
            },
            &mut out,
        );
        assert!(out.is_empty(), "no event: nothing leaves the gate");
        peak = peak.max(gate.stats().buffered_bytes);
        if n % FPS == 0 {
            peak_rss = peak_rss.max(rss_bytes());
        }
    }
    let baseline = 60 * bytes_per_s;
    println!(
        "pre-event buffer, 4 Mbit/s, preSeconds 60: peak held {:.1} MB (baseline 60 s of stream = {:.1} MB, ratio {:.3}); RSS growth {:.1} MB; bound {:.0} MB",
        peak as f64 / 1e6,
        baseline as f64 / 1e6,
        peak as f64 / baseline as f64,
        peak_rss.saturating_sub(rss0) as f64 / 1e6,
        EventGate::bound_for(60) as f64 / 1e6
    );
}

/// `VmHWM` (peak resident set) of this process, bytes.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One child of `prebuf-rss`: `mem` bytes in memory (`usize::MAX`: no spill).
fn prebuffer_child(mem: usize) {
    const FPS: i64 = 25;
    let bytes_per_s: usize = 4_000_000 / 8;
    let unit = bytes_per_s / 27;
    let tmp = tempfile::tempdir().expect("temporary directory");
    let cam = CameraId::new("bench", "cam").expect("camera id");
    let mut store = SpillStore::new(tmp.path(), &cam);
    let mut gate = EventGate::with_spill(60, 10, EventGate::bound_for(60), mem);
    let mut out: Vec<Out> = Vec::new();
    let (mut peak_mem, mut peak_spill) = (0usize, 0usize);
    let mut released = 0usize;
    let frames = 600 * FPS;
    for n in 0..frames + FPS {
        if n == frames {
            gate.begin(n * 3600, &mut out);
        }
        let key = n % FPS == 0;
        gate.video(
            VideoIn {
                ts: n * 3600,
                key,
                new_params: false,
                data: vec![(n % 251) as u8; if key { 3 * unit } else { unit }],
            },
            &mut out,
        );
        for o in out.drain(..) {
            match o {
                Out::Spill(g) => store.append(&g).expect("spill write"),
                Out::SpillTrim { keep_from_ts } => store.trim(keep_from_ts),
                Out::Unspill { from_ts } => {
                    let (items, err) = store.take_from(from_ts);
                    assert!(err.is_none(), "spill read");
                    released += items.iter().map(Item::bytes).sum::<usize>();
                }
                Out::Video(v) => released += v.data.len(),
                Out::Audio(_) | Out::Finish => {}
            }
        }
        let s = gate.stats();
        peak_mem = peak_mem.max(s.buffered_bytes);
        peak_spill = peak_spill.max(s.spilled_bytes);
        if n == frames - 1 {
            println!("waiting {}", peak_rss_bytes());
        }
    }
    println!("event {}", peak_rss_bytes());
    println!("held {peak_mem} {peak_spill} {released}");
}

/// Item 4: both children, same run.
fn prebuffer_rss() {
    let exe = std::env::current_exe().expect("own path");
    for (name, mem) in [
        ("all in memory", usize::MAX),
        ("spill, 16 MiB (default)", 16 << 20),
        ("spill, 1 MiB", 1 << 20),
    ] {
        let o = std::process::Command::new(&exe)
            .args(["0", "prebuf-child", &mem.to_string()])
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&o.stdout);
        let get = |k: &str| -> Vec<f64> {
            text.lines()
                .find(|l| l.starts_with(k))
                .map(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (w, e, h) = (get("waiting"), get("event"), get("held"));
        if w.is_empty() || e.is_empty() || h.len() < 3 {
            println!(
                "{name}: child failed: {text} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            continue;
        }
        println!(
            "prebuffer 60 s of 4 Mbit/s, {name}: peak RSS waiting {:.1} MB, after the event's read-back {:.1} MB; gate held ≤ {:.1} MB in memory, ≤ {:.1} MB spilled; released at the event {:.1} MB",
            w[0] / 1e6,
            e[0] / 1e6,
            h[0] / 1e6,
            h[1] / 1e6,
            h[2] / 1e6
        );
    }
}

fn p(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

async fn fill(store: &dyn ObjectStore, cameras: usize, start_ms: i64, end_ms: i64) -> u64 {
    use futures::StreamExt;
    let mut keys = Vec::new();
    for c in 0..cameras {
        let cam = CameraId::new("site", &format!("cam-{c:04}")).unwrap();
        let mut at = start_ms + (c as i64 * 7_919) % 7_200_000;
        while at < end_ms {
            keys.push(EventKey::new(cam.clone(), at, at + 20_000, EventType::Motion).unwrap());
            at += 7_200_000;
        }
    }
    let n = keys.len() as u64;
    futures::stream::iter(keys)
        .map(|k| async move {
            let body = serde_json::to_vec(&EventRecord::new(&k, None, true, "figures")).unwrap();
            store
                .put(&Path::from(k.to_key("vigil")), PutPayload::from(body))
                .await
                .unwrap();
        })
        .buffer_unordered(32)
        .for_each(|()| async {})
        .await;
    n
}

fn s3_queries(cameras: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let end_ms: i64 = 1_796_000_000_000;
    let days = 30;
    let start_ms = end_ms - days * 86_400_000;
    // A moto already filled by an earlier run (its port as the third argument): only the
    // 30-day queries, the fast listings first.
    let reuse: Option<u16> = std::env::args().nth(3).and_then(|a| a.parse().ok());
    let (_moto, store) = match reuse {
        Some(port) => (
            None,
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(format!("http://127.0.0.1:{port}"))
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_bucket_name(vigil_testkit::BUCKET)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .unwrap(),
        ),
        None => {
            let moto = vigil_testkit::Moto::start();
            let store = moto.store();
            let t = Instant::now();
            let records = rt.block_on(fill(&store, cameras, start_ms, end_ms));
            println!(
                "S3 (moto) event store: {cameras} cameras x {days} days, {records} records (filled in {:.0} s)",
                t.elapsed().as_secs_f64()
            );
            (Some(moto), store)
        }
    };
    // Fewer samples of the slow ways (moto scans its whole bucket on each LIST).
    type Plan = Vec<(&'static str, i64, usize, Vec<(Listing, usize)>)>;
    let plan: Plan = match reuse {
        Some(_) => vec![(
            "30 days",
            days * 86_400_000,
            360,
            vec![
                (Listing::Range, 50),
                (Listing::Days, 10),
                (Listing::Hours, 1),
            ],
        )],
        None => vec![
            (
                "24 h",
                86_400_000i64,
                12usize,
                vec![
                    (Listing::Hours, 20),
                    (Listing::Days, 50),
                    (Listing::Range, 50),
                ],
            ),
            (
                "30 days",
                days * 86_400_000,
                360,
                vec![
                    (Listing::Hours, 5),
                    (Listing::Days, 20),
                    (Listing::Range, 50),
                ],
            ),
        ],
    };
    for (name, len_ms, want, runs) in plan {
        for (listing, n) in runs {
            let mut ms = Vec::new();
            for i in 0..n {
                let cam = CameraId::new("site", &format!("cam-{:04}", (i * 37) % cameras)).unwrap();
                let to = end_ms - (i as i64 % 5) * 3_600_000;
                let t = Instant::now();
                let got = rt
                    .block_on(query_listing(
                        &store,
                        "vigil",
                        &cam,
                        to - len_ms,
                        to,
                        None,
                        10_001,
                        listing,
                    ))
                    .unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(got.len().abs_diff(want) <= 3, "{} events", got.len());
            }
            println!(
                "S3 (moto) query of one camera, {name} window, listing by {listing:?}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({n} queries; target p95 <= 200 ms)",
                p(&mut ms, 0.5),
                p(&mut ms, 0.95),
                p(&mut ms, 1.0)
            );
        }
    }
}

fn queries(cameras: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = InMemory::new();
    let end_ms: i64 = 1_796_000_000_000;
    let days = 30;
    let start_ms = end_ms - days * 86_400_000;
    let t = Instant::now();
    let mut records = 0u64;
    rt.block_on(async {
        for c in 0..cameras {
            let cam = CameraId::new("site", &format!("cam-{c:04}")).unwrap();
            let mut at = start_ms + (c as i64 * 7_919) % 7_200_000;
            while at < end_ms {
                let k = EventKey::new(cam.clone(), at, at + 20_000, EventType::Motion).unwrap();
                store
                    .put(
                        &Path::from(k.to_key("vigil")),
                        PutPayload::from_static(b"{}"),
                    )
                    .await
                    .unwrap();
                records += 1;
                at += 7_200_000;
            }
        }
    });
    println!(
        "event store: {cameras} cameras x {days} days, {records} records (filled in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    for (name, len_ms, want) in [
        ("24 h", 86_400_000i64, 12usize),
        ("30 days", days * 86_400_000, 360),
    ] {
        let mut ms = Vec::new();
        for i in 0..200 {
            let cam = CameraId::new("site", &format!("cam-{:04}", (i * 37) % cameras)).unwrap();
            let to = end_ms - (i as i64 % 5) * 3_600_000;
            let t = Instant::now();
            let got = rt
                .block_on(query(&store, "vigil", &cam, to - len_ms, to, None, 10_001))
                .unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(got.len().abs_diff(want) <= 3, "{} events", got.len());
        }
        println!(
            "query of one camera, {name} window: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (200 queries; target p95 <= 200 ms)",
            p(&mut ms, 0.5),
            p(&mut ms, 0.95),
            p(&mut ms, 1.0)
        );
    }
}

fn main() {
    let cameras = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    if std::env::args().nth(2).as_deref() == Some("prebuf-child") {
        let mem = std::env::args()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or(usize::MAX);
        prebuffer_child(mem);
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("prebuf-rss") {
        prebuffer_rss();
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("s3") {
        s3_queries(cameras);
        return;
    }
    prebuffer();
    queries(cameras);
}
