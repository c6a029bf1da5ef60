//! What judging coverage by the frames costs the audit (issue 18), against its baseline, the
//! key listing alone. Writes an hour of one camera's 10 s segments (15 fps, 1 s fragments,
//! ~1 Mbit/s of sample data, as the recorder writes them) to a local store, then times
//! `catalog::segments` (keys) and `content::covered` (keys + every segment's moof timing).
//!
//! `cargo run --release -p vigil-jobs --example content_cost [hours]`

use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use vigil_media::mp4::{SampleInfo, TrackRun, VideoTrack, init_segment, mdat_header, moof};
use vigil_store::catalog;
use vigil_store::intervals::Interval;
use vigil_store::layout::{CameraId, Origin, SegmentKey};

fn segment() -> Vec<u8> {
    let video = VideoTrack {
        sample_entry: b"\0\0\0\x08avc1".to_vec(),
        width: 1280,
        height: 720,
    };
    let mut data = init_segment(&video, None, 0);
    for f in 0..10u32 {
        let samples: Vec<SampleInfo> = (0..15)
            .map(|i| SampleInfo {
                duration: 6000,
                size: if i == 0 { 40_000 } else { 6_000 },
                sync: i == 0,
            })
            .collect();
        let bytes: u32 = samples.iter().map(|s| s.size).sum();
        data.extend(moof(
            f + 1,
            &[TrackRun {
                track_id: 1,
                base_decode_time: u64::from(f) * 90_000,
                samples: &samples,
                sample_flags: true,
            }],
        ));
        data.extend(mdat_header(bytes));
        data.extend(std::iter::repeat_n(0u8, bytes as usize));
    }
    data
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hours: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let cam = CameraId::new("bench", "cam").expect("camera");
    let seg = segment();
    let start = 1_767_322_800_000i64;
    let end = start + hours * 3_600_000;
    let mut t = start;
    while t < end {
        let key = SegmentKey::new(cam.clone(), t, t + 10_000, Origin::Live)
            .expect("key")
            .to_key("");
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &seg).expect("write");
        t += 10_000;
    }
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
    let window = Interval::new(start, end);
    for round in 0..2 {
        let t0 = Instant::now();
        let keys = catalog::segments(store.as_ref(), "", &cam, window)
            .await
            .expect("list");
        let keys_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let c = vigil_jobs::content::covered(store.as_ref(), "", &cam, window)
            .await
            .expect("judge");
        let content_s = t0.elapsed().as_secs_f64();
        assert!(c.findings.is_empty() && c.covered == vec![window]);
        println!(
            "round {round}: {} segments of {} bytes ({} fragments each): keys only {:.3} s; \
             by frames {:.3} s ({:.2} ms a segment, ~{} ranged reads of <= 8 KiB)",
            keys.len(),
            seg.len(),
            10,
            keys_s,
            content_s,
            content_s * 1000.0 / keys.len() as f64,
            keys.len() * 10
        );
    }
}
