//! The camera address policy, end to end with the real binary: cameras pointing at loopback,
//! at the cloud metadata address, at a name that resolves to loopback, or at an IPv4-mapped
//! loopback address are refused before any connection — a TCP listener on the loopback
//! address they name is never connected to — while a simulator camera on an allowed address
//! records. In Kubernetes mode the refusal is the Camera's `AddressNotAllowed` condition.
//!
//! The allowed simulator listens on 127.0.0.2 and the pool/file allows exactly 127.0.0.2/32,
//! so the trap on 127.0.0.1 stays refused (an allow entry opens only what it contains).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vigil_api::{Camera, ConditionStatus};
use vigil_testkit::*;

const ALLOWED_HOST: &str = "127.0.0.2";

/// A listener on 127.0.0.1 that counts every connection made to it.
struct Trap {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Trap {
    /// Started with one connection of its own, so the count is known to work.
    fn start() -> Trap {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let trap = Trap { port, accepted };
        drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        assert!(
            wait_for(Duration::from_secs(5), || trap
                .accepted
                .load(Ordering::SeqCst)
                == 1),
            "the trap does not count connections"
        );
        trap
    }

    /// Connections made by anyone but the test itself.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst) - 1
    }
}

/// (name, URL) of the cameras that must be refused.
fn refused_cameras(trap: &Trap) -> Vec<(&'static str, String)> {
    let p = trap.port;
    vec![
        ("loop", format!("rtsp://127.0.0.1:{p}/live")),
        ("byname", format!("rtsp://localhost:{p}/live")),
        ("mapped", format!("rtsp://[::ffff:127.0.0.1]:{p}/live")),
        (
            "metadata",
            format!("rtsp://169.254.169.254:{p}/latest/meta-data"),
        ),
    ]
}

fn sim() -> Sim {
    Sim::start_on(
        ALLOWED_HOST,
        &["name=good,codec=h264,bitrate=600,fps=25,width=320,height=180".into()],
        None,
        None,
    )
}

fn good_url(sim: &Sim) -> String {
    format!("rtsp://{ALLOWED_HOST}:{}/good/live", sim.rtsp_port)
}

#[test]
fn file_mode_refuses_protected_addresses_without_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let trap = Trap::start();
    let sim = sim();
    let mut cams = format!("  - {{name: good, url: \"{}\"}}\n", good_url(&sim));
    for (name, url) in refused_cameras(&trap) {
        cams.push_str(&format!("  - {{name: {name}, url: \"{url}\"}}\n"));
    }
    let config = write_config(
        tmp.path(),
        &format!(
            "storage: {{local: {{path: {}}}}}\nbuffer: {{dir: {}}}\nsegmentSeconds: 2\ncameraNetworks: {{allow: [{ALLOWED_HOST}/32]}}\ncameras:\n{cams}",
            tmp.path().join("store").display(),
            tmp.path().join("buf").display(),
        ),
    );
    let rec = Recorder::start(
        &config,
        &["--reconnect-max-ms", "300"],
        &tmp.path().join("recorder.log"),
    );
    // The allowed camera records...
    assert!(
        wait_for(Duration::from_secs(40), || metric(
            &rec.metrics(),
            "vigil_recorder_segments_written_total",
            "camera=\"good\""
        ) >= 1.0),
        "the allowed camera did not record; log:\n{}",
        rec.log_text()
    );
    // ...while the others were retried several times (reconnects ≥ 3), each refused.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let st = rec.status();
            refused_cameras(&trap).iter().all(|(name, _)| {
                st["cameras"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["camera"] == *name && c["reconnects"].as_u64() >= Some(3))
            })
        }),
        "refused cameras not retried; status {}",
        rec.status()
    );
    let st = rec.status();
    for (name, _) in refused_cameras(&trap) {
        let c = st["cameras"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["camera"] == name)
            .unwrap();
        let err = c["lastError"].as_str().unwrap_or_default();
        eprintln!("{name}: {err}");
        assert!(err.contains("is not allowed"), "{name}: {c}");
        assert!(
            err.contains("loopback") || err.contains("link-local"),
            "{name}: {err}"
        );
        assert_eq!(c["segments"], 0, "{name}: {c}");
    }
    assert_eq!(
        trap.connections(),
        0,
        "a refused camera's address was connected to"
    );
    let log = rec.stop();
    assert!(log.contains("camera address refused"), "{log}");
}

