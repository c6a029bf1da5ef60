//! Manual recording and events posted by other systems (issue 17), end to end against the real
//! API server, the camera simulator, the recorder in Kubernetes mode and the access point in
//! pool mode (`vigil-access serve --pool`), authorized by TokenReview + SubjectAccessReview:
//!
//! * a ServiceAccount granted `create cameras/manual-recording` starts a manual recording of a
//!   camera in mode `Off` and stops it early; the stored footage is that window, to within one
//!   GOP (and the stream's connect time at the start: an `Off` camera has no stream open before),
//!   and nothing else; the window is an event record of type `manual` in the events query;
//! * `POST .../events` without a token, with a bad token or by a ServiceAccount without
//!   `create cameras/events` is refused; an accepted event makes a camera in mode `Event` record
//!   `[event − pre, event + post]` (± one GOP), stored as an event record of type `external`; a
//!   second write to the same camera within a second is refused (429);
//! * a manual window on that `Event`-mode camera records `[start − pre, end + post]` like an
//!   event (the pre-event buffer covers the seconds before the button) and is a `manual` record.
//!
//! The test labels the cameras for the recorder itself (the operator's placement of a camera in
//! mode `Off` during its manual window is `operator/src/controller/pool.rs`'s unit test).
//! Needs `KUBECONFIG` (e.g. `source /var/lib/vigil-cluster/env`); skipped without it.

use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use vigil_testkit::*;

const POD: &str = "rec-manual-0";
const FPS: u32 = 25;
const GOP_MS: i64 = 1000;
const PRE_S: i64 = 3;
const POST_S: i64 = 2;
/// Frame receipt times at the recorder vs. the access point's clock (same host) and the watch's
/// latency.
const SLACK_MS: i64 = 700;
/// An `Off` camera's stream is opened when the manual window starts: connect and first
/// keyframe.
const CONNECT_MS: i64 = 5000;

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sa_token(ns: &str, sa: &str) -> String {
    let mut secret = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            secret = Command::new("kubectl")
                .args(["-n", ns, "get", "sa", sa])
                .args(["-o", "jsonpath={.secrets[0].name}"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            !secret.is_empty()
        }),
        "no token Secret for {ns}/{sa}"
    );
    let b64 = kubectl(
        &[
            "-n",
            ns,
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ],
        None,
    );
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b64.trim().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "ns", &self.0, "--wait=false"])
            .output();
    }
}

/// One HTTP/1.1 request: (status, body).
fn req(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = r.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked bodies (axum's JSON is sent with a length; keep the first JSON object).
    let body = body
        .find('{')
        .map(|i| &body[i..])
        .and_then(|b| b.rfind('}').map(|j| &b[..=j]))
        .unwrap_or(body);
    (code, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn manual_recording_and_posted_events_through_the_access_point() {
    if !cluster_available() {
        return;
    }
    // This worktree's CRDs (spec.recording.manual and externalEvent are new fields).
    vigil_api::install_crypto_provider();
    let rt = rt();
    let client = rt
        .block_on(kube::Client::try_default())
        .expect("client for KUBECONFIG");
    rt.block_on(apply_crds(&client));
    let ns = format!("vigil-manual-{:x}", now_ms() & 0xffffff);
    let _guard = Ns(ns.clone());
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let spec = |name: &str| {
        format!("name={name},codec=h264,bitrate=500,fps={FPS},width=320,height=180,gop={FPS}")
    };
    let sim = Sim::start_on(
        "127.0.0.1",
        &[spec("door"), spec("gate")],
        None,
        Some(&tmp.path().join("sim.log")),
    );
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: guard, namespace: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: nobody, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: guard, namespace: {ns}}}
rules:
  - apiGroups: [vigil.dev]
    resources: [cameras/recordings]
    verbs: [get]
  - apiGroups: [vigil.dev]
    resources: [cameras/manual-recording, cameras/events]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: guard, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: guard}}
subjects: [{{kind: ServiceAccount, name: guard, namespace: {ns}}}]
---
apiVersion: vigil.dev/v1alpha1
kind: RecorderPool
metadata: {{name: main, namespace: {ns}}}
spec:
  replicas: 0
  capacityKbps: 100000
  storage: {{local: {{path: "{store}"}}}}
  segmentSeconds: 4
  localBufferMib: 64
  lease: {{durationSeconds: 4, renewSeconds: 1}}
  cameraNetworks: {{allow: [127.0.0.1/32]}}
---
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {{name: door, namespace: {ns}, labels: {{vigil.dev/recorder: {POD}}}}}
spec:
  source: {{url: "{door}"}}
  expectedBitrateKbps: 500
  pool: main
  recording: {{mode: "Off"}}
