//! Coverage judged by the frames, not the keys (issue 18). Four cameras (H.264 and H.265, GOPs
//! of 1 and 2 s, one with AAC) record on four recorders, which are SIGKILLed at random moments:
//! one, two at once, two back to back. The camera simulator logs every frame it encoded and
//! burns its time into it; afterwards every stored segment is decoded and every frame's time
//! read. Checks, per camera, over the whole run:
//!
//! * every frame the camera produced is in the store, or lies in a window the recorders reported
//!   lost (a Backfill — here `Failed`/`NoEdgeStorage`, with `secondsLost`), to the second;
//! * every segment key's interval is covered by the segment's frames to within one frame
//!   (docs/storage.md), measured against the frames' burnt-in capture times.
//!
//! Wall time about 100 s. The longer form repeats the three rounds: `VIGIL_FRAME_ROUNDS=4
//! cargo test -p vigil-e2e --test frame_coverage -- --nocapture` (figures in
//! docs/benchmarks.md).

use std::ffi::OsStr;
use std::time::Duration;

use vigil_e2e::frame_check::{FrameSource, check_cameras, finished_backfills};
use vigil_e2e::rig::{Rig, RigConfig, busiest};
use vigil_e2e::*;
use vigil_testkit::{now_ms, read_store};

const FPS: i64 = 15;
const FRAME_MS: i64 = 1000 / FPS;
const WIDTH: u32 = 480;
const HEIGHT: u32 = 270;

/// camera i: codec, GOP in frames, audio.
fn camera_spec(i: usize, name: &str) -> String {
    let (codec, gop, audio) = [
        ("h264", 15, "none"),
        ("h265", 30, "none"),
        ("h264", 30, "aac"),
        ("h265", 15, "none"),
    ][i % 4];
    format!(
        "name={name},codec={codec},bitrate=500,fps={FPS},gop={gop},audio={audio},\
         width={WIDTH},height={HEIGHT}"
    )
}

#[tokio::test]
async fn every_frame_the_camera_produced_is_stored_or_reported_lost() {
    let client = client().await;
    let config = RigConfig {
        cameras: 4,
        recorders: 4,
        lease_seconds: 2,
        segment_seconds: 4,
        namespace_prefix: "vigil-e2e-frames",
    };
    let frame_log = std::env::temp_dir().join(format!("vigil-frame-log-{}", std::process::id()));
    let mut rig = Rig::start_with(
        client.clone(),
        &config,
        &camera_spec,
        &[OsStr::new("--frame-log"), frame_log.as_os_str()],
    )
    .await;
    rig.wait_all_recording(Duration::from_secs(90)).await;
    // Frames from here on must all be accounted for.
    let from_ms = now_ms();

    let repeats: usize = std::env::var("VIGIL_FRAME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rounds = [
        ("one", 1, Duration::ZERO),
        ("two at once", 2, Duration::ZERO),
        ("two back to back", 2, Duration::from_millis(800)),
    ];
    for (what, n, gap) in rounds.into_iter().cycle().take(3 * repeats) {
        let placed = rig.wait_all_recording(Duration::from_secs(60)).await;
        // A random moment inside a segment (the clock's milliseconds are random enough).
        let wait_ms = 500 + now_ms().rem_euclid(4000) as u64;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let victims = busiest(&placed, n);
        let victims: Vec<&str> = victims.iter().map(String::as_str).collect();
        println!("kill {what} at {}: {victims:?}", now_ms());
        for s in rig
            .kill_and_measure(&victims, gap, Duration::from_secs(40))
            .await
        {
            println!(
                "  {} {} -> {} recording again {:.2} s after the kill",
                s.camera, s.from, s.to, s.seconds
            );
        }
        for _ in 0..n {
            rig.add_recorder();
        }
    }
    rig.wait_all_recording(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_ms = now_ms();

    // Wait until every camera's segments reach past `to_ms` (closed and stored).
    wait_for(
        Duration::from_secs(30),
        "segments past the end of the run",
        || async {
            rig.cameras
                .iter()
                .all(|c| {
                    read_store(&rig.store, &rig.namespace, c)
                        .0
                        .last()
                        .is_some_and(|s| s.key.end_ms >= to_ms)
                })
                .then_some(())
        },
    )
    .await;
    // The recorders look for the take-over hole once a camera's first segment is stored and
    // create its Backfill within a status round (1 s); then every Backfill must be finished
    // (no edge storage: Failed at once, with secondsLost).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let lost = finished_backfills(&client, &rig.namespace).await;

    let src = FrameSource {
        store: &rig.store,
        namespace: &rig.namespace,
        frame_log: &frame_log,
        width: WIDTH,
        height: HEIGHT,
        frame_ms: FRAME_MS,
    };
    let failures = check_cameras(&src, &rig.cameras, from_ms, to_ms, &lost).failures;
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    delete_namespace(&client, &rig.namespace).await;
    let _ = std::fs::remove_dir_all(&frame_log);
}
