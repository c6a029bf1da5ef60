//! The relay end to end on loopback, in one process with real TLS and TCP: vigil-rendezvous,
//! a vigil-gateway and a recorder's `SiteLink`, with a TCP "camera" the gateway dials.
//! Checks the refusals (unknown site, wrong token, another namespace's recorder, an address
//! outside the site's camera networks) and that bytes arrive intact both ways; measures the time
//! to open a stream and the relay's throughput against plain loopback TCP in the same run
//! (`cargo test --release -p vigil-site --test relay -- --nocapture`).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil_api::CameraNetworks;
use vigil_site::gateway::Gateway;
use vigil_site::proto::Token;
use vigil_site::rendezvous::{Config, RecorderEntry, Rendezvous, SiteEntry};
use vigil_site::{Error, SiteLink};

struct Setup {
    dir: std::path::PathBuf,
    /// Relay only (the LAN and direct paths off).
    link: SiteLink,
    /// All paths offered: on loopback the direct (QUIC) path opens.
    full: SiteLink,
    rv: std::sync::Arc<Rendezvous>,
    camera: u16,
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A "camera": echoes what it reads, or, after a `SEND n\n` line, sends n bytes.
async fn camera() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = [0u8; 16];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                if &head[..5] == b"SEND " {
                    let n: usize = std::str::from_utf8(&head[5..])
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    let buf = vec![0x5au8; 256 * 1024];
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(buf.len());
                        if s.write_all(&buf[..k]).await.is_err() {
                            return;
                        }
                        left -= k;
                    }
                } else {
                    let _ = s.write_all(&head).await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    port
}

async fn setup(tag: &str) -> Setup {
    setup_limited(tag, None).await
}

async fn setup_limited(tag: &str, max_relay_kbps: Option<u32>) -> Setup {
    let dir = std::env::temp_dir().join(format!("vigil-site-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["vigil-rendezvous".into()]).unwrap();
    let ca = write(&dir, "rv.pem", &cert.cert.pem());
    let key = write(&dir, "rv.key", &cert.signing_key.serialize_pem());
    let site_token = write(&dir, "site.token", "site-secret\n");
    let rec_token = write(&dir, "rec.token", "rec-secret\n");
    write(&dir, "other.token", "other-secret\n");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = Config {
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
            max_relay_kbps,
        }],
        recorders: vec![
            RecorderEntry {
                namespace: "shop".into(),
                token_file: rec_token.clone(),
            },
            RecorderEntry {
                namespace: "other".into(),
                token_file: dir.join("other.token"),
            },
        ],
    };
    let rv = Rendezvous::new(cfg).unwrap();
    tokio::spawn(rv.clone().serve(listener));
    let tls = vigil_site::tls::client_config(&ca).unwrap();
    let name = vigil_site::tls::server_name("vigil-rendezvous").unwrap();
    let gw = Gateway {
        rendezvous: addr.clone(),
        server_name: name.clone(),
        tls: tls.clone(),
        namespace: "shop".into(),
        site: "branch1".into(),
        token: Token::from_file(&site_token).unwrap(),
    };
    tokio::spawn(gw.run());
    let full = SiteLink::from_files(&addr, "vigil-rendezvous", &ca, &rec_token, "shop").unwrap();
    let link = full.clone().relay_only();
    let camera = camera().await;
    Setup {
        dir,
        link,
        full,
        rv,
        camera,
    }
}

async fn open_when_up(s: &Setup) -> (vigil_site::SiteStream, Duration) {
    open_on(&s.link, s).await
}

async fn open_on(link: &SiteLink, s: &Setup) -> (vigil_site::SiteStream, Duration) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = Instant::now();
        match link
            .open("branch1", "127.0.0.1", s.camera, Duration::from_secs(5))
            .await
        {
            Ok(c) => return (c, t.elapsed()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the stream never opened: {e}"),
        }
    }
}

