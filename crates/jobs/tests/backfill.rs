//! Backfill against the camera simulator's SD card and a real S3 server (moto).
//!
//! Two cameras (H.264 open; H.265 with user/password, so both the ONVIF WS-UsernameToken and
//! RTSP digest auth are exercised) are recorded into S3 with `record --config`; the recorder is
//! SIGKILLed and a fresh one (new buffer, as a replacement pod would have) starts ~10 s later.
//! `backfill --config … --onvif-device-url …` then fills the hole. Checks: the window is covered
//! to within one frame, every segment (live and backfilled) decodes, backfilled segments line
//! up with their live neighbours (no overlap beyond one frame, no hole), the report's
//! secondsRecovered equals the hole; a window before the SD card's oldest footage is reported
//! lost to the millisecond; a wrong password fails with a non-zero exit. The store, live and
//! backfilled segments alike, is also judged by its frames (`vigil_jobs::content`): every key
//! holds what it says. Motion (cam1) and the alarm input (cam2) raised during the outage are
//! recovered from the cameras' event logs (Profile G FindEvents) as event records with the
//! cameras' times, once only; a camera without FindEvents still has its footage backfilled.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use vigil_store::events::{EventItem, EventKey, EventRecord, EventType};
use vigil_store::intervals::{Interval, missing};
use vigil_store::layout::{CameraId, Origin};
use vigil_testkit::*;

const FPS: u32 = 25;

/// The simulator with an SD card.
fn start_sim(sd: &Path, cameras: &[&str]) -> Sim {
    let specs: Vec<String> = cameras.iter().map(|c| c.to_string()).collect();
    Sim::start_on("127.0.0.1", &specs, Some(sd), None)
}

fn rfc3339(ms: i64) -> String {
    vigil_jobs::backfill::rfc3339_ms(ms)
}

fn backfill(
    config: &Path,
    camera: &str,
    start: i64,
    end: i64,
    device: &str,
    env: &[(&str, &str)],
) -> (bool, serde_json::Value, String) {
    let out = Command::new(bin("vigil-jobs"))
        .args(["backfill", "--config"])
        .arg(config)
        .args([
            "--camera",
            camera,
            "--start",
            &rfc3339(start),
            "--end",
            &rfc3339(end),
        ])
        .args(["--onvif-device-url", device])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RUST_LOG", "info,vigil_recorder=debug")
        .envs(env.iter().copied())
        .output()
        .expect("run backfill");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.success(), report, log)
}

