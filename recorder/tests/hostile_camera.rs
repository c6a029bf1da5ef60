//! Hostile cameras cannot take the recorder down (issue 12): three RTSP servers written to hurt
//! the client — an H.264 FU-A fragment that never ends, a response announcing a 1 GiB body, and
//! endless header lines — recorded by the same recorder process as a healthy simulator camera.
//! The recorder's peak resident memory (VmHWM) must stay bounded, the healthy camera must keep
//! recording playable segments, and each hostile camera must end up quarantined with a short
//! message of the recorder's own words.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use vigil_testkit::*;

/// Peak RSS allowed for the whole recorder process (debug build): one healthy 640x360 camera
/// alone peaks at about 27 MiB, and each hostile camera may cost at most 16 MiB more
/// (27 + 3 × 16 = 75; measured 33 MiB). Without the limits, the endless FU-A camera alone took a
/// recorder to 281 MiB in 20 s and the 1 GiB body to 1.5 GiB in 11 s (docs/benchmarks.md,
/// "Hostile cameras").
const MAX_HWM_KIB: u64 = 64 * 1024;

/// What a hostile server does once a client connects.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Plays, then sends one FU-A fragmented NAL whose end fragment never comes.
    EndlessFuA,
    /// Answers DESCRIBE with `Content-Length: 1073741824` and then sends that body.
    HugeBody,
    /// Answers DESCRIBE with a status line, then header lines without end.
    EndlessHeaders,
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=hostile\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=64001E;sprop-parameter-sets=Z2QAHqwsaoLA9puCgIKgAAADACAAAAMD0IAA,aO4xshsA\r\n\
a=control:trackID=0\r\n";

fn serve(mode: Mode) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                // The client closes the connection when it gives up; the write then fails.
                let _ = session(conn, mode, port);
            });
        }
    });
    port
}

/// Reads one request head; returns (method, CSeq).
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, String)> {
    let mut method = String::new();
    let mut cseq = String::from("0");
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            if method.is_empty() {
                continue;
            }
            return Ok((method, cseq));
        }
        if method.is_empty() {
            method = line.split(' ').next().unwrap_or("").to_string();
        } else if let Some(v) = line.strip_prefix("CSeq:") {
            cseq = v.trim().to_string();
        }
    }
}

fn session(conn: TcpStream, mode: Mode, port: u16) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let junk = vec![b'a'; 64 * 1024];
    loop {
        let (method, cseq) = read_request(&mut r)?;
        match (method.as_str(), mode) {
            ("DESCRIBE", Mode::HugeBody) => {
                write!(
                    w,
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n\
                     Content-Length: 1073741824\r\n\r\n"
                )?;
                loop {
                    w.write_all(&junk)?;
                }
            }
            ("DESCRIBE", Mode::EndlessHeaders) => {
                write!(w, "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n")?;
                let line = format!("X-Pad: {}\r\n", "a".repeat(100));
                loop {
                    w.write_all(line.as_bytes())?;
                }
            }
            ("DESCRIBE", _) => write!(
                w,
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: rtsp://127.0.0.1:{port}/cam/\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                SDP.len()
            )?,
            ("SETUP", _) => write!(
                w,
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 4711;timeout=60\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            )?,
            ("PLAY", _) => {
                write!(
                    w,
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 4711\r\n\r\n"
                )?;
                // Drain whatever the client sends from now on (keepalives, TEARDOWN).
                let mut rr = r.into_inner();
                thread::spawn(move || {
                    let mut sink = [0u8; 4096];
                    while matches!(rr.read(&mut sink), Ok(n) if n > 0) {}
                });
                return endless_fu_a(&mut w);
            }
            (_, _) => write!(
                w,
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 4711\r\n\
                 Public: DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n\r\n"
            )?,
        }
    }
}