/// The per-site stream-open rate limit and the service's `/metrics` (served over HTTP as the
/// binary serves it): after the limit is set, the site's burst of streams opens and the next is
/// refused; the metrics count the relayed streams, their bytes, the refusal and the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_stream_rate_is_limited_and_the_metrics_count_it() {
    let s = setup("ratelimit").await;
    drop(open_when_up(&s).await);
    // 1 a minute: the burst (10) opens, then nothing for a minute.
    s.rv.set_site_streams_per_minute(Some(1));
    let (mut opened, mut refused) = (0, None);
    for _ in 0..20 {
        match s
            .link
            .open("branch1", "127.0.0.1", s.camera, Duration::from_secs(5))
            .await
        {
            Ok(mut c) => {
                assert_eq!(c.path(), vigil_site::Path::Relay);
                c.write_all(b"0123456789abcdef").await.unwrap();
                let mut back = [0u8; 16];
                c.read_exact(&mut back).await.unwrap();
                assert_eq!(&back, b"0123456789abcdef");
                opened += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(opened, 10, "the burst");
    let e = refused.expect("the 11th stream is refused");
    assert!(
        matches!(&e, Error::Refused(r) if r.contains("too many streams")),
        "{e}"
    );

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(vigil_site::metrics::serve(l, s.rv.metrics()));
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert_eq!(value("vigil_rendezvous_sites_connected "), 1);
    let site = r#"namespace="shop",site="branch1""#;
    // The stream that found the gateway up, and the burst.
    assert_eq!(
        value(&format!(
            "vigil_rendezvous_streams_opened_total{{{site},path=\"relay\"}} "
        )),
        11
    );
    assert!(
        value(&format!(
            "vigil_rendezvous_relay_bytes_total{{{site},direction=\"to_site\"}} "
        )) >= 160
    );
    assert!(
        value(&format!(
            "vigil_rendezvous_relay_bytes_total{{{site},direction=\"from_site\"}} "
        )) >= 160
    );
    assert_eq!(
        value(r#"vigil_rendezvous_refusals_total{reason="rate_limited"} "#),
        1
    );
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_path_opens_and_carries_bytes_intact() {
    let s = setup("direct").await;
    // Wait until the gateway is up (over the relay), then open with every path offered.
    drop(open_when_up(&s).await);
    let (mut c, first) = open_on(&s.full, &s).await;
    assert_eq!(
        c.path(),
        vigil_site::Path::Direct,
        "on loopback the QUIC path opens"
    );
    c.write_all(b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 29];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n");
    drop(c);
    const N: usize = 16 << 20;
    let (mut c, _) = open_on(&s.full, &s).await;
    let t = Instant::now();
    c.write_all(format!("SEND {N:<11}").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|b| *b == 0x5a),
            "bytes changed on the way"
        );
        total += n;
    }
    assert_eq!(total, N);
    println!(
        "FIGURE direct_first_open_ms {:.1}; direct (QUIC, loopback) {:.2} Gbit/s, {} MiB",
        first.as_secs_f64() * 1e3,
        N as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9,
        N >> 20
    );
    // The rendezvous knows the path the site's streams took.
    let st = s.rv.site_status("shop", "branch1").unwrap();
    assert!(st.connected);
    assert_eq!(st.path, Some(vigil_site::Path::Direct));
    assert!(st.streams_direct >= 2 && st.streams_relay >= 1, "{st:?}");
    // The relay over UDP was offered too; its pairing went when the direct path won.
    assert_eq!(
        s.rv.udp_pairings(),
        0,
        "the UDP relay's pairing outlived its stream's open"
    );
    // A refusal still comes back on the relay with every path offered.
    match s
        .full
        .open("branch1", "127.0.0.2", s.camera, Duration::from_secs(5))
        .await
    {
        Err(Error::Refused(r)) => assert!(r.contains("not in the site's camera networks"), "{r}"),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(c) => panic!("expected a refusal, got a stream on {}", c.path()),
    }
    std::fs::remove_dir_all(&s.dir).ok();
}

/// Reads `n` bytes the camera sends on `c` (after `SEND n`), checking each.
async fn receive(mut c: vigil_site::SiteStream, n: usize) {
    c.write_all(format!("SEND {n:<11}").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let k = c.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        assert!(buf[..k].iter().all(|b| *b == 0x5a));
        total += k;
    }
    assert_eq!(total, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_holds_a_site_to_its_bandwidth_limit() {
    // 4 000 kbit/s = 500 000 B/s each way for the whole site, burst 125 000 B.
    const KBPS: u32 = 4000;
    let rate = f64::from(KBPS) * 1000.0 / 8.0;
    let s = setup_limited("limit", Some(KBPS)).await;
    drop(open_when_up(&s).await);
    // Two streams at once share the site's limit: 2 × 512 KiB.
    const N: usize = 512 * 1024;
    let (a, _) = open_when_up(&s).await;
    let (b, _) = open_when_up(&s).await;
    let t = Instant::now();
    tokio::join!(receive(a, N), receive(b, N));
    let secs = t.elapsed().as_secs_f64();
    let expected = (2.0 * N as f64 - rate / 4.0) / rate;
    let kbps = 2.0 * N as f64 * 8.0 / secs / 1000.0;
    println!(
        "FIGURE relay_limit {KBPS} kbit/s: 2 streams × {} KiB in {secs:.2} s = {kbps:.0} kbit/s together (expected ≥ {expected:.2} s)",
        N >> 10
    );
    assert!(secs >= expected * 0.9, "faster than the limit: {secs:.2} s");
    assert!(
        secs <= expected * 1.5 + 0.5,
        "far slower than the limit: {secs:.2} s"
    );
    // Baseline in the same run: an unlimited site moves the same bytes far faster.
    let u = setup("nolimit").await;
    drop(open_when_up(&u).await);
    let (c, _) = open_when_up(&u).await;
    let t = Instant::now();
    receive(c, 2 * N).await;
    let unlimited = t.elapsed().as_secs_f64();
    println!(
        "FIGURE relay_unlimited: {} KiB in {unlimited:.3} s",
        (2 * N) >> 10
    );
    assert!(unlimited < secs / 3.0, "{unlimited} vs {secs}");
    std::fs::remove_dir_all(&s.dir).ok();
    std::fs::remove_dir_all(&u.dir).ok();
}

#[tokio::test]
async fn relays_only_what_is_allowed() {
    let s = setup("auth").await;
    let (mut c, _) = open_when_up(&s).await;
    c.write_all(b"OPTIONS rtsp://x").await.unwrap();
    c.write_all(b" RTSP/1.0\r\n\r\n").await.unwrap();
    let mut got = vec![0u8; 29];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n");

    let refused = |r: Result<vigil_site::SiteStream, Error>| match r {
        Err(Error::Refused(reason)) => reason,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a stream"),
    };
    let t = Duration::from_secs(5);
    let r = refused(s.link.open("branch2", "127.0.0.1", s.camera, t).await);
    assert!(r.contains("not connected"), "{r}");
    // An address outside the site's camera networks: the gateway refuses to dial it.
    let r = refused(s.link.open("branch1", "127.0.0.2", s.camera, t).await);
    assert!(r.contains("not in the site's camera networks"), "{r}");
    // A recorder of another namespace, and a wrong recorder token.
    let mut other = s.link.clone();
    other.namespace = "other".into();
    other.token = Token::new("other-secret");
    let r = refused(other.open("branch1", "127.0.0.1", s.camera, t).await);
    assert!(r.contains("not connected"), "another namespace's site: {r}");
    let mut wrong = s.link.clone();
    wrong.token = Token::new("guess");
    let r = refused(wrong.open("branch1", "127.0.0.1", s.camera, t).await);
    assert!(r.contains("not allowed") && !r.contains("guess"), "{r}");
    // A gateway with a wrong token never registers: its site stays unreachable.
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_throughput_against_plain_tcp() {
    let s = setup("tput").await;
    let (_, first_open) = open_when_up(&s).await;
    let mut opens = vec![];
    for _ in 0..20 {
        let (c, d) = open_when_up(&s).await;
        drop(c);
        opens.push(d.as_secs_f64() * 1e3);
    }
    opens.sort_by(f64::total_cmp);
    // Lean in the unit stage (debug build); the figures come from a release build.
    const N: usize = if cfg!(debug_assertions) {
        32 << 20
    } else {
        256 << 20
    };
    let recv_all = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(
                buf[..n].iter().all(|b| *b == 0x5a),
                "bytes changed on the way"
            );
            total += n;
        }
        total
    };
    let head = format!("SEND {N:<11}");
    // Baseline: the camera over plain loopback TCP.
    let t = Instant::now();
    let mut d = tokio::net::TcpStream::connect(("127.0.0.1", s.camera))
        .await
        .unwrap();
    d.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(recv_all(Box::new(d)).await, N);
    let direct = N as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9;
    // Through the relay: recorder ⇄ TLS ⇄ rendezvous ⇄ TLS ⇄ gateway ⇄ camera.
    let (mut c, _) = open_when_up(&s).await;
    let t = Instant::now();
    c.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(recv_all(Box::new(c)).await, N);
    let relayed = N as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9;
    println!(
        "FIGURE first_open_ms {:.1}; open_ms p50 {:.2} max {:.2} (n=20); throughput direct TCP {direct:.2} Gbit/s, through the relay (2 TLS legs, gateway and rendezvous in this process) {relayed:.2} Gbit/s, {} MiB",
        first_open.as_secs_f64() * 1e3,
        opens[opens.len() / 2],
        opens[opens.len() - 1],
        N >> 20
    );
    assert!(relayed > 0.0);
    std::fs::remove_dir_all(&s.dir).ok();
}

/// Opens a stream on `link`, sends `SEND n` and reads the n bytes, checking each; the time the
/// bytes took.
async fn fetch(link: &SiteLink, s: &Setup, n: usize) -> Duration {
    let (c, _) = open_on(link, s).await;
    let t = Instant::now();
    receive(c, n).await;
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_over_udp_carries_bytes_intact_and_counts_them() {
    let s = setup("udprelay").await;
    drop(open_when_up(&s).await);
    // Without the direct path (as behind a symmetric NAT), the relay over UDP carries the stream.
    let udp = s.full.clone().without_direct();
    let (mut c, first) = open_on(&udp, &s).await;
    assert_eq!(c.path(), vigil_site::Path::Relay);
    assert_eq!(
        c.transport(),
        "udp",
        "the relay over UDP is preferred to TCP"
    );
    c.write_all(b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 29];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n");
    assert_eq!(s.rv.udp_pairings(), 1);
    drop(c);
    let before = s.rv.site_status("shop", "branch1").unwrap();
    const N: usize = if cfg!(debug_assertions) {
        16 << 20
    } else {
        256 << 20
    };
    let over_udp = fetch(&udp, &s, N).await;
    // The same through the relay over TCP, in the same run.
    let tcp = s.full.clone().without_direct().without_relay_udp();
    let (c, _) = open_on(&tcp, &s).await;
    assert_eq!((c.path(), c.transport()), (vigil_site::Path::Relay, "tcp"));
    drop(c);
    let over_tcp = fetch(&tcp, &s, N).await;
    println!(
        "FIGURE udp_relay_first_open_ms {:.1}; {} MiB through the relay over UDP (QUIC end to end) {:.2} Gbit/s, over TCP (2 TLS legs) {:.2} Gbit/s (gateway, rendezvous and recorder in this process)",
        first.as_secs_f64() * 1e3,
        N >> 20,
        N as f64 * 8.0 / over_udp.as_secs_f64() / 1e9,
        N as f64 * 8.0 / over_tcp.as_secs_f64() / 1e9,
    );
    // The site's status counts the UDP relay's bytes (handed over every second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.rv.site_status("shop", "branch1").unwrap();
        // From the site: the camera's bytes on both relays, plus QUIC's and TLS's overhead.
        if st.bytes_from_site >= before.bytes_from_site + 2 * N as u64 {
            assert_eq!(st.path, Some(vigil_site::Path::Relay));
            assert!(st.streams_relay >= 4, "{st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the UDP relay's bytes are not counted: {st:?} (before {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_over_udp_is_no_open_relay() {
    use vigil_site::udprelay;
    let s = setup("udpopen").await;
    drop(open_when_up(&s).await);
    let server = vigil_site::direct::udp_server(&s.link.rendezvous)
        .await
        .unwrap();
    // A stranger's registration with a made-up pairing is not answered, and nothing it sends is
    // forwarded anywhere (no pairing exists).
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let id = udprelay::new_id().unwrap();
    assert!(matches!(
        udprelay::register_gateway(&stranger, server, &id).await,
        Err(Error::Timeout(_))
    ));
    assert_eq!(s.rv.udp_pairings(), 0);
    // A live stream's pairing exists only while an authenticated recorder's stream uses it; a
    // stranger guessing another id gets nothing, and the stream is undisturbed.
    let udp = s.full.clone().without_direct();
    let (mut c, _) = open_on(&udp, &s).await;
    assert_eq!(c.transport(), "udp");
    assert!(matches!(
        udprelay::register_gateway(&stranger, server, &udprelay::new_id().unwrap()).await,
        Err(Error::Timeout(_))
    ));
    stranger.send_to(b"hello", server).await.unwrap();
    c.write_all(b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 29];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"OPTIONS rtsp://x RTSP/1.0\r\n\r\n");
    // A recorder of another namespace gets no pairing: it is refused before any is made.
    let mut other = udp.clone();
    other.namespace = "other".into();
    other.token = Token::new("other-secret");
    assert!(
        other
            .open("branch1", "127.0.0.1", s.camera, Duration::from_secs(5))
            .await
            .is_err()
    );
    assert_eq!(s.rv.udp_pairings(), 1, "only the live stream's pairing");
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_over_udp_holds_a_site_to_its_bandwidth_limit() {
    // 4 000 kbit/s = 500 000 B/s each way for the whole site, burst 125 000 B: datagrams over
    // the limit are dropped, QUIC's congestion control slows down.
    const KBPS: u32 = 4000;
    let rate = f64::from(KBPS) * 1000.0 / 8.0;
    let s = setup_limited("udplimit", Some(KBPS)).await;
    drop(open_when_up(&s).await);
    let udp = s.full.clone().without_direct();
    const N: usize = 1024 * 1024;
    let (c, _) = open_on(&udp, &s).await;
    assert_eq!(c.transport(), "udp");
    let t = Instant::now();
    receive(c, N).await;
    let secs = t.elapsed().as_secs_f64();
    let expected = (N as f64 - rate / 4.0) / rate;
    let kbps = N as f64 * 8.0 / secs / 1000.0;
    println!(
        "FIGURE udp_relay_limit {KBPS} kbit/s: {} KiB in {secs:.2} s = {kbps:.0} kbit/s (expected ≥ {expected:.2} s)",
        N >> 10
    );
    assert!(secs >= expected * 0.9, "faster than the limit: {secs:.2} s");
    assert!(
        secs <= expected * 3.0 + 1.0,
        "far slower than the limit: {secs:.2} s"
    );
    std::fs::remove_dir_all(&s.dir).ok();
}