#[test]
fn backfill_fills_a_killed_recorders_hole_from_onvif_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd");
    let sim = start_sim(
        &sd,
        &[
            "name=cam1,codec=h264,bitrate=1000,fps=25,width=640,height=360,gop=25",
            "name=cam2,codec=h265,bitrate=800,fps=25,width=640,height=360,gop=25,user=admin,password=s3cret",
        ],
    );
    let moto = Moto::start();
    let device = format!("http://127.0.0.1:{}/onvif/device_service", sim.control_port);
    let config = |buf: &str| {
        write_config(
            tmp.path(),
            &format!(
                r#"
storage:
  s3: {{bucket: {BUCKET}, endpoint: "http://127.0.0.1:{port}", pathStyle: true}}
  prefix: bf
segmentSeconds: 4
buffer: {{dir: {buf}}}
# The simulator listens on loopback, which cameraNetworks must open explicitly.
cameraNetworks: {{allow: [127.0.0.1/32]}}
cameras:
  - {{namespace: site, name: cam1, url: "rtsp://127.0.0.1:{rtsp}/cam1/live"}}
  - {{namespace: site, name: cam2, url: "rtsp://127.0.0.1:{rtsp}/cam2/live", username: admin, password: s3cret}}
"#,
                port = moto.port,
                rtsp = sim.rtsp_port,
                buf = tmp.path().join(buf).display(),
            ),
        )
    };
    // Recorder 1 records ~12 s and is killed; its buffer is gone with it (a lost pod).
    let cfg = config("buf1");
    let mut rec1 = Recorder::start(&cfg, &[], &tmp.path().join("rec1.log"));
    thread::sleep(Duration::from_secs(12));
    rec1.proc.signal("KILL");
    rec1.proc.wait_timeout(Duration::from_secs(10));
    // While nothing records, cam1 sees motion and cam2's alarm input closes: only the
    // cameras' own event logs know (Profile G FindEvents is how the backfill gets them).
    let raise = |cam: &str, what: &str, on: bool| -> i64 {
        let body = http(
            "POST",
            sim.control_port,
            &format!("/cameras/{cam}/{what}?state={on}"),
            b"",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["time_ms"].as_i64().expect("event time")
    };
    thread::sleep(Duration::from_secs(2));
    let motion = (raise("cam1", "motion", true), 0);
    thread::sleep(Duration::from_secs(3));
    let motion = (motion.0, raise("cam1", "motion", false));
    let input = (raise("cam2", "input", true), 0);
    thread::sleep(Duration::from_secs(2));
    let input = (input.0, raise("cam2", "input", false));
    thread::sleep(Duration::from_secs(3));
    let cfg = config("buf2");
    let rec2 = Recorder::start(&cfg, &[], &tmp.path().join("rec2.log"));
    thread::sleep(Duration::from_secs(10));
    rec2.stop();

    for (cam, codec) in [("cam1", "h264"), ("cam2", "hevc")] {
        let before_dir = tmp.path().join(format!("before-{cam}"));
        moto.download(
            &format!("bf/site/{cam}"),
            &before_dir.join("site").join(cam),
        );
        let (live, _) = read_store(&before_dir, "site", cam);
        assert!(live.len() >= 3, "{cam}: too few live segments");
        let (first, last) = (live[0].key.start_ms, live[live.len() - 1].key.end_ms);
        let covered: Vec<Interval> = live
            .iter()
            .map(|s| Interval::new(s.key.start_ms, s.key.end_ms))
            .collect();
        let window = Interval::new(first, last);
        let hole = missing(window, &covered, 100);
        let hole_ms: i64 = hole.iter().map(|h| h.len_ms()).sum();
        assert!(
            (8_000..=20_000).contains(&hole_ms),
            "{cam}: hole of {hole_ms} ms ({hole:?})"
        );

        let (ok, report, log) = backfill(&cfg, &format!("site/{cam}"), first, last, &device, &[]);
        assert!(ok, "{cam}: backfill failed:\n{log}");
        let f = |k: &str| report[k].as_f64().unwrap_or(-1.0);
        println!(
            "{cam}: keys show {hole_ms} ms missing; the job found {} s",
            f("secondsMissingBefore")
        );
        // The job judges by the frames inside segments too: its edges are frame edges (up to a
        // frame either way of the keys'), and it may find more missing than the keys show (a
        // frame held over a second when the loaded encoder lagged).
        let frame_ms = f64::from(1000 / FPS);
        assert!(
            f("secondsMissingBefore") * 1000.0 >= hole_ms as f64 - frame_ms,
            "{cam}: keys show {hole_ms} ms missing: {report}"
        );
        assert_eq!(f("secondsLost"), 0.0, "{cam}: {report}\n{log}");
        assert_eq!(
            f("secondsRecovered"),
            f("secondsMissingBefore"),
            "{cam}: {report}"
        );

        // The store now covers the window to within one frame, and everything decodes and
        // tiles (no overlap beyond one frame, no hole).
        let after_dir = tmp.path().join(format!("after-{cam}"));
        moto.download(&format!("bf/site/{cam}"), &after_dir.join("site").join(cam));
        let (segs, gaps) = read_store(&after_dir, "site", cam);
        let backfilled: Vec<_> = segs
            .iter()
            .filter(|s| s.key.origin == Origin::Backfill)
            .collect();
        assert!(!backfilled.is_empty(), "{cam}: no backfill segments");
        let all: Vec<Interval> = segs
            .iter()
            .map(|s| Interval::new(s.key.start_ms, s.key.end_ms))
            .collect();
        assert!(
            missing(window, &all, 1000 / i64::from(FPS)).is_empty(),
            "{cam}: still missing {:?}",
            missing(window, &all, 40)
        );
        let listing: Vec<String> = segs
            .iter()
            .map(|s| format!("{}-{} {}", s.key.start_ms, s.key.end_ms, s.key.origin))
            .collect();
        let cov = check_camera(&segs, &[], FPS, codec);
        assert!(
            cov.holes.is_empty(),
            "{cam}: holes {:?} in {listing:#?}",
            cov.holes
        );
        assert!(
            cov.overlaps.is_empty(),
            "{cam}: overlaps {:?} in {listing:#?}",
            cov.overlaps
        );
        let _ = gaps;
        // Judged by their frames (the audit's and the backfill's reader, range requests on the
        // moof boxes), the live and backfilled segments hold what their keys say: no gap inside
        // a segment, no key misstating its content, and the window covered.
        let local = object_store::local::LocalFileSystem::new_with_prefix(&after_dir).unwrap();
        let content = rt()
            .block_on(vigil_jobs::content::covered(
                &local,
                "",
                &CameraId::new("site", cam).unwrap(),
                window,
            ))
            .unwrap();
        assert!(
            content.findings.is_empty(),
            "{cam}: segments disagree with their keys: {:?}",
            content.findings
        );
        assert!(
            missing(window, &content.covered, 1000 / i64::from(FPS)).is_empty(),
            "{cam}: frames missing {:?}",
            missing(window, &content.covered, 1000 / i64::from(FPS))
        );
        // The backfill segments' edges meet live segments (the hole's edges) within a frame.
        let bstart = backfilled[0].key.start_ms;
        let bend = backfilled[backfilled.len() - 1].key.end_ms;
        assert!(
            (bstart - hole[0].start).abs() <= 40,
            "{cam}: starts {bstart} vs hole {:?}",
            hole[0]
        );
        assert!(
            (bend - hole[hole.len() - 1].end).abs() <= 40,
            "{cam}: ends {bend} vs hole {:?}",
            hole
        );

        // The outage's event is in the store with the camera's times, queried the way the
        // access point's /events does, and its record says the backfill wrote it.
        let (kind, (on, off), source) = match cam {
            "cam1" => (EventType::Motion, motion, "cam1"),
            _ => (EventType::DigitalInput, input, "DI0"),
        };
        let cam_id = CameraId::new("site", cam).unwrap();
        let found = rt()
            .block_on(vigil_store::events::query(
                &local,
                "",
                &cam_id,
                window.start,
                window.end,
                None,
                100,
            ))
            .unwrap();
        assert_eq!(
            found,
            vec![EventItem {
                kind,
                start_ms: on,
                end_ms: off
            }],
            "{cam}: {report}\n{log}"
        );
        let key = EventKey::new(cam_id, on, off, kind).unwrap();
        let rec: EventRecord = serde_json::from_slice(
            &std::fs::read(after_dir.join(key.relative())).expect("event record"),
        )
        .unwrap();
        assert!(rec.complete && rec.recorder == "backfill", "{rec:?}");
        assert_eq!(rec.source.as_deref(), Some(source));
        assert_eq!(report["eventsFound"], 1, "{report}");
        assert_eq!(report["eventsWritten"], 1, "{report}");
        assert_eq!(report["eventSearchFailures"], 0, "{report}");

        // Running it again finds nothing to do, and writes no event twice.
        let (ok, again, log) = backfill(&cfg, &format!("site/{cam}"), first, last, &device, &[]);
        assert!(ok, "{log}");
        assert_eq!(again["secondsMissingBefore"].as_f64(), Some(0.0), "{again}");
        assert_eq!(again["eventsFound"], 1, "{again}");
        assert_eq!(again["eventsWritten"], 0, "{again}");
    }

    // Before the SD card's oldest footage: reported lost exactly, exit 0.
    let sd_json = http("GET", sim.control_port, "/cameras/cam1/sd", b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&sd_json).unwrap();
    let oldest = v[0]["start_ms"].as_i64().unwrap();
    let (ok, report, log) = backfill(
        &cfg,
        "site/cam1",
        oldest - 20_000,
        oldest - 5_000,
        &device,
        &[],
    );
    assert!(ok, "{log}");
    assert_eq!(report["secondsLost"].as_f64(), Some(15.0), "{report}");
    assert_eq!(report["secondsRecovered"].as_f64(), Some(0.0), "{report}");
    assert_eq!(report["stillMissing"].as_array().map(Vec::len), Some(1));

    // A window straddling the oldest footage: exactly the part before it is lost.
    let (ok, report, log) = backfill(
        &cfg,
        "site/cam1",
        oldest - 3_000,
        oldest + 3_000,
        &device,
        &[],
    );
    assert!(ok, "{log}");
    let lost = report["secondsLost"].as_f64().unwrap();
    assert!((lost - 3.0).abs() <= 0.1, "{report}");

    // Wrong camera password against the camera's own ONVIF device: it lists no recording to
    // these credentials; a fault worth a retry, not "lost".
    let cam2_device = format!(
        "http://127.0.0.1:{}/onvif/cam2/device_service",
        sim.control_port
    );
    let (ok, _, log) = backfill(
        &cfg,
        "site/cam2",
        oldest,
        oldest + 5_000,
        &cam2_device,
        &[
            ("VIGIL_CAMERA_USERNAME", "admin"),
            ("VIGIL_CAMERA_PASSWORD", "wrong"),
        ],
    );
    assert!(!ok, "a wrong password must fail:\n{log}");
    assert!(!log.contains("wrong"), "the password leaked into the log");
}

