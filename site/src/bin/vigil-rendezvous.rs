//! `vigil-rendezvous`: the cluster's rendezvous and relay service. File mode (`--config`) or
//! Kubernetes mode (`--kubernetes`: `Site` resources and their Secrets, watched; Site status
//! written).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vigil_site::Error;
use vigil_site::kubernetes::{self, KubeRegistry};
use vigil_site::rendezvous::{Config, Rendezvous};

#[derive(Parser)]
#[command(
    version,
    about = "Vigil rendezvous and relay service for remote sites."
)]
struct Args {
    /// File mode: YAML configuration with the listen address, certificate, sites and recorder
    /// tokens.
    #[arg(
        long,
        env = "VIGIL_RENDEZVOUS_CONFIG",
        required_unless_present = "kubernetes"
    )]
    config: Option<PathBuf>,
    /// Kubernetes mode: the sites are the `Site` resources and their credentials Secrets
    /// (watched; changes take effect without a restart); each Site's status is written.
    #[arg(long, env = "VIGIL_RENDEZVOUS_KUBERNETES", conflicts_with = "config")]
    kubernetes: bool,
    /// Kubernetes mode: serve only this namespace (default: all namespaces).
    #[arg(long, env = "VIGIL_RENDEZVOUS_NAMESPACE")]
    namespace: Option<String>,
    /// Kubernetes mode: the Secret in each namespace whose `token` key recorders present.
    #[arg(long, env = "VIGIL_RENDEZVOUS_RECORDER_SECRET", default_value = kubernetes::RECORDER_SECRET)]
    recorder_secret: String,
    /// Kubernetes mode: `address:port` to listen on (TCP/TLS; UDP probes on it and the next).
    #[arg(long, env = "VIGIL_RENDEZVOUS_LISTEN", default_value = "0.0.0.0:7443")]
    listen: String,
    /// Kubernetes mode: the TLS certificate (PEM).
    #[arg(
        long,
        env = "VIGIL_RENDEZVOUS_CERT_FILE",
        required_if_eq("kubernetes", "true")
    )]
    cert_file: Option<PathBuf>,
    /// Kubernetes mode: the TLS key (PEM).
    #[arg(
        long,
        env = "VIGIL_RENDEZVOUS_KEY_FILE",
        required_if_eq("kubernetes", "true")
    )]
    key_file: Option<PathBuf>,
    /// Kubernetes mode: how often Site status is considered (a change is written at once, the
    /// counters at most every 30 s).
    #[arg(long, env = "VIGIL_RENDEZVOUS_STATUS_SECONDS", default_value_t = 2.0)]
    status_seconds: f64,
    /// `address:port` for `/metrics`, `/healthz` and `/readyz` (plain HTTP, as the operator and
    /// the recorders serve theirs). Unset: not served.
    #[arg(long, env = "VIGIL_RENDEZVOUS_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Streams recorders may open to each site per minute (bursts of a quarter of it, at least
    /// 10); more are refused until the site's bucket refills. Unset or 0: unlimited.
    #[arg(long, env = "VIGIL_RENDEZVOUS_SITE_STREAMS_PER_MINUTE")]
    site_streams_per_minute: Option<u32>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    vigil_api::install_crypto_provider();
    let r = match &a.config {
        Some(path) => file_mode(path, &a).await,
        None => kubernetes_mode(&a).await,
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-rendezvous: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn file_mode(path: &std::path::Path, a: &Args) -> vigil_site::Result<()> {
    let cfg = Config::load(path)?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", cfg.listen), e))?;
    tracing::info!(listen = %cfg.listen, sites = cfg.sites.len(), "vigil-rendezvous listening");
    let rv = Rendezvous::new(cfg)?;
    rv.set_site_streams_per_minute(a.site_streams_per_minute);
    let _metrics = serve_metrics(a.metrics_listen.as_deref(), &rv).await?;
    rv.serve(listener).await
}

/// Starts `/metrics` (with `/healthz`, `/readyz`) when an address is given; aborted on drop.
async fn serve_metrics(
    listen: Option<&str>,
    rv: &Arc<Rendezvous>,
) -> vigil_site::Result<Option<AbortOnDrop>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("listening on {listen} (metrics)"), e))?;
    tracing::info!(listen = %listen, "serving /metrics, /healthz, /readyz");
    let m = rv.metrics();
    Ok(Some(AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = vigil_site::metrics::serve(listener, m).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    }))))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn kubernetes_mode(a: &Args) -> vigil_site::Result<()> {
    let (Some(cert), Some(key)) = (&a.cert_file, &a.key_file) else {
        return Err(Error::Config(
            "--kubernetes needs --cert-file and --key-file".into(),
        ));
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("Kubernetes client: {e}")))?;
    let reg =
        KubeRegistry::start(client.clone(), a.namespace.as_deref(), &a.recorder_secret).await?;
    let rv = Rendezvous::with_registry(cert, key, reg.clone())?;
    rv.set_site_streams_per_minute(a.site_streams_per_minute);
    let _metrics = serve_metrics(a.metrics_listen.as_deref(), &rv).await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", a.listen), e))?;
    tracing::info!(listen = %a.listen, namespace = a.namespace.as_deref().unwrap_or("(all)"),
        sites = reg.sites().len(), "vigil-rendezvous listening (Kubernetes mode)");
    let every = Duration::from_secs_f64(a.status_seconds.clamp(0.2, 60.0));
    let status = tokio::spawn(kubernetes::status_loop(client, Arc::clone(&rv), reg, every));
    let r = rv.serve(listener).await;
    status.abort();
    r
}