/// Interleaved RTP on channel 0: an IDR NAL in FU-A fragments, start fragment first, then
/// middle fragments forever; same timestamp, no marker.
fn endless_fu_a(w: &mut TcpStream) -> std::io::Result<()> {
    let payload = vec![0x42u8; 1400];
    let mut seq: u16 = 1;
    loop {
        let mut pkt = Vec::with_capacity(4 + 12 + 2 + payload.len());
        let len = (12 + 2 + payload.len()) as u16;
        pkt.extend_from_slice(&[b'$', 0]);
        pkt.extend_from_slice(&len.to_be_bytes());
        pkt.extend_from_slice(&[0x80, 96]);
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&90_000u32.to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        // FU indicator (NRI 3, type 28), FU header (start bit on the first only, type 5).
        pkt.push(0x7c);
        pkt.push(if seq == 1 { 0x85 } else { 0x05 });
        pkt.extend_from_slice(&payload);
        w.write_all(&pkt)?;
        seq = seq.wrapping_add(1);
    }
}

/// Peak resident set size of a process, KiB.
fn vm_hwm_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn camera_report(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["cameras"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["camera"] == name))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn hostile_cameras_are_contained_and_quarantined_while_a_healthy_one_records() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[
        "name=good,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25".to_string(),
    ]);
    let hostile = [
        ("fua", serve(Mode::EndlessFuA)),
        ("body", serve(Mode::HugeBody)),
        ("headers", serve(Mode::EndlessHeaders)),
    ];
    let store = tmp.path().join("store");
    let mut cams = format!(
        "  - {{namespace: site, name: good, url: \"{}\"}}\n",
        sim.url("good")
    );
    for (name, port) in hostile {
        cams.push_str(&format!(
            "  - {{namespace: site, name: {name}, url: \"rtsp://127.0.0.1:{port}/cam\"}}\n"
        ));
    }
    let config = write_config(
        tmp.path(),
        &format!(
            "storage:\n  local: {{path: {}}}\n  prefix: rec\nbuffer: {{dir: {}}}\n# The simulator and the hostile servers listen on loopback.\ncameraNetworks: {{allow: [127.0.0.1/32]}}\ncameras:\n{cams}",
            store.display(),
            tmp.path().join("buf").display(),
        ),
    );
    let rec = Recorder::start(
        &config,
        &[
            "--segment-seconds",
            "2",
            "--reconnect-min-ms",
            "200",
            "--reconnect-max-ms",
            "400",
        ],
        &tmp.path().join("recorder.log"),
    );
    let pid = rec.proc.pid();

    // Every hostile camera is quarantined after three violations.
    let quarantined = wait_for(Duration::from_secs(60), || {
        let st = rec.status();
        hostile
            .iter()
            .all(|(name, _)| camera_report(&st, name)["state"] == "Quarantined")
    });
    let status = rec.status();
    assert!(
        quarantined,
        "not all hostile cameras quarantined: {status:#}\nlog:\n{}",
        rec.log_text()
    );
    let metrics = rec.metrics();
    for (name, _) in hostile {
        let r = camera_report(&status, name);
        let msg = r["lastError"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("quarantined for 30 s") && msg.len() < 400 && !msg.contains("aaaa"),
            "{name}: {msg}"
        );
        assert!(
            msg.is_ascii() && !msg.contains('\n'),
            "{name}: not one printable line: {msg:?}"
        );
        let labels = format!("camera=\"{name}\"");
        assert!(
            metric(&metrics, "vigil_recorder_limit_violations_total", &labels) >= 3.0,
            "{name}: {metrics}"
        );
        assert_eq!(
            metric(&metrics, "vigil_recorder_quarantined", &labels),
            1.0,
            "{name}"
        );
    }

    // The healthy camera kept recording throughout; give it a few more segments.
    let started = Instant::now();
    thread::sleep(Duration::from_secs(8));
    let hwm = vm_hwm_kib(pid);
    let good = camera_report(&rec.status(), "good");
    let log = rec.stop();
    let (segs, _gaps) = read_store(&store.join("rec"), "site", "good");
    eprintln!(
        "recorder VmHWM {} KiB ({:.1} MiB); healthy camera: {} segments, state {}; {:?} after quarantine",
        hwm,
        hwm as f64 / 1024.0,
        segs.len(),
        good["state"],
        started.elapsed()
    );
    assert_eq!(good["state"], "Recording", "{good:#}\nlog:\n{log}");
    assert!(
        segs.len() >= 4,
        "healthy camera wrote {} segments\nlog:\n{log}",
        segs.len()
    );
    for s in &segs {
        let p = probe(&s.path);
        assert!(p.video_frames > 0, "{}: {p:?}", s.path.display());
    }
    assert!(
        hwm > 0 && hwm < MAX_HWM_KIB,
        "recorder peak RSS {hwm} KiB exceeds {MAX_HWM_KIB} KiB"
    );
}

