//! `vigil-rendezvous` in Kubernetes mode against the real API server (the tests' cluster): a
//! `Site` and its credentials Secret applied → a gateway (on loopback, real TLS) connects → the
//! Site's status says `Connected=True` with the path a recorder's stream took, RTT and bytes;
//! a gateway with the wrong token is refused and a recorder of another namespace too; rotating
//! the Secret disconnects the gateway that holds the old token (condition `GatewayDisconnected`);
//! deleting the Site disconnects its gateway and refuses it from then on.
//!
//! Needs `KUBECONFIG` (`. /var/lib/vigil-cluster/env`); skipped without it (a failure under
//! `VIGIL_REQUIRE_CLUSTER=1`). `cargo test -p vigil-site --test kubernetes`, ≈ 25 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil_api::{ConditionStatus, Site, SitePath, find_condition};
use vigil_site::SiteLink;
use vigil_site::gateway::Gateway;
use vigil_site::kubernetes::{KubeRegistry, RECORDER_SECRET, status_loop};
use vigil_site::proto::Token;
use vigil_site::rendezvous::{Registry, Rendezvous};

/// An echo "camera" on loopback.
async fn camera() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

fn secret(name: &str, token: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"token": token}
    }))
    .unwrap()
}

/// Polls the Site until `f` holds (or panics after `secs`); returns the Site and the wait.
async fn wait_site(
    api: &Api<Site>,
    what: &str,
    secs: u64,
    f: impl Fn(&Site) -> bool,
) -> (Site, Duration) {
    let t = Instant::now();
    loop {
        let s = api.get("branch1").await.unwrap();
        if f(&s) {
            return (s, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s; status {:?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn connected(s: &Site) -> Option<(ConditionStatus, String)> {
    let c = find_condition(&s.status.as_ref()?.conditions, "Connected")?;
    Some((c.status, c.reason.clone()))
}

fn gateway(addr: &str, ca: &std::path::Path, ns: &str, token: &str) -> Gateway {
    Gateway {
        rendezvous: addr.to_string(),
        server_name: vigil_site::tls::server_name("vigil-rendezvous").unwrap(),
        tls: vigil_site::tls::client_config(ca).unwrap(),
        namespace: ns.to_string(),
        site: "branch1".into(),
        token: Token::new(token),
    }
}

#[test]
fn sites_and_secrets_from_the_api_server_and_status_written_back() {
    if !vigil_testkit::cluster_available() {
        return;
    }
    vigil_api::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let client = Client::try_default().await.expect("client for KUBECONFIG");
    vigil_testkit::k8s::apply_crds(&client).await;
    let ns = format!("vigil-site-k8s-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
    )
    .await
    .unwrap();
    let r = tokio::spawn(scenario(client.clone(), ns.clone())).await;
    let _ = nss.delete(&ns, &DeleteParams::background()).await;
    if let Err(e) = r {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenario(client: Client, ns: String) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("branch1-token", "site-secret-1\n"))
        .await
        .unwrap();
    secrets
        .create(&pp, &secret(RECORDER_SECRET, "rec-secret"))
        .await
        .unwrap();
    let site: Site = serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": "branch1"},
        "spec": {
            "credentialsSecret": "branch1-token",
            "cameraNetworks": {"allow": ["127.0.0.1/32"]}
        }
    }))
    .unwrap();
    sites.create(&pp, &site).await.unwrap();

    // The service, in Kubernetes mode for this namespace.
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["vigil-rendezvous".into()]).unwrap();
    let ca = dir.path().join("rv.pem");
    let key = dir.path().join("rv.key");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let reg = KubeRegistry::start(client.clone(), Some(&ns), RECORDER_SECRET)
        .await
        .unwrap();
    let rv = Rendezvous::with_registry(&ca, &key, reg.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(rv.clone().serve(listener));
    tokio::spawn(status_loop(
        client.clone(),
        Arc::clone(&rv),
        reg.clone(),
        Duration::from_millis(500),
    ));

    // Before any gateway: NeverConnected, with the Site's generation.
    let (s, _) = wait_site(&sites, "NeverConnected", 10, |s| {
        connected(s).is_some_and(|c| c.1 == "NeverConnected")
    })
    .await;
    let c = find_condition(&s.status.as_ref().unwrap().conditions, "Connected").unwrap();
    assert_eq!(c.observed_generation, s.metadata.generation);

    // A gateway with the wrong token is refused: the site never connects.
    let wrong = tokio::spawn(gateway(&addr, &ca, &ns, "not-the-token").run());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rv.site_status(&ns, "branch1"),
        None,
        "the wrong token was let in"
    );
    wrong.abort();
    let e = reg
        .authenticate_site(&ns, "branch1", &Token::new("not-the-token"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused") && !e.contains("site-secret"), "{e}");

    // The right token: Connected=True within a few seconds.
    let t0 = Instant::now();
    let gw = tokio::spawn(gateway(&addr, &ca, &ns, "site-secret-1").run());
    wait_site(&sites, "Connected=True", 10, |s| {
        connected(s).is_some_and(|c| c.0 == ConditionStatus::True)
    })
    .await;
    println!(
        "FIGURE site_connected_in_status_ms {:.0}",
        t0.elapsed().as_secs_f64() * 1e3
    );

    // A recorder of the namespace opens a stream through the relay: bytes intact, and the
    // status shows the path and the bytes.
    let rec_token = dir.path().join("rec.token");
    std::fs::write(&rec_token, "rec-secret").unwrap();
    let link = SiteLink::from_files(&addr, "vigil-rendezvous", &ca, &rec_token, &ns)
        .unwrap()
        .relay_only();
    let cam = camera().await;
    let mut c = link
        .open("branch1", "127.0.0.1", cam, Duration::from_secs(5))
        .await
        .expect("stream through the site");
    c.write_all(b"hello through the relay").await.unwrap();
    let mut got = [0u8; 23];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello through the relay");
    drop(c);
    let (s, _) = wait_site(&sites, "path and bytes", 10, |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.path == Some(SitePath::Relay) && st.bytes_in.unwrap_or(0) >= 23)
    })
    .await;
    let st = s.status.unwrap();
    assert!(st.last_seen.is_some(), "{st:?}");
    let text = serde_json::to_string(&st).unwrap();
    assert!(!text.contains("site-secret") && !text.contains("rec-secret"));
    // What `kubectl get sites` shows (the printer columns).
    if let Ok(out) = std::process::Command::new("kubectl")
        .args(["get", "sites", "-n", &ns])
        .output()
    {
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        println!("{out}");
        let row = out.lines().find(|l| l.starts_with("branch1")).unwrap_or("");
        assert!(row.contains("True") && row.contains("relay"), "{out}");
    }

    // A recorder token for another namespace is refused; so is a site token used as one.
    let mut other = link.clone();
    other.namespace = "default".into();
    let e = other
        .open("branch1", "127.0.0.1", cam, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused"), "{e}");
    let mut bad = link.clone();
    bad.token = Token::new("site-secret-1");
    assert!(
        bad.open("branch1", "127.0.0.1", cam, Duration::from_secs(5))
            .await
            .is_err()
    );

    // Rotating the Secret: the gateway holding the old token is disconnected, and the status
    // says so.
    let t = Instant::now();
    secrets
        .replace("branch1-token", &pp, &{
            let mut s = secrets.get("branch1-token").await.unwrap();
            s.data = None;
            s.string_data = Some([("token".to_string(), "site-secret-2".to_string())].into());
            s
        })
        .await
        .unwrap();
    wait_site(&sites, "GatewayDisconnected after rotation", 12, |s| {
        connected(s).is_some_and(|c| c.0 == ConditionStatus::False && c.1 == "GatewayDisconnected")
    })
    .await;
    println!(
        "FIGURE site_rotation_disconnect_ms {:.0}",
        t.elapsed().as_secs_f64() * 1e3
    );
    gw.abort();

    // The new token connects.
    let gw2 = tokio::spawn(gateway(&addr, &ca, &ns, "site-secret-2").run());
    wait_site(&sites, "Connected=True with the new token", 10, |s| {
        connected(s).is_some_and(|c| c.0 == ConditionStatus::True)
    })
    .await;

    // Deleting the Site: its gateway is disconnected and refused from then on.
    let t = Instant::now();
    sites
        .delete("branch1", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        if rv.site_status(&ns, "branch1").is_some_and(|s| !s.connected) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(12),
            "the deleted site's gateway is still connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "FIGURE site_delete_disconnect_ms {:.0}",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(sites.get_opt("branch1").await.unwrap().is_none());
    let e = reg
        .authenticate_site(&ns, "branch1", &Token::new("site-secret-2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown site"), "{e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !rv.site_status(&ns, "branch1").unwrap().connected,
        "the gateway came back"
    );
    let e = link
        .open("branch1", "127.0.0.1", cam, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not connected"), "{e}");
    gw2.abort();
}
