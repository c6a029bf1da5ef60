//! `Event` recording mode against the camera simulator's ONVIF event service (PullPoint) and
//! the real S3 server (moto): motion (and later the camera's digital input, an alarm contact)
//! raised and cleared through the simulator's control API is
//! recorded as `[event − pre, event end + post]` widened to at most one GOP on each side,
//! judged from the stored segments (their key times, every one decoded by ffprobe/ffmpeg), and
//! nothing else is stored. The simulator is then restarted on the same ports (it forgets the
//! subscription, as a rebooting camera does): the recorder subscribes again within 10 s of the
//! camera answering, and the next event is recorded. The event records are read back with the
//! store's event query, over S3.

use std::thread;
use std::time::{Duration, Instant};

use vigil_store::events::{EventType, query};
use vigil_store::layout::CameraId;
use vigil_testkit::*;

const FPS: u32 = 25;
/// 1 s GOPs.
const GOP: u32 = 25;
const GOP_MS: i64 = 1000;
const PRE_S: i64 = 3;
const POST_S: i64 = 2;
/// Live frames carry their receipt time at the recorder, the simulator's event times are its
/// wall clock: they differ by the stream's latency (a few hundred ms on loopback).
const SLACK_MS: i64 = 700;

fn camera_spec() -> String {
    format!("name=door,codec=h264,bitrate=500,fps={FPS},width=320,height=180,gop={GOP}")
}

fn motion(sim: &Sim, on: bool) -> i64 {
    sim.trigger("door", "motion", on)
}

fn trigger(sim: &Sim, what: &str, on: bool) -> i64 {
    sim.trigger("door", what, on)
}

fn subscriptions(sim: &Sim) -> i64 {
    sim.pullpoint_subscriptions()
}

#[test]
fn event_mode_records_around_events_and_survives_a_camera_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let sim = Sim::start_on(
        "127.0.0.1",
        &[camera_spec()],
        None,
        Some(&tmp.path().join("sim1.log")),
    );
    let (rtsp_port, control_port) = (sim.rtsp_port, sim.control_port);
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
storage:
  s3:
    bucket: {BUCKET}
    endpoint: http://127.0.0.1:{port}
    pathStyle: true
  prefix: ev
buffer: {{dir: {buf}}}
segmentSeconds: 4
cameraNetworks: {{allow: [127.0.0.1/32]}}
cameras:
  - namespace: site-a
    name: door
    url: "{url}"
    events: {{onvifUrl: "http://127.0.0.1:{control_port}/onvif/device_service", preSeconds: {PRE_S}, postSeconds: {POST_S}}}