/// A camera that wants what Axis-style cameras want: Digest with `qop` on RTSP (SHA-256
/// offered first, nonces going stale every 3 requests) and on its ONVIF services (HTTP Digest
/// after a 401, SOAP answered chunked, over HTTPS with the camera's own CA). Without the CA
/// the backfill refuses the camera's certificate; with it, the window is recovered from the
/// SD card and decodes, and the simulator saw Digest responses with qop accepted (stale nonces
/// renewed, nothing refused).
#[test]
fn backfill_through_digest_qop_rtsp_and_chunked_digest_soap_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start_with(
        "127.0.0.1",
        &["name=cam4,codec=h264,bitrate=600,fps=25,width=320,height=240,gop=25,user=admin,password=s3cret".to_string()],
        Some(&tmp.path().join("sd")),
        Some(&tmp.path().join("sim.log")),
        &[
            "--sd-chunk-seconds",
            "2",
            "--rtsp-auth",
            "digest-qop",
            "--onvif-auth",
            "digest",
            "--onvif-chunked",
            "--onvif-https-port",
            "0",
            "--digest-nonce-uses",
            "3",
            // A camera without the Profile G event search.
            "--no-find-events",
        ],
    );
    let start = now_ms();
    let moto = Moto::start();
    let cfg = write_config(
        tmp.path(),
        &format!(
            r#"
storage:
  s3: {{bucket: {BUCKET}, endpoint: "http://127.0.0.1:{port}", pathStyle: true}}
  prefix: dq
segmentSeconds: 4
cameraNetworks: {{allow: [127.0.0.1/32]}}
buffer: {{dir: {buf}}}
cameras:
  - {{namespace: site, name: cam4, url: "rtsp://127.0.0.1:{rtsp}/cam4/live", username: admin, password: s3cret}}
"#,
            port = moto.port,
            rtsp = sim.rtsp_port,
            buf = tmp.path().join("buf").display(),
        ),
    );
    let https = sim.onvif_https_port.expect("simulator HTTPS port");
    let ca = sim.tls_ca.clone().expect("simulator CA");
    let device = format!("https://127.0.0.1:{https}/onvif/device_service");
    // 10 s of SD footage, of which the backfill asks for 8.
    thread::sleep(Duration::from_secs(12));
    let (from, to) = (start + 1_000, start + 9_000);

    let (ok, _, log) = backfill(&cfg, "site/cam4", from, to, &device, &[]);
    assert!(
        !ok,
        "a certificate from an unknown CA must be refused:\n{log}"
    );
    assert!(
        log.to_ascii_lowercase().contains("certificate") || log.contains("UnknownIssuer"),
        "the error should name the certificate:\n{log}"
    );

    let ca_env = ca.to_string_lossy().into_owned();
    let (ok, report, log) = backfill(
        &cfg,
        "site/cam4",
        from,
        to,
        &device,
        &[("VIGIL_ONVIF_TLS_CA_FILE", ca_env.as_str())],
    );
    assert!(ok, "backfill failed:\n{log}");
    let f = |k: &str| report[k].as_f64().unwrap_or(-1.0);
    assert_eq!(f("secondsMissingBefore"), 8.0, "{report}");
    assert_eq!(f("secondsLost"), 0.0, "{report}\n{log}");
    assert_eq!(f("secondsRecovered"), 8.0, "{report}");
    // No event search at this camera: counted, said why, the footage recovered all the same.
    assert_eq!(report["eventSearchFailures"], 1, "{report}");
    assert!(
        report["eventSearchError"]
            .as_str()
            .is_some_and(|e| e.contains("does not support FindEvents")),
        "{report}"
    );
    assert!(!log.contains("s3cret"), "the password leaked into the log");

    let dir = tmp.path().join("store");
    moto.download("dq/site/cam4", &dir.join("site").join("cam4"));
    let (segs, gaps) = read_store(&dir, "site", "cam4");
    assert!(
        segs.iter().all(|s| s.key.origin == Origin::Backfill),
        "{segs:?}"
    );
    let all: Vec<Interval> = segs
        .iter()
        .map(|s| Interval::new(s.key.start_ms, s.key.end_ms))
        .collect();
    assert!(
        missing(Interval::new(from, to), &all, 1000 / i64::from(FPS)).is_empty(),
        "still missing {:?}",
        missing(Interval::new(from, to), &all, 40)
    );
    let cov = check_camera(&segs, &gaps, FPS, "h264");
    assert!(cov.holes.is_empty() && cov.overlaps.is_empty(), "{cov:?}");

    let h = sim.health();
    let (rtsp, onvif) = (&h["rtsp_digest"], &h["onvif_digest"]);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    assert!(
        n(rtsp, "ok") >= 4,
        "RTSP Digest with qop never accepted: {h}"
    );
    assert!(
        n(rtsp, "stale") >= 1,
        "no stale RTSP nonce was renewed: {h}"
    );
    assert!(n(onvif, "ok") >= 3, "ONVIF HTTP Digest never accepted: {h}");
    assert!(
        n(onvif, "stale") >= 1,
        "no stale ONVIF nonce was renewed: {h}"
    );
    assert_eq!(n(rtsp, "refused") + n(onvif, "refused"), 0, "{h}");
}

