//! `vigil-operator`: the Vigil operator binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vigil_operator::controller::{self, Caches, Context, children::RecorderSettings};
use vigil_operator::leader::LeaderElection;
use vigil_operator::metrics::{self, Metrics};
use vigil_operator::{doctor, error::Error, webhook};

#[derive(Parser)]
#[command(
    name = "vigil-operator",
    version,
    about = "Vigil operator: places cameras on recorder pods, detects failed recorders, moves their \
             cameras and backfills the gaps.",
    long_about = None
)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, default_value = "text", env = "VIGIL_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: reconcile RecorderPools and Cameras, place cameras on recorders, detect
    /// failed recorders and move their cameras. With leader election, only one replica acts.
    Run {
        /// Namespace of the leader-election Lease (normally the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "vigil-system")]
        namespace: String,
        /// This replica's identity in leader election.
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Disable leader election (a single replica).
        #[arg(long)]
        no_leader_election: bool,
        /// A leader that has not renewed for this long is replaced, seconds.
        #[arg(long, default_value_t = 5)]
        leader_lease_seconds: u64,
        /// Recorder image for pools that do not override it.
        #[arg(long, env = "VIGIL_RECORDER_IMAGE", default_value = concat!("ghcr.io/vigil-nvr/vigil-recorder:", env!("CARGO_PKG_VERSION")))]
        recorder_image: String,
        #[arg(
            long,
            env = "VIGIL_RECORDER_IMAGE_PULL_POLICY",
            default_value = "IfNotPresent"
        )]
        recorder_image_pull_policy: String,
        /// The longest a quiet pool goes without a reconcile, milliseconds (a safety net: pools
        /// are reconciled on changes and when the first of their Leases could expire).
        #[arg(long, default_value_t = 300_000)]
        resync_ms: u64,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Only manage Vigil objects in this namespace (default: all namespaces).
        #[arg(long, env = "VIGIL_WATCH_NAMESPACE")]
        watch_namespace: Option<String>,
    },
    /// Check that the API server answers, Vigil's CRDs are served and this identity (kubeconfig or
    /// in-cluster ServiceAccount) can read Cameras, RecorderPools and Backfills. Exit 1 if not.
    Doctor {
        /// Namespace to check; default all namespaces.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Serve the validating admission webhook (HTTPS, path /validate). It refuses objects that
    /// the CRD schema cannot check, e.g. a Backfill window that ends before it starts.
    Webhook {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// PEM certificate; with --tls-key. Without both, a self-signed one is made for --dns-name.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Names for the self-signed certificate (repeatable).
        #[arg(long = "dns-name", default_value = "localhost")]
        dns_names: Vec<String>,
        /// Write the self-signed certificate (the CA bundle for the webhook configuration) here.
        #[arg(long)]
        write_ca: Option<PathBuf>,
    },
    /// Print Vigil's CustomResourceDefinitions as YAML (the files in crds/).
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    vigil_operator::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Run {
            namespace,
            identity,
            no_leader_election,
            leader_lease_seconds,
            recorder_image,
            recorder_image_pull_policy,
            resync_ms,
            listen,
            watch_namespace,
        } => {
            let client = kube::Client::try_default().await?;
            let metrics = Arc::new(Metrics::default());
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Error::Io {
                    path: listen.to_string(),
                    source: e,
                })?;
            let http = axum::serve(listener, metrics::router(metrics.clone()));
            tokio::spawn(async move {
                if let Err(e) = http.await {
                    tracing::error!(error = %e, "metrics server stopped");
                }
            });
            tokio::select! {
                v = client.apiserver_version() => { v?; }
                () = shutdown_signal() => return Ok(()),
            }
            metrics.ready.store(true, Ordering::Relaxed);
            let settings = RecorderSettings {
                image: recorder_image,
                image_pull_policy: recorder_image_pull_policy,
                cluster_networks: std::env::var(vigil_api::netpolicy::CLUSTER_NETWORKS_ENV)
                    .unwrap_or_default(),
                site_rendezvous: std::env::var("VIGIL_SITE_RENDEZVOUS").unwrap_or_default(),
                site_server_name: std::env::var("VIGIL_SITE_SERVER_NAME").unwrap_or_default(),
            };
            let (caches, cache_writers) = Caches::new();
            let mut ctx = Context::new(
                client.clone(),
                metrics.clone(),
                settings,
                caches,
                Duration::from_millis(resync_ms),
            );
            ctx.pdb_api_version = controller::discover_pdb_api(&client).await;
            ctx.cron_job_api_version = controller::discover_cron_job_api(&client).await;
            ctx.watch_namespace = watch_namespace;
            let ctx = Arc::new(ctx);
            if no_leader_election {
                metrics.is_leader.set(1);
                tokio::select! {
                    () = controller::run(ctx, cache_writers) => {}
                    () = shutdown_signal() => tracing::info!("SIGTERM: stopping"),
                }
                return Ok(());
            }
            let identity =
                identity.unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
            let election = LeaderElection::new(
                client,
                &namespace,
                "vigil-operator-leader",
                &identity,
                Duration::from_secs(leader_lease_seconds),
            );
            let acquired_at = tokio::select! {
                at = election.acquire() => at,
                () = shutdown_signal() => return Ok(()),
            };
            metrics.is_leader.set(1);
            tokio::select! {
                () = controller::run(ctx, cache_writers) => {
                    election.release().await;
                    Ok(())
                }
                lost = election.keep(acquired_at) => Err(lost),
                () = shutdown_signal() => {
                    // Reconciles are idempotent, so stopping mid-way is safe; hand over at once.
                    tracing::info!("SIGTERM: stepping down");
                    election.release().await;
                    Ok(())
                }
            }
        }
        Command::Doctor { namespace } => {
            let client = kube::Client::try_default().await?;
            doctor::doctor(&client, namespace.as_deref()).await
        }
        Command::Webhook {
            listen,
            tls_cert,
            tls_key,
            dns_names,
            write_ca,
        } => {
            let cert = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => webhook::ServingCert {
                    cert_pem: read(&c)?,
                    key_pem: read(&k)?,
                },
                _ => {
                    let cert = webhook::self_signed(&dns_names)?;
                    if let Some(path) = write_ca {
                        std::fs::write(&path, &cert.cert_pem).map_err(|e| Error::Io {
                            path: path.display().to_string(),
                            source: e,
                        })?;
                    }
                    cert
                }
            };
            webhook::serve(listen, cert).await
        }
        Command::Crds => {
            for (_, crd) in vigil_api::crd::all() {
                let yaml = vigil_api::crd::to_yaml(&crd)?;
                println!("---\n{yaml}");
            }
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "vigil-operator".into())
}

fn read(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