"#,
            port = moto.port,
            buf = tmp.path().join("buf").display(),
            url = sim.url("door"),
        ),
    );
    let log = tmp.path().join("recorder.log");
    let rec = Recorder::start(
        &config,
        &["--reconnect-min-ms", "200", "--reconnect-max-ms", "1000"],
        &log,
    );
    assert!(
        wait_for(Duration::from_secs(15), || subscriptions(&sim) >= 1),
        "the recorder did not subscribe to the camera's events; log:\n{}",
        rec.log_text()
    );
    // No event for a while: nothing may be stored. Then one 4 s event.
    thread::sleep(Duration::from_secs(8));
    let t1 = motion(&sim, true);
    thread::sleep(Duration::from_secs(4));
    let t2 = motion(&sim, false);
    thread::sleep(Duration::from_millis(
        (POST_S * 1000 + 2 * GOP_MS + 1000) as u64,
    ));

    let source = |rec: &Recorder| rec.status()["cameras"][0]["eventSource"].clone();
    assert_eq!(source(&rec)["subscribed"], true, "{}", source(&rec));
    // The camera restarts (same addresses): its subscriptions are gone, and meanwhile the
    // recorder shows the subscription as stale (in Kubernetes mode: the Camera's
    // EventSubscription condition, see kubernetes.rs).
    drop(sim);
    assert!(
        wait_for(Duration::from_secs(10), || source(&rec)["subscribed"]
            == false),
        "the lost subscription is not shown: {}",
        source(&rec)
    );
    assert!(source(&rec)["lastError"].is_string(), "{}", source(&rec));
    thread::sleep(Duration::from_secs(2));
    let sim = Sim::start_with(
        "127.0.0.1",
        &[camera_spec()],
        None,
        Some(&tmp.path().join("sim2.log")),
        &[
            "--rtsp-port",
            &rtsp_port.to_string(),
            "--control-port",
            &control_port.to_string(),
        ],
    );
    let answering = Instant::now();
    assert!(
        wait_for(Duration::from_secs(20), || subscriptions(&sim) >= 1),
        "no subscription after the camera restart; log:\n{}",
        rec.log_text()
    );
    let resubscribed = answering.elapsed();
    eprintln!("re-subscribed {resubscribed:?} after the restarted camera answered");
    assert!(wait_for(
        Duration::from_secs(5),
        || source(&rec)["subscribed"] == true
    ));
    assert!(
        source(&rec)["subscriptions"].as_i64() >= Some(2),
        "{}",
        source(&rec)
    );
    assert!(
        resubscribed <= Duration::from_secs(10),
        "re-subscribed {resubscribed:?} after the camera answered (target ≤ 10 s)"
    );
    // Long enough for the stream to be back and the pre-event buffer to fill.
    thread::sleep(Duration::from_secs(PRE_S as u64 + 6));
    // This time the camera's alarm input (an ONVIF digital input) is the event.
    let t3 = trigger(&sim, "input", true);
    thread::sleep(Duration::from_secs(2));
    let t4 = trigger(&sim, "input", false);
    thread::sleep(Duration::from_millis(
        (POST_S * 1000 + 2 * GOP_MS + 1000) as u64,
    ));
    let log_text = rec.stop();

    let dest = tmp.path().join("dl");
    moto.download("ev", &dest);
    let (segs, _gaps) = read_store(&dest, "site-a", "door");
    for s in &segs {
        let p = probe(&s.path);
        assert_eq!(p.video_codec, "h264");
        let key_s = (s.key.end_ms - s.key.start_ms) as f64 / 1000.0;
        assert!(
            (p.video_seconds - key_s).abs() < 0.1,
            "{}: {} s of video in a {key_s} s key",
            s.key.relative(),
            p.video_seconds
        );
    }
    let got = runs(&segs);
    let want = [
        (t1 - PRE_S * 1000, t2 + POST_S * 1000),
        (t3 - PRE_S * 1000, t4 + POST_S * 1000),
    ];
    eprintln!("recorded runs {got:?}, wanted {want:?} (± one GOP)");
    assert_eq!(
        got.len(),
        2,
        "two recordings expected, got {got:?} (wanted {want:?}); log:\n{log_text}"
    );
    for ((gs, ge), (ws, we)) in got.iter().zip(want) {
        // Covers the window (to the latency) …
        assert!(*gs <= ws + SLACK_MS, "starts at {gs}, after {ws}");
        assert!(*ge >= we - SLACK_MS, "ends at {ge}, before {we}");
        // … and nothing outside it beyond one GOP.
        assert!(
            *gs >= ws - GOP_MS - SLACK_MS,
            "starts at {gs}, too early for {ws}"
        );
        assert!(
            *ge <= we + GOP_MS + SLACK_MS,
            "ends at {ge}, too late for {we}"
        );
    }

    // The events, through the store's query over S3.
    let cam = CameraId::new("site-a", "door").unwrap();
    let store = moto.store();
    let records = |kind| {
        let found = rt()
            .block_on(query(
                &store,
                "ev",
                &cam,
                t1 - 60_000,
                t4 + 60_000,
                Some(kind),
                100,
            ))
            .unwrap();
        found
            .iter()
            .map(|e| (e.start_ms, e.end_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        records(EventType::Motion),
        vec![(t1, t2)],
        "motion event records"
    );
    let times = records(EventType::DigitalInput);
    assert_eq!(times, vec![(t3, t4)], "digital-input event records");
    let none = rt()
        .block_on(query(&store, "ev", &cam, t2 + 1, t3, None, 100))
        .unwrap();
    assert!(none.is_empty(), "no event between the two: {none:?}");
}