/// The camera address policy on the backfill path: an ONVIF device URL or a playback template
/// naming a refused address (loopback here, not opened by the file's cameraNetworks) is never
/// connected to, and the report says why.
#[test]
fn refused_edge_addresses_are_never_connected_to() {
    let tmp = tempfile::tempdir().unwrap();
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let port = trap.local_addr().unwrap().port();
    let cfg = write_config(
        tmp.path(),
        &format!(
            "storage: {{local: {{path: {}}}}}\ncameras: []\n",
            tmp.path().join("store").display()
        ),
    );
    let end = now_ms() - 60_000;
    for args in [
        vec![
            "--onvif-device-url".to_string(),
            format!("http://localhost:{port}/onvif/device_service"),
        ],
        vec![
            "--playback-template".to_string(),
            format!("rtsp://127.0.0.1:{port}/pb?starttime={{start}}&endtime={{end}}"),
        ],
    ] {
        let out = Command::new(bin("vigil-jobs"))
            .args(["backfill", "--config"])
            .arg(&cfg)
            .args(["--camera", "site/cam1", "--start", &rfc3339(end - 20_000)])
            .args(["--end", &rfc3339(end)])
            .args(&args)
            .output()
            .expect("run backfill");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let errors = report["errors"].to_string();
        assert!(
            errors.contains("is not allowed: loopback"),
            "{args:?}: {report} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report["secondsRecovered"], 0.0, "{report}");
        assert!(
            matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{args:?}: the refused address was connected to"
        );
    }
}
