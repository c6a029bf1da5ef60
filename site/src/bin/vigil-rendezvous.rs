//! `vigil-rendezvous`: the cluster's rendezvous and relay service (file-configured).

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Vigil rendezvous and relay service for remote sites."
)]
struct Args {
    /// YAML configuration: listen address, certificate, sites and recorder tokens.
    #[arg(long, env = "VIGIL_RENDEZVOUS_CONFIG")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let r = async {
        let cfg = vigil_site::rendezvous::Config::load(&a.config)?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| vigil_site::Error::io(format!("listening on {}", cfg.listen), e))?;
        tracing::info!(listen = %cfg.listen, sites = cfg.sites.len(), "vigil-rendezvous listening");
        vigil_site::rendezvous::Rendezvous::new(cfg)?
            .serve(listener)
            .await
    }
    .await;
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-rendezvous: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
