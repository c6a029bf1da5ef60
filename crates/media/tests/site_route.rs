//! A site camera's ONVIF SOAP goes through the site's tunnel (issue #15): in one process, with
//! real TLS and TCP on loopback, vigil-rendezvous, a vigil-gateway whose site's camera network is
//! 127.0.0.1/32, and an HTTP "camera". `Device` with a `Route::Site` reaches the camera through
//! the in-process `SiteProxy` and the relay; the camera sees an ordinary origin-form request with
//! `Connection: close` and none of the proxy's credentials. The same device dialled directly is
//! refused by the address policy (loopback), so the answer can only have come through the site.
//! An `https://` device is reached through the proxy's `CONNECT`, its certificate verified end to
//! end against the CA the camera's options give.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;
use vigil_api::CameraNetworks;
use vigil_api::netpolicy::AddressPolicy;
use vigil_media::netguard::{Route, SiteRoute};
use vigil_media::onvif::{ClientOptions, Device};
use vigil_site::SiteLink;
use vigil_site::gateway::Gateway;
use vigil_site::proto::Token;
use vigil_site::rendezvous::{Config, RecorderEntry, Rendezvous, SiteEntry};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The relay (LAN and direct paths off) to site shop/branch1, whose camera network is loopback.
async fn site_link(tag: &str) -> SiteLink {
    let dir = std::env::temp_dir().join(format!("vigil-media-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["vigil-rendezvous".into()]).unwrap();
    let ca = write(&dir, "rv.pem", &cert.cert.pem());
    let key = write(&dir, "rv.key", &cert.signing_key.serialize_pem());
    let site_token = write(&dir, "site.token", "site-secret\n");
    let rec_token = write(&dir, "rec.token", "rec-secret\n");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rv = Rendezvous::new(Config {
        listen: addr.clone(),
        cert_file: ca.clone(),
        key_file: key,
        sites: vec![SiteEntry {
            namespace: "shop".into(),
            name: "branch1".into(),
            token_file: site_token.clone(),
            camera_networks: CameraNetworks {
                allow: vec!["127.0.0.1/32".into()],
                deny: vec![],
            },
            max_relay_kbps: None,
        }],
        recorders: vec![RecorderEntry {
            namespace: "shop".into(),
            token_file: rec_token.clone(),
        }],
    })
    .unwrap();
    tokio::spawn(rv.serve(listener));
    let gw = Gateway {
        rendezvous: addr.clone(),
        server_name: vigil_site::tls::server_name("vigil-rendezvous").unwrap(),
        tls: vigil_site::tls::client_config(&ca).unwrap(),
        namespace: "shop".into(),
        site: "branch1".into(),
        token: Token::from_file(&site_token).unwrap(),
    };
    tokio::spawn(gw.run());
    SiteLink::from_files(&addr, "vigil-rendezvous", &ca, &rec_token, "shop")
        .unwrap()
        .relay_only()
}

/// Reads one request (head and Content-Length body); `None` when the peer closed first.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.eq_ignore_ascii_case("content-length") {
                v.trim().parse().ok()
            } else {
                None
            }
        })
        .unwrap_or(0);
    while buf.len() < end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

/// An ONVIF "camera" answering GetCapabilities; keeps every request head it received.
async fn camera(heads: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let heads = heads.clone();
            tokio::spawn(answer(s, port, heads));
        }
    });
    port
}

/// The same camera over TLS, with a certificate for 127.0.0.1; returns its port and CA (PEM).
async fn tls_camera(heads: Arc<Mutex<Vec<String>>>, dir: &Path) -> (u16, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let pem = cert.cert.pem();
    let cfg = vigil_site::tls::server_config(
        &write(dir, "cam.pem", &pem),
        &write(dir, "cam.key", &cert.signing_key.serialize_pem()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (heads, acceptor) = (heads.clone(), acceptor.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    answer(tls, port, heads).await;
                }
            });
        }
    });
    (port, pem.into_bytes())
}