#[test]
fn kubernetes_mode_reports_address_not_allowed() {
    if !cluster_available() {
        return;
    }
    vigil_api::install_crypto_provider();
    let rt = rt();
    let client = rt.block_on(Client::try_default()).expect("client");
    let ns = format!("netpolicy-addr-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let trap = Trap::start();
    let sim = sim();
    const POD: &str = "rec-netpolicy-0";

    rt.block_on(async {
        apply_crds(&client).await;
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let pools: Api<vigil_api::RecorderPool> = Api::namespaced(client.clone(), &ns);
        pools
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
                    "metadata": {"name": "main"},
                    "spec": {"replicas": 0, "capacityKbps": 100000, "segmentSeconds": 2,
                        "storage": {"local": {"path": tmp.path().join("store").display().to_string()}},
                        "lease": {"durationSeconds": 4, "renewSeconds": 1},
                        "cameraNetworks": {"allow": [format!("{ALLOWED_HOST}/32")]}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
        let mut all = refused_cameras(&trap);
        all.push(("good", good_url(&sim)));
        for (name, url) in all {
            cams.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                    "metadata": {"name": name, "labels": {"vigil.dev/recorder": POD}},
                    "spec": {"source": {"url": url}, "expectedBitrateKbps": 600, "pool": "main"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        }
    });

    let log = tmp.path().join("recorder.log");
    let port = free_port();
    let child = std::process::Command::new(bin("vigil-recorder"))
        .args([
            "record",
            "--kubernetes",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--buffer-dir")
        .arg(tmp.path().join("buf"))
        .args(["--reconnect-max-ms", "500"])
        .env("POD_NAME", POD)
        .env("POD_NAMESPACE", &ns)
        .env("POOL_NAME", "main")
        .env("RUST_LOG", "info,vigil_recorder=debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut rec = Proc {
        child,
        name: "vigil-recorder",
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let cams: Api<Camera> = Api::namespaced(client.clone(), &ns);
            let reason_of = |c: &Camera, t: &str| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned())
            };
            let mut done = false;
            for _ in 0..60 {
                let mut all_refused = true;
                for (name, _) in refused_cameras(&trap) {
                    let c = cams.get(name).await.unwrap();
                    let rec_c = reason_of(&c, "Recording");
                    let deg = reason_of(&c, "Degraded");
                    all_refused &= rec_c.as_ref().is_some_and(|r| {
                        r.status == ConditionStatus::False && r.reason == "AddressNotAllowed"
                    }) && deg.as_ref().is_some_and(|d| {
                        d.status == ConditionStatus::True && d.reason == "AddressNotAllowed"
                    });
                    if let Some(r) = rec_c.filter(|r| r.reason == "AddressNotAllowed") {
                        assert!(r.message.contains("is not allowed"), "{name}: {r:?}");
                        assert!(r.message.len() < 300, "{name}: {r:?}");
                    }
                }
                let good = cams.get("good").await.unwrap();
                let streaming = reason_of(&good, "Recording")
                    .is_some_and(|r| r.status == ConditionStatus::True && r.reason == "Streaming");
                if all_refused && streaming {
                    done = true;
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert!(
                done,
                "conditions not reached; cameras: {:?}\nlog:\n{}",
                cams.list(&Default::default()).await.map(|l| l
                    .items
                    .into_iter()
                    .map(|c| (c.metadata.name, c.status.map(|s| s.conditions)))
                    .collect::<Vec<_>>()),
                log_text()
            );
            assert_eq!(trap.connections(), 0, "a refused address was connected to");
        })
    }));
    rec.signal("TERM");
    let _ = rec.wait_timeout(Duration::from_secs(20));
    rt.block_on(async {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&ns, &DeleteParams::default())
            .await;
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
