//! The recorder against a real S3 server (moto) whose endpoint goes away.
//!
//! * `outage_is_buffered_and_nothing_is_lost`: two cameras for a minute (`VIGIL_TEST_SECONDS`);
//!   the S3 endpoint refuses connections for 15 s (`VIGIL_TEST_OUTAGE_SECONDS`) in the middle.
//!   Segments wait in the buffer (its metrics move) and reach the bucket in order afterwards;
//!   the bucket's segments tile both cameras without holes.
//! * `full_buffer_drops_oldest_and_records_the_loss`: with a tiny buffer and S3 down, the
//!   oldest footage is dropped, counted, and recorded as gap records that, together with the
//!   segments that survived, tile the camera's time line.

use std::thread;
use std::time::{Duration, Instant};

use vigil_store::gaps::GapReason;
use vigil_testkit::*;

const FPS: u32 = 25;

fn s3_config(
    dir: &std::path::Path,
    proxy: &Proxy,
    prefix: &str,
    cams: &[(&str, String)],
    extra: &str,
) -> std::path::PathBuf {
    let mut cameras = String::new();
    for (name, url) in cams {
        cameras.push_str(&format!(
            "  - {{namespace: lot, name: {name}, url: \"{url}\"}}\n"
        ));
    }
    write_config(
        dir,
        &format!(
            r#"
storage:
  s3:
    bucket: {BUCKET}
    endpoint: http://127.0.0.1:{port}
    pathStyle: true
  prefix: {prefix}
buffer: {{dir: {buf}}}
{extra}
# The simulator listens on loopback, which cameraNetworks must open explicitly.
cameraNetworks: {{allow: [127.0.0.1/32]}}
cameras:
{cameras}"#,
            port = proxy.port,
            buf = dir.join("buf").display(),
        ),
    )
}

#[test]
fn outage_is_buffered_and_nothing_is_lost() {
    let total = test_seconds();
    let outage: u64 = std::env::var("VIGIL_TEST_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let sim = Sim::start(&[
        format!("name=gate,codec=h264,bitrate=1500,fps={FPS},width=640,height=360"),
        format!("name=yard,codec=h265,bitrate=1500,fps={FPS},width=640,height=360"),
    ]);
    let config = s3_config(
        tmp.path(),
        &proxy,
        "outage",
        &[("gate", sim.url("gate")), ("yard", sim.url("yard"))],
        "segmentSeconds: 4",
    );
    let rec = Recorder::start(&config, &[], &tmp.path().join("recorder.log"));
    let started = Instant::now();
    thread::sleep(Duration::from_secs(total * 3 / 10));
    proxy.down();
    let down_at = Instant::now();
    let mut max_buffer = 0.0f64;
    let mut max_objects = 0.0f64;
    while down_at.elapsed() < Duration::from_secs(outage) {
        let m = rec.metrics();
        max_buffer = max_buffer.max(metric(&m, "vigil_recorder_buffer_bytes", ""));
        max_objects = max_objects.max(metric(&m, "vigil_recorder_buffer_objects", ""));
        thread::sleep(Duration::from_millis(500));
    }
    let during = rec.metrics();
    proxy.up();
    // The backlog drains once the store is back.
    assert!(
        wait_for(Duration::from_secs(30), || metric(
            &rec.metrics(),
            "vigil_recorder_buffer_objects",
            ""
        ) == 0.0),
        "buffer did not drain; log:\n{}",
        rec.log_text()
    );
    let rest = Duration::from_secs(total).saturating_sub(started.elapsed());
    thread::sleep(rest.max(Duration::from_secs(5)));
    let after = rec.metrics();
    let log = rec.stop();

    eprintln!(
        "outage of {outage} s: buffer peaked at {max_objects} objects / {max_buffer} bytes; {} upload errors",
        metric(&during, "vigil_recorder_upload_errors_total", "")
    );
    assert!(
        max_buffer > 0.0 && max_objects >= 2.0,
        "buffer never filled during the outage"
    );
    assert!(metric(&during, "vigil_recorder_upload_errors_total", "") >= 1.0);
    assert_eq!(
        metric(&after, "vigil_recorder_dropped_bytes_total", ""),
        0.0
    );
    // No footage was left behind in the buffer (`lock` is the buffer directory's owner lock,
    // which stays by design so that a second recorder cannot share the directory).
    let buf = tmp.path().join("buf");
    let mut left = Vec::new();
    collect_files(&buf, &mut left);
    left.retain(|p| p != &buf.join("lock"));
    assert!(left.is_empty(), "buffer not empty after shutdown: {left:?}");

    let dl = tmp.path().join("bucket");
    moto.download("outage", &dl);
    for (cam, codec) in [("gate", "h264"), ("yard", "hevc")] {
        let (segs, gaps) = read_store(&dl, "lot", cam);
        let c = check_camera(&segs, &gaps, FPS, codec);
        eprintln!(
            "{cam}: {} segments, {:.1} s of footage over {:.1} s, holes {:?}",
            segs.len(),
            c.footage_ms as f64 / 1000.0,
            (c.last_ms - c.first_ms) as f64 / 1000.0,
            c.holes
        );
        assert!(c.holes.is_empty() && c.overlaps.is_empty(), "{cam}: {c:?}");
        assert!(
            c.explained.is_empty(),
            "{cam}: the outage must not cost footage: {:?}",
            c.explained
        );
        assert!(
            gaps.iter().all(|g| g.reason == GapReason::Startup),
            "{gaps:?}"
        );
        let uploaded = metric(
            &after,
            "vigil_recorder_segments_uploaded_total",
            &format!("camera=\"{cam}\""),
        );
        assert!(
            uploaded >= segs.len() as f64 - 1.0,
            "{cam}: {uploaded} uploads for {} segments",
            segs.len()
        );
    }
    assert!(!log.contains("panicked"));
}