/// Answers one GetCapabilities request on `s`.
async fn answer<S>(mut s: S, port: u16, heads: Arc<Mutex<Vec<String>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(head) = read_request(&mut s).await else {
        return;
    };
    heads.lock().unwrap().push(head);
    let body = format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"><s:Body><tds:GetCapabilitiesResponse><tds:Capabilities><tt:Extension><tt:Search><tt:XAddr>http://127.0.0.1:{port}/onvif/search</tt:XAddr></tt:Search><tt:Replay><tt:XAddr>http://127.0.0.1:{port}/onvif/replay</tt:XAddr></tt:Replay></tt:Extension></tds:Capabilities></tds:GetCapabilitiesResponse></s:Body></s:Envelope>"#
    );
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(answer.as_bytes()).await;
    let _ = s.shutdown().await;
}

#[tokio::test]
async fn onvif_of_a_site_camera_goes_through_the_tunnel() {
    let link = Arc::new(site_link("onvif").await);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let port = camera(heads.clone()).await;
    let url = Url::parse(&format!("http://127.0.0.1:{port}/onvif/device_service")).unwrap();

    // Directly, loopback is refused by the default policy: nothing reaches the camera.
    let direct = Device::new(
        url.clone(),
        None,
        &ClientOptions::default(),
        Arc::new(AddressPolicy::default()),
    )
    .unwrap();
    let err = direct.services().await.unwrap_err().to_string();
    assert!(err.contains("not allowed"), "{err}");
    assert!(heads.lock().unwrap().is_empty());

    let route = Route::Site(SiteRoute {
        link: link.clone(),
        site: "branch1".into(),
    });
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let dev = Device::new(url.clone(), None, &opts, route.clone()).unwrap();
    // The gateway may still be registering: retry for a few seconds.
    let mut got = None;
    for _ in 0..50 {
        match dev.services().await {
            Ok(s) => {
                got = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let (search, replay) = got.expect("GetCapabilities through the site");
    assert_eq!(search.path(), "/onvif/search");
    assert_eq!(replay.path(), "/onvif/replay");
    let seen = heads.lock().unwrap().clone();
    let head = seen.last().expect("the camera saw the request");
    assert!(
        head.starts_with("POST /onvif/device_service HTTP/1.1\r\n"),
        "origin form: {head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("proxy-"),
        "no proxy header reaches the camera: {head}"
    );

    // The replay client's seam: a connection through the site carries bytes both ways.
    let mut tcp = route
        .connect("127.0.0.1", port, Duration::from_secs(5))
        .await
        .unwrap();
    tcp.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // An address outside the site's camera networks: the gateway refuses it.
    let err = route
        .connect("127.0.0.2", port, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("camera networks"), "{err}");

    // HTTPS: a CONNECT through the proxy, TLS end to end, the camera's certificate verified.
    vigil_api::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("vigil-media-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tls_heads = Arc::new(Mutex::new(Vec::new()));
    let (tls_port, ca) = tls_camera(tls_heads.clone(), &dir).await;
    let url = Url::parse(&format!(
        "https://127.0.0.1:{tls_port}/onvif/device_service"
    ))
    .unwrap();
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        tls: vigil_media::onvif::TlsVerify::Ca(ca),
        ..ClientOptions::default()
    };
    let dev = Device::new(url, None, &opts, route.clone()).unwrap();
    let (search, _) = dev
        .services()
        .await
        .expect("GetCapabilities over https through the site");
    assert_eq!(search.path(), "/onvif/search");
    let seen = tls_heads.lock().unwrap().clone();
    assert!(
        seen.last()
            .is_some_and(|h| h.starts_with("POST /onvif/device_service HTTP/1.1\r\n")
                && !h.to_ascii_lowercase().contains("proxy-")),
        "{seen:?}"
    );
    // A certificate the options do not trust: refused, though the tunnel opened.
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let url = Url::parse(&format!(
        "https://127.0.0.1:{tls_port}/onvif/device_service"
    ))
    .unwrap();
    let dev = Device::new(url, None, &opts, route).unwrap();
    assert!(
        dev.services().await.is_err(),
        "an untrusted certificate is refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
