//! The event query (issue 17) against an S3 server given by its endpoint, at full size: 1,000
//! cameras × 30 days of event records (one every 2 h per camera, 360,000 records), then the
//! p50/p95 of one camera's query over 24 h and over 30 days, by each listing. Unlike
//! `recorder/examples/event_figures.rs` (moto, which reads every key of the bucket on each
//! LIST), this measures a server whose listing, like S3's, costs what the prefix holds.
//!
//! ```sh
//! node_modules/.bin/s3rver -d /tmp/s3 -p 4599 --configure-bucket vigil-events --silent &
//! VIGIL_S3_ENDPOINT=http://127.0.0.1:4599 cargo run --release -p vigil-store \
//!   --example event_query_s3 -- 1000 fill
//! ```
//! Credentials `S3RVER`/`S3RVER` unless `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` say
//! otherwise; bucket `vigil-events` unless `VIGIL_S3_BUCKET`. Without `fill` it queries what an
//! earlier run stored.

use std::time::Instant;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use vigil_store::events::{EventKey, EventRecord, EventType, Listing, query_listing};
use vigil_store::layout::CameraId;

const END_MS: i64 = 1_796_000_000_000;
const DAYS: i64 = 30;
const EVERY_MS: i64 = 7_200_000;

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn camera(c: usize) -> CameraId {
    CameraId::new("site", &format!("cam-{c:04}")).expect("a valid camera name")
}

async fn fill(store: &dyn ObjectStore, cameras: usize) -> u64 {
    let start_ms = END_MS - DAYS * 86_400_000;
    let mut keys = Vec::new();
    for c in 0..cameras {
        let cam = camera(c);
        let mut at = start_ms + (c as i64 * 7_919) % EVERY_MS;
        while at < END_MS {
            keys.push(EventKey::new(cam.clone(), at, at + 20_000, EventType::Motion).expect("key"));
            at += EVERY_MS;
        }
    }
    let n = keys.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    futures::stream::iter(keys)
        .map(|k| {
            let done = &done;
            async move {
                let body = serde_json::to_vec(&EventRecord::new(&k, None, true, "figures"))
                    .expect("a record serializes");
                store
                    .put(&Path::from(k.to_key("vigil")), PutPayload::from(body))
                    .await
                    .expect("put");
                let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if d.is_multiple_of(20_000) {
                    eprintln!("  {d} records stored");
                }
            }
        })
        .buffer_unordered(64)
        .for_each(|()| async {})
        .await;
    n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cameras: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let fill_first = std::env::args().nth(2).as_deref() == Some("fill");
    let endpoint = std::env::var("VIGIL_S3_ENDPOINT").expect("VIGIL_S3_ENDPOINT");
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(env("VIGIL_S3_BUCKET", "vigil-events"))
        .with_region("us-east-1")
        .with_access_key_id(env("AWS_ACCESS_KEY_ID", "S3RVER"))
        .with_secret_access_key(env("AWS_SECRET_ACCESS_KEY", "S3RVER"))
        .build()
        .expect("an S3 client");
    if fill_first {
        let t = Instant::now();
        let n = fill(&store, cameras).await;
        println!(
            "{endpoint}: {cameras} cameras x {DAYS} days, {n} records stored in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    for (name, len_ms, want) in [
        ("24 h", 86_400_000i64, 12usize),
        ("30 days", DAYS * 86_400_000, 360),
    ] {
        for (listing, n) in [
            (Listing::Range, 100),
            (Listing::Days, 30),
            (Listing::Hours, 5),
        ] {
            let mut ms = Vec::new();
            for i in 0..n {
                let cam = camera((i * 37) % cameras);
                let to = END_MS - (i as i64 % 5) * 3_600_000;
                let t = Instant::now();
                let got = query_listing(
                    &store,
                    "vigil",
                    &cam,
                    to - len_ms,
                    to,
                    None,
                    10_001,
                    listing,
                )
                .await
                .expect("query");
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(got.len().abs_diff(want) <= 3, "{} events", got.len());
            }
            println!(
                "query of one camera, {name} window, listing by {listing:?}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({n} queries; target p95 <= 200 ms)",
                pct(&mut ms, 0.5),
                pct(&mut ms, 0.95),
                pct(&mut ms, 1.0)
            );
        }
    }
}