#[test]
fn full_buffer_drops_oldest_and_records_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    proxy.down();
    let sim = Sim::start(&[format!(
        "name=dock,codec=h264,bitrate=1000,fps={FPS},width=640,height=360"
    )]);
    // 2 s segments of a 1 Mbit/s stream are ~250 kB: the buffer holds about two.
    let config = s3_config(
        tmp.path(),
        &proxy,
        "overflow",
        &[("dock", sim.url("dock"))],
        "segmentSeconds: 2",
    );
    let rec = Recorder::start(
        &config,
        &["--buffer-max-bytes", "600000"],
        &tmp.path().join("recorder.log"),
    );
    thread::sleep(Duration::from_secs(16));
    let during = rec.metrics();
    proxy.up();
    assert!(
        wait_for(Duration::from_secs(30), || metric(
            &rec.metrics(),
            "vigil_recorder_buffer_objects",
            ""
        ) == 0.0),
        "buffer did not drain; log:\n{}",
        rec.log_text()
    );
    thread::sleep(Duration::from_secs(4));
    let after = rec.metrics();
    rec.stop();

    let dropped_bytes = metric(
        &after,
        "vigil_recorder_dropped_bytes_total",
        "camera=\"dock\"",
    );
    let dropped_segs = metric(
        &after,
        "vigil_recorder_dropped_segments_total",
        "camera=\"dock\"",
    );
    eprintln!(
        "dropped {dropped_segs} segments, {dropped_bytes} bytes; buffer at the end of the outage: {} bytes",
        metric(&during, "vigil_recorder_buffer_bytes", "")
    );
    assert!(dropped_segs >= 3.0, "expected drops: {after}");
    assert!(metric(&during, "vigil_recorder_buffer_bytes", "") <= 600_000.0 + 2000.0);

    let dl = tmp.path().join("bucket");
    moto.download("overflow", &dl);
    let (segs, gaps) = read_store(&dl, "lot", "dock");
    let overflow: Vec<_> = gaps
        .iter()
        .filter(|g| g.reason == GapReason::BufferOverflow)
        .collect();
    assert!(!overflow.is_empty(), "{gaps:?}");
    // The accounting in the gap records matches the metrics.
    let recorded: u64 = overflow.iter().map(|g| g.dropped_bytes.unwrap_or(0)).sum();
    assert_eq!(recorded as f64, dropped_bytes);
    // The oldest footage went first: every overflow gap precedes the surviving segments of
    // the outage, and segments plus gaps tile the time line.
    let c = check_camera(&segs, &gaps, FPS, "h264");
    let mut items: Vec<(i64, i64)> = segs
        .iter()
        .map(|s| (s.key.start_ms, s.key.end_ms))
        .collect();
    items.extend(gaps.iter().map(|g| (g.start_ms, g.end_ms)));
    items.sort();
    for w in items.windows(2) {
        assert!(
            (w[1].0 - w[0].1).abs() <= 40,
            "hole or overlap between {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    assert!(c.holes.is_empty(), "{:?}", c.holes);
    eprintln!(
        "{} segments survived, {} overflow gap records covering {:.1} s",
        segs.len(),
        overflow.len(),
        overflow.iter().map(|g| g.seconds).sum::<f64>()
    );
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