---
apiVersion: vigil.dev/v1alpha1
kind: Camera
metadata: {{name: gate, namespace: {ns}, labels: {{vigil.dev/recorder: {POD}}}}}
spec:
  source: {{url: "{gate}"}}
  expectedBitrateKbps: 500
  pool: main
  recording:
    mode: Event
    preSeconds: {PRE_S}
    postSeconds: {POST_S}
    onvifEventsUrl: "http://127.0.0.1:{control}/onvif/device_service"
"#,
            store = store.display(),
            door = sim.url("door"),
            gate = sim.url("gate"),
            control = sim.control_port,
        )),
    );
    let guard = sa_token(&ns, "guard");
    let nobody = sa_token(&ns, "nobody");

    let rec_log = tmp.path().join("recorder.log");
    let mut rec = Proc {
        child: Command::new(bin("vigil-recorder"))
            .args(["record", "--kubernetes", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--buffer-dir")
            .arg(tmp.path().join("buf"))
            .args(["--reconnect-max-ms", "500", "--drain-timeout", "1"])
            .env("POD_NAME", POD)
            .env("POD_NAMESPACE", &ns)
            .env("POOL_NAME", "main")
            .env("RUST_LOG", "info,vigil_recorder=debug")
            .stderr(std::fs::File::create(&rec_log).unwrap())
            .spawn()
            .unwrap(),
        name: "vigil-recorder",
    };
    let port = free_port();
    let ap_log = tmp.path().join("access.log");
    let _ap = Proc {
        child: Command::new(bin("vigil-access"))
            .args(["serve", "--pool", &format!("{ns}/main"), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stderr(std::fs::File::create(&ap_log).unwrap())
            .spawn()
            .unwrap(),
        name: "vigil-access",
    };
    let logs = || {
        format!(
            "recorder:\n{}\naccess point:\n{}",
            std::fs::read_to_string(&rec_log).unwrap_or_default(),
            std::fs::read_to_string(&ap_log).unwrap_or_default()
        )
    };
    assert!(
        wait_for(Duration::from_secs(30), || http(
            "GET", port, "/healthz", b""
        )
        .is_some()),
        "access point did not start; {}",
        logs()
    );
    // The Event-mode camera subscribes to its ONVIF events; then its pre-event buffer fills.
    assert!(
        wait_for(
            Duration::from_secs(20),
            || sim.health()["pullpoint_subscriptions"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        ),
        "gate did not subscribe; {}",
        logs()
    );
    // The subscription is on the Camera for kubectl to see: condition EventSubscription (it
    // turns False/SubscriptionStale while the camera does not answer; kubernetes.rs unit tests).
    let event_condition = || {
        kubectl(
            &[
                "-n",
                &ns,
                "get",
                "camera",
                "gate",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"EventSubscription\")].status}/{.status.conditions[?(@.type==\"EventSubscription\")].reason}",
            ],
            None,
        )
    };
    assert!(
        wait_for(Duration::from_secs(40), || event_condition()
            == "True/Subscribed"),
        "Camera gate: EventSubscription is {:?}; {}",
        event_condition(),
        logs()
    );
    thread::sleep(Duration::from_secs(PRE_S as u64 + 3));

    let cam = |name: &str, what: &str| format!("/api/v1/cameras/{ns}/{name}/{what}");
    // Another test run on the same cluster may apply older CRDs meanwhile (they are
    // cluster-wide): the access point then answers 502 (the field was pruned); apply ours again.
    let write = |method: &str, path: &str, body: &str| {
        let mut r = req(port, method, path, Some(&guard), body);
        for _ in 0..3 {
            if r.0 != 502 {
                break;
            }
            eprintln!("{method} {path}: {} (applying the CRDs again)", r.1);
            rt.block_on(apply_crds(&client));
            thread::sleep(Duration::from_millis(1100));
            r = req(port, method, path, Some(&guard), body);
        }
        r
    };
    let event = r#"{"durationSeconds": 2, "source": "lpr-1"}"#;
    // Refused: no token, a bad token, a user without the grant.
    for (who, token, code) in [
        ("no token", None, 401),
        ("bad token", Some("not-a-token"), 401),
        ("nobody", Some(nobody.as_str()), 403),
    ] {
        let (c, b) = req(port, "POST", &cam("gate", "events"), token, event);
        assert_eq!(c, code, "events, {who}: {b}");
        let (c, b) = req(port, "POST", &cam("door", "manual-recording"), token, "");
        assert_eq!(c, code, "manual recording, {who}: {b}");
    }

    // An event from another system opens the Event-mode gate.
    let (c, b) = write("POST", &cam("gate", "events"), event);
    assert_eq!(c, 202, "event: {b}; {}", logs());
    let ev = json(&b)["event"].clone();
    let (ev_s, ev_e) = (
        ev["startMs"].as_i64().unwrap(),
        ev["endMs"].as_i64().unwrap(),
    );
    assert_eq!(ev_e - ev_s, 2000, "{b}");
    let (c, b) = req(port, "POST", &cam("gate", "events"), Some(&guard), event);
    assert_eq!(c, 429, "a second write within a second: {b}");

    // A manual recording of the Off camera, stopped early.
    let (c, b) = write(
        "POST",
        &cam("door", "manual-recording?durationSeconds=60"),
        "",
    );
    assert_eq!(c, 200, "manual start: {b}; {}", logs());
    let m_s = json(&b)["manual"]["startMs"].as_i64().unwrap();
    thread::sleep(Duration::from_secs(8));
    let (c, b) = req(
        port,
        "GET",
        &cam("door", "manual-recording"),
        Some(&guard),
        "",
    );
    assert_eq!((c, json(&b)["active"].as_bool()), (200, Some(true)), "{b}");
    let (c, b) = write("DELETE", &cam("door", "manual-recording"), "");
    assert_eq!(c, 200, "manual stop: {b}");
    let m = json(&b)["manual"].clone();
    assert_eq!(m["startMs"].as_i64(), Some(m_s), "{b}");
    let m_e = m["endMs"].as_i64().unwrap();
    assert!(m["by"].as_str().unwrap().ends_with(":guard"), "{b}");
    // A manual window on the Event-mode camera opens its gate like an event: with pre- and
    // post-time (the pre-event buffer holds the seconds before the button was pressed). Far
    // enough after the posted event that the two recordings do not touch.
    let apart = ev_e + (POST_S + PRE_S) * 1000 + 2 * GOP_MS + 1000;
    thread::sleep(Duration::from_millis((apart - now_ms()).max(0) as u64));
    let (c, b) = write(
        "POST",
        &cam("gate", "manual-recording?durationSeconds=60"),
        "",
    );
    assert_eq!(c, 200, "manual start (Event mode): {b}; {}", logs());
    let g_s = json(&b)["manual"]["startMs"].as_i64().unwrap();
    thread::sleep(Duration::from_secs(3));
    let (c, b) = write("DELETE", &cam("gate", "manual-recording"), "");
    assert_eq!(c, 200, "manual stop (Event mode): {b}");
    let g_e = json(&b)["manual"]["endMs"].as_i64().unwrap();
    // Past the windows' ends (post time, a GOP), and a while with nothing to record.
    thread::sleep(Duration::from_millis(
        (POST_S * 1000 + 2 * GOP_MS + 4000) as u64,
    ));
    rec.signal("TERM");
    assert!(
        rec.wait_timeout(Duration::from_secs(20)).is_some(),
        "recorder did not stop; {}",
        logs()
    );

    let check = |name: &str, wants: &[(i64, i64)], early_start: i64| {
        let (segs, _) = read_store(&store, &ns, name);
        for s in &segs {
            let p = probe(&s.path);
            assert_eq!(p.video_codec, "h264", "{}", s.key.relative());
        }
        let got = runs(&segs);
        eprintln!("{name}: recorded {got:?}, wanted {wants:?}");
        assert_eq!(
            got.len(),
            wants.len(),
            "{name}: {} recordings expected: {got:?}; {}",
            wants.len(),
            logs()
        );
        for (&(gs, ge), &want) in got.iter().zip(wants) {
            assert!(
                gs >= want.0 - GOP_MS - SLACK_MS,
                "{name} starts {gs}, too early for {want:?}"
            );
            assert!(
                gs <= want.0 + early_start,
                "{name} starts {gs}, too late for {want:?}"
            );
            assert!(ge >= want.1 - SLACK_MS, "{name} ends {ge}, before {want:?}");
            assert!(
                ge <= want.1 + GOP_MS + SLACK_MS,
                "{name} ends {ge}, too late for {want:?}"
            );
        }
    };
    check("door", &[(m_s, m_e)], CONNECT_MS);
    check(
        "gate",
        &[
            (ev_s - PRE_S * 1000, ev_e + POST_S * 1000),
            (g_s - PRE_S * 1000, g_e + POST_S * 1000),
        ],
        SLACK_MS,
    );

    // The windows are event records, through the access point's query.
    let q = |name: &str, kind: &str| {
        let (c, b) = req(
            port,
            "GET",
            &cam(
                name,
                &format!(
                    "events?start={}&end={}&type={kind}",
                    m_s - 60_000,
                    m_e + 60_000
                ),
            ),
            Some(&guard),
            "",
        );
        assert_eq!(c, 200, "{b}");
        json(&b)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["startMs"].as_i64().unwrap(), e["endMs"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(q("door", "manual"), vec![(m_s, m_e)], "{}", logs());
    assert_eq!(q("gate", "external"), vec![(ev_s, ev_e)], "{}", logs());
    assert_eq!(q("gate", "manual"), vec![(g_s, g_e)], "{}", logs());
    assert!(q("gate", "motion").is_empty());
}
