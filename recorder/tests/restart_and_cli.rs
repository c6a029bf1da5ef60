//! Crash safety, credentials hygiene and the command line.
//!
//! * `sigkill_loses_at_most_a_fragment`: the recorder is SIGKILLed in the middle of a segment
//!   and started again on the same buffer: the half-written segment is recovered up to its
//!   last fsync'd fragment and uploaded, and the restart is recorded as a gap.
//! * `credentials_never_leak`: a camera with a password (right and wrong) — the password shows
//!   up in no log line, metric or status.
//! * `command_line`: subcommands in --help, the file format in `record --help`, and a bad
//!   configuration is a clean error.

use std::process::Command;
use std::thread;
use std::time::Duration;

use vigil_store::gaps::GapReason;
use vigil_testkit::*;

const FPS: u32 = 25;

#[test]
fn sigkill_loses_at_most_a_fragment() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[format!(
        "name=hall,codec=h264,bitrate=1000,fps={FPS},width=640,height=360"
    )]);
    let store = tmp.path().join("store");
    let config = write_config(
        tmp.path(),
        &format!(
            "storage: {{local: {{path: {}}}}}\nbuffer: {{dir: {}}}\nsegmentSeconds: 20\ncameraNetworks: {{allow: [127.0.0.1/32]}}\ncameras:\n  - {{name: hall, url: \"{}\"}}\n",
            store.display(),
            tmp.path().join("buf").display(),
            sim.url("hall")
        ),
    );
    let log = tmp.path().join("recorder.log");
    let mut rec = Recorder::start(&config, &[], &log);
    // Mid-way through the first 20 s segment.
    thread::sleep(Duration::from_secs(8));
    rec.proc.signal("KILL");
    let killed_ms = now_ms();
    assert!(rec.proc.wait_timeout(Duration::from_secs(10)).is_some());
    let mut partial = Vec::new();
    walk_files(&tmp.path().join("buf/partial"), &mut partial);
    assert_eq!(
        partial.len(),
        1,
        "expected the segment being written: {partial:?}"
    );
    drop(rec);

    let rec = Recorder::start(&config, &[], &log);
    thread::sleep(Duration::from_secs(4));
    let text = rec.stop();
    assert!(
        text.contains("recovered a segment cut short by a restart"),
        "{text}"
    );

    let (segs, gaps) = read_store(&store, "default", "hall");
    assert!(segs.len() >= 2, "{segs:?}");
    let recovered = &segs[0];
    let p = probe(&recovered.path);
    let lost_ms = killed_ms - recovered.key.end_ms;
    eprintln!(
        "recovered {} ms ({} frames); the kill came {lost_ms} ms after its end",
        recovered.key.end_ms - recovered.key.start_ms,
        p.video_frames
    );
    // Fragments are 1 s and fsync'd, sockets are read every 250 ms: at most one fragment, one
    // read batch and a frame are lost (the bound is not below 0 by more than timing noise).
    assert!((-50..=1300).contains(&lost_ms), "lost {lost_ms} ms");
    assert!(p.video_frames >= 6 * FPS as u64);
    // The restart shows as a gap from the recovered end to the next footage.
    let restart: Vec<_> = gaps
        .iter()
        .filter(|g| g.reason == GapReason::RecorderRestart)
        .collect();
    assert_eq!(restart.len(), 1, "{gaps:?}");
    assert_eq!(restart[0].start_ms, recovered.key.end_ms);
    assert!((restart[0].end_ms - segs[1].key.start_ms).abs() <= 40);
    check_camera(&segs, &gaps, FPS, "h264");
}

#[test]
fn credentials_never_leak() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[
        format!(
            "name=safe,codec=h264,bitrate=500,fps={FPS},width=320,height=240,user=viewer,password=Sup3rSecretPw"
        ),
        format!(
            "name=wrong,codec=h264,bitrate=500,fps={FPS},width=320,height=240,user=guard,password=An0therSecret"
        ),
    ]);
    let url = |n: &str| {
        sim.url(n)
            .replace("rtsp://", "rtsp://viewer:Sup3rSecretPw@")
    };
    let config = write_config(
        tmp.path(),
        &format!(
            "storage: {{local: {{path: {}}}}}\nbuffer: {{dir: {}}}\ncameraNetworks: {{allow: [127.0.0.1/32]}}\ncameras:\n  - {{name: safe, url: \"{}\"}}\n  - {{name: wrong, url: \"{}\", username: guard, password: WrongPassw0rd}}\n",
            tmp.path().join("store").display(),
            tmp.path().join("buf").display(),
            url("safe"),
            sim.url("wrong"),
        ),
    );
    let rec = Recorder::start(&config, &[], &tmp.path().join("recorder.log"));
    assert!(wait_for(Duration::from_secs(15), || metric(
        &rec.metrics(),
        "vigil_recorder_segments_written_total",
        "camera=\"safe\""
    ) == 0.0
        && metric(
            &rec.metrics(),
            "vigil_recorder_bytes_in_total",
            "camera=\"safe\""
        ) > 0.0));
    thread::sleep(Duration::from_secs(3));
    let metrics = rec.metrics();
    let status = rec.get("/status").unwrap_or_default();
    let log = rec.stop();
    assert!(
        log.contains("401") || log.contains("Unauthorized") || log.contains("auth"),
        "the wrong password should be refused: {log}"
    );
    for secret in ["Sup3rSecretPw", "WrongPassw0rd", "An0therSecret"] {
        for (what, text) in [("log", &log), ("metrics", &metrics), ("status", &status)] {
            assert!(
                !text.contains(secret),
                "{secret} appears in the {what}:\n{text}"
            );
        }
    }
    assert!(status.contains("\"state\":\"Recording\""), "{status}");
}

#[test]
fn command_line() {
    let help = Command::new(bin("vigil-recorder"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("record"), "{help}");
    // Backfill, audit and retention are the jobs' binary; playback is the access point's.
    for (binary, subs) in [
        ("vigil-jobs", &["backfill", "audit", "retention"][..]),
        ("vigil-access", &["serve"][..]),
    ] {
        let out = Command::new(bin(binary)).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in subs {
            assert!(text.contains(sub), "{binary}: {text}");
        }
    }
    let rh = Command::new(bin("vigil-recorder"))
        .args(["record", "--help"])
        .output()
        .unwrap();
    let rh = String::from_utf8_lossy(&rh.stdout);
    assert!(
        rh.contains("segmentSeconds") && rh.contains("--buffer-dir") && rh.contains("POD_NAME"),
        "{rh}"
    );
    // A configuration mistake is a clean error, not a panic.
    let tmp = tempfile::tempdir().unwrap();
    let bad = write_config(
        tmp.path(),
        "storage: {local: {path: /tmp/x}}\ncameras: [{name: Bad_Name, url: 'rtsp://h/'}]\n",
    );
    let out = Command::new(bin("vigil-recorder"))
        .args(["record", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DNS-1123") && !err.contains("panicked"),
        "{err}"
    );
}

fn walk_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
