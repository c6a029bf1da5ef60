//! Relay figures for `docs/benchmarks.md` (issue #15 part 8), with `e2e/sites/relay_bench.sh`:
//!
//! - `relay_bench camera --listen ADDR`: a "camera" that echoes what it reads, or after a
//!   `SEND n` header (16 bytes) sends n bytes.
//! - `relay_bench client --rendezvous ADDR --ca-file F --token-file F --namespace NS --site S
//!   --camera HOST:PORT --mode plain|udp|tcp|direct [--bytes N] [--echo K]`: opens one stream
//!   (plain: TCP straight to the camera, the baseline; udp: the relay over UDP; tcp: the relay
//!   over TCP; direct: every path offered), then receives N bytes (throughput) and/or sends K
//!   small echoes one after the other (round-trip times). Prints one `RESULT` line.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Camera {
        #[arg(long)]
        listen: String,
    },
    Client {
        #[arg(long)]
        rendezvous: String,
        #[arg(long)]
        ca_file: std::path::PathBuf,
        #[arg(long)]
        token_file: std::path::PathBuf,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        camera: String,
        #[arg(long)]
        mode: String,
        #[arg(long, default_value_t = 0)]
        bytes: usize,
        #[arg(long, default_value_t = 0)]
        echo: usize,
    },
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

async fn camera(listen: String) {
    let l = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            if &head[..5] == b"SEND " {
                let Some(n) = std::str::from_utf8(&head[5..])
                    .ok()
                    .and_then(|t| t.trim().parse::<usize>().ok())
                else {
                    return;
                };
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
}

#[allow(clippy::too_many_arguments)]
async fn client(
    rendezvous: String,
    ca: std::path::PathBuf,
    token: std::path::PathBuf,
    namespace: String,
    site: String,
    camera: String,
    mode: String,
    bytes: usize,
    echo: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let link =
        vigil_site::SiteLink::from_files(&rendezvous, "vigil-rendezvous", &ca, &token, &namespace)?;
    let (host, port) = camera.rsplit_once(':').ok_or("--camera HOST:PORT")?;
    let port: u16 = port.parse()?;
    let t = Instant::now();
    let (mut c, how): (Box<dyn Duplex>, String) = match mode.as_str() {
        "plain" => {
            let s = tokio::net::TcpStream::connect(&camera).await?;
            s.set_nodelay(true)?;
            (Box::new(s), "plain tcp".into())
        }
        m => {
            let link = match m {
                "udp" => link.without_direct(),
                "tcp" => link.relay_only(),
                "direct" => link,
                _ => return Err("--mode plain|udp|tcp|direct".into()),
            };
            let s = link
                .open(&site, host, port, Duration::from_secs(10))
                .await?;
            let how = format!("{} over {}", s.path(), s.transport());
            (Box::new(s), how)
        }
    };
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut out = format!("RESULT mode={mode} path=\"{how}\" open_ms={open_ms:.2}");
    if echo > 0 {
        // A 16-byte header the camera echoes, then 64-byte pings one after the other.
        c.write_all(b"ECHO            ").await?;
        let mut h = [0u8; 16];
        c.read_exact(&mut h).await?;
        let ping = [0x42u8; 64];
        let mut back = [0u8; 64];
        let mut rtts = Vec::with_capacity(echo);
        for _ in 0..echo {
            let t = Instant::now();
            c.write_all(&ping).await?;
            c.read_exact(&mut back).await?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        rtts.sort_by(f64::total_cmp);
        out += &format!(
            " echo_n={echo} rtt_us_p50={:.1} rtt_us_p99={:.1}",
            rtts[echo / 2],
            rtts[echo * 99 / 100]
        );
    }
    if bytes > 0 {
        let t = Instant::now();
        c.write_all(format!("SEND {bytes:<11}").as_bytes()).await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        if total != bytes {
            return Err(format!("got {total} bytes, not {bytes}").into());
        }
        let secs = t.elapsed().as_secs_f64();
        out += &format!(
            " bytes={bytes} secs={secs:.3} gbit_s={:.3}",
            bytes as f64 * 8.0 / secs / 1e9
        );
    }
    println!("{out}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().cmd {
        Cmd::Camera { listen } => {
            camera(listen).await;
            Ok(())
        }
        Cmd::Client {
            rendezvous,
            ca_file,
            token_file,
            namespace,
            site,
            camera,
            mode,
            bytes,
            echo,
        } => {
            client(
                rendezvous, ca_file, token_file, namespace, site, camera, mode, bytes, echo,
            )
            .await
        }
    }
}
