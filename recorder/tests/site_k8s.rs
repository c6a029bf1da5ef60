//! A Camera with `spec.site` recorded by `vigil-recorder record --kubernetes` through its site
//! (issue #15): the recorder gets its site link from the environment the operator sets
//! (`VIGIL_SITE_*`, the namespace's `vigil-site-recorder` Secret mounted — here files), the
//! rendezvous service runs in Kubernetes mode (Sites and Secrets from the API server) and the
//! site's gateway dials the camera simulator. The footage is stored and plays (ffprobe), and the
//! Site's status shows it connected with the path and the bytes.
//!
//! Needs `KUBECONFIG`; skipped without it. `cargo test -p vigil-recorder --test site_k8s`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vigil_api::{ConditionStatus, Site, SitePath, find_condition};
use vigil_site::gateway::Gateway;
use vigil_site::kubernetes::{KubeRegistry, RECORDER_SECRET, status_loop};
use vigil_site::proto::Token;
use vigil_site::rendezvous::Rendezvous;
use vigil_testkit::*;

const POD: &str = "rec-site-0";

#[test]
fn a_site_camera_is_recorded_through_its_site_in_kubernetes_mode() {
    if !cluster_available() {
        return;
    }
    vigil_api::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(Client::try_default())
        .expect("client for KUBECONFIG");
    let ns = format!("vigil-rec-site-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let sim = Sim::start(&[
        "name=door,codec=h264,bitrate=800,fps=25,width=640,height=360,user=viewer,password=Door-Pw-123".into(),
    ]);
    let cert = rcgen::generate_simple_self_signed(vec!["vigil-rendezvous".into()]).unwrap();
    let site_dir = tmp.path().join("site");
    std::fs::create_dir_all(&site_dir).unwrap();
    let ca = site_dir.join("ca.crt");
    let key = tmp.path().join("rv.key");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    // What the operator mounts from the namespace's Secret.
    std::fs::write(site_dir.join("token"), "rec-site-secret").unwrap();

    let (rv_addr, _rv) = rt.block_on(async {
        apply_crds(&client).await;
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
        let pp = PostParams::default();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        for (name, data) in [
            (
                "cam-creds",
                json!({"username": "viewer", "password": "Door-Pw-123"}),
            ),
            ("branch1-token", json!({"token": "gw-site-secret"})),
            (RECORDER_SECRET, json!({"token": "rec-site-secret"})),
        ] {
            secrets
                .create(
                    &pp,
                    &serde_json::from_value(
                        json!({"metadata": {"name": name}, "stringData": data}),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
        }
        let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
        sites
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "Site",
                    "metadata": {"name": "branch1"},
                    "spec": {"credentialsSecret": "branch1-token",
                             "cameraNetworks": {"allow": ["127.0.0.1/32"]}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let dyn_api = |kind: &str| {
            Api::<kube::api::DynamicObject>::namespaced_with(
                client.clone(),
                &ns,
                &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                    "vigil.dev",
                    "v1alpha1",
                    kind,
                )),
            )
        };
        dyn_api("RecorderPool")
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
                    "metadata": {"name": "main"},
                    "spec": {
                        "replicas": 0, "capacityKbps": 100000,
                        "storage": {"local": {"path": store.display().to_string()}},
                        "segmentSeconds": 4, "localBufferMib": 64,
                        "lease": {"durationSeconds": 4, "renewSeconds": 1},
                        "cameraNetworks": {"allow": ["127.0.0.1/32"]}
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        dyn_api("Camera")
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                    "metadata": {"name": "door", "labels": {"vigil.dev/recorder": POD}},
                    "spec": {
                        "source": {"url": sim.url("door")},
                        "credentialsSecretRef": {"name": "cam-creds"},
                        "expectedBitrateKbps": 1000,
                        "pool": "main",
                        "site": "branch1"
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        // The rendezvous service in Kubernetes mode, and the site's gateway.
        let reg = KubeRegistry::start(client.clone(), Some(&ns), RECORDER_SECRET)
            .await
            .unwrap();
        let rv = Rendezvous::with_registry(&ca, &key, reg.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(rv.clone().serve(listener));
        tokio::spawn(status_loop(
            client.clone(),
            Arc::clone(&rv),
            reg,
            Duration::from_millis(500),
        ));
        tokio::spawn(
            Gateway {
                rendezvous: addr.clone(),
                server_name: vigil_site::tls::server_name("vigil-rendezvous").unwrap(),
                tls: vigil_site::tls::client_config(&ca).unwrap(),
                namespace: ns.clone(),
                site: "branch1".into(),
                token: Token::new("gw-site-secret"),
            }
            .run(),
        );
        (addr, rv)
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
        .args(["--reconnect-max-ms", "500", "--drain-timeout", "2"])
        .env("POD_NAME", POD)
        .env("POD_NAMESPACE", &ns)
        .env("POOL_NAME", "main")
        .env("RUST_LOG", "info")
        // As the operator sets them (operator/src/controller/children.rs, `site_env`).
        .env("VIGIL_SITE_RENDEZVOUS", &rv_addr)
        .env("VIGIL_SITE_SERVER_NAME", "vigil-rendezvous")
        .env("VIGIL_SITE_CA_FILE", &ca)
        .env("VIGIL_SITE_TOKEN_FILE", site_dir.join("token"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut rec = Proc {
        child,
        name: "vigil-recorder",
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Two finished segments of the site camera in the store.
        let waited = cluster::time_until(Duration::from_secs(40), || {
            cluster::stored_segments(&store, &ns, "door").len() >= 2
        });
        assert!(
            waited.is_some(),
            "no footage through the site; recorder log:\n{}",
            log_text()
        );
        rt.block_on(async {
            let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
            let s = k8s::wait_for(Duration::from_secs(10), "Site status with the path", || {
                let sites = sites.clone();
                async move {
                    let s = sites.get("branch1").await.ok()?;
                    let st = s.status.clone()?;
                    let c = find_condition(&st.conditions, "Connected")?;
                    (c.status == ConditionStatus::True && st.path.is_some()).then_some(st)
                }
            })
            .await;
            eprintln!(
                "FIGURE site camera: 2 segments in {:.1} s; Site status {s:?}",
                waited.unwrap_or_default().as_secs_f64()
            );
            // On loopback every path can open; the recorder offers all three.
            assert!(
                matches!(
                    s.path,
                    Some(SitePath::Lan | SitePath::Direct | SitePath::Relay)
                ),
                "{s:?}"
            );
        });
    }));
    rec.signal("TERM");
    let _ = rec.wait_timeout(Duration::from_secs(30));
    let text = log_text();
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(client.clone());
        let _ = nss.delete(&ns, &DeleteParams::default()).await;
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(
        text.contains("site") && !text.contains("no site link"),
        "the recorder did not use its site link:\n{text}"
    );
    assert!(!text.contains("rec-site-secret") && !text.contains("gw-site-secret"));
    for l in text.lines().filter(|l| l.contains("path=")) {
        eprintln!("{l}");
    }
    let segs = cluster::stored_segments(&store, &ns, "door");
    assert!(segs.len() >= 2, "{segs:?}");
    let p = probe(&segs[0]);
    assert!(p.video_frames > 0 && p.video_codec == "h264", "{p:?}");
}