/// Resident set size now, KiB.
fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The figures in docs/benchmarks.md ("Hostile cameras"): the recorder's peak RSS with one
/// camera of each kind alone, for `VIGIL_TEST_SECONDS` (default 20) each. Also run against a
/// recorder built without the limits (the baseline), so the recorder is killed once its RSS
/// passes 1.5 GiB to spare the machine. Not part of the suite:
/// `cargo test -p vigil-recorder --test hostile_camera -- --ignored --nocapture`.
#[test]
#[ignore]
fn peak_rss_per_camera_kind() {
    let secs = std::env::var("VIGIL_TEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    let sim = Sim::start(&[
        "name=good,codec=h264,bitrate=1500,fps=25,width=640,height=360,gop=25".to_string(),
    ]);
    let kinds = [
        ("healthy only", sim.url("good")),
        (
            "endless FU-A",
            format!("rtsp://127.0.0.1:{}/cam", serve(Mode::EndlessFuA)),
        ),
        (
            "Content-Length 1 GiB",
            format!("rtsp://127.0.0.1:{}/cam", serve(Mode::HugeBody)),
        ),
        (
            "endless header lines",
            format!("rtsp://127.0.0.1:{}/cam", serve(Mode::EndlessHeaders)),
        ),
    ];
    for (kind, url) in kinds {
        let tmp = tempfile::tempdir().unwrap();
        let config = write_config(
            tmp.path(),
            &format!(
                "storage:\n  local: {{path: {}}}\n  prefix: rec\nbuffer: {{dir: {}}}\ncameraNetworks: {{allow: [127.0.0.1/32]}}\ncameras:\n  - {{namespace: site, name: cam, url: \"{url}\"}}\n",
                tmp.path().join("store").display(),
                tmp.path().join("buf").display(),
            ),
        );
        let mut rec = Recorder::start(
            &config,
            &["--reconnect-min-ms", "200", "--reconnect-max-ms", "400"],
            &tmp.path().join("recorder.log"),
        );
        let pid = rec.proc.pid();
        let t = Instant::now();
        let mut killed = false;
        let mut hwm = 0;
        while t.elapsed() < Duration::from_secs(secs) {
            // Read while the process lives: a dead one's status has no memory figures.
            hwm = hwm.max(vm_hwm_kib(pid));
            if vm_rss_kib(pid) > 1536 * 1024 {
                rec.proc.signal("KILL");
                killed = true;
                break;
            }
            if rec.proc.wait_timeout(Duration::from_millis(100)).is_some() {
                break;
            }
        }
        hwm = hwm.max(vm_hwm_kib(pid));
        let alive = matches!(rec.proc.child.try_wait(), Ok(None));
        let violations = if alive {
            metric(
                &rec.metrics(),
                "vigil_recorder_limit_violations_total",
                "camera=\"cam\"",
            )
        } else {
            f64::NAN
        };
        eprintln!(
            "{kind:>22}: peak RSS {:.1} MiB after {:.1} s{}; limit violations {violations}",
            hwm as f64 / 1024.0,
            t.elapsed().as_secs_f64(),
            if killed {
                " (killed at 1.5 GiB)"
            } else if !alive {
                " (exited)"
            } else {
                ""
            },
        );
    }
}
