//! `vigil-gateway`: the site's side of the tunnel. Dials out only; nothing listens.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Vigil site gateway: reaches the cluster's rendezvous service and opens connections to the site's cameras for recorders. Dials out only."
)]
struct Args {
    /// The rendezvous service, `host:port`.
    #[arg(long, env = "VIGIL_RENDEZVOUS")]
    rendezvous: String,
    /// The name on the rendezvous service's certificate.
    #[arg(
        long,
        env = "VIGIL_RENDEZVOUS_NAME",
        default_value = "vigil-rendezvous"
    )]
    server_name: String,
    /// PEM file with the CA that signed the rendezvous service's certificate (pinned).
    #[arg(long, env = "VIGIL_CA_FILE")]
    ca_file: PathBuf,
    /// The Site's namespace.
    #[arg(long, env = "VIGIL_NAMESPACE", default_value = "default")]
    namespace: String,
    /// The Site's name.
    #[arg(long, env = "VIGIL_SITE")]
    site: String,
    /// File holding the site's token (the `token` key of the Site's Secret).
    #[arg(long, env = "VIGIL_TOKEN_FILE")]
    token_file: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let gw = (|| {
        Ok::<_, vigil_site::Error>(vigil_site::gateway::Gateway {
            rendezvous: a.rendezvous.clone(),
            server_name: vigil_site::tls::server_name(&a.server_name)?,
            tls: vigil_site::tls::client_config(&a.ca_file)?,
            namespace: a.namespace.clone(),
            site: a.site.clone(),
            token: vigil_site::proto::Token::from_file(&a.token_file)?,
        })
    })();
    match gw {
        Ok(gw) => {
            tracing::info!(rendezvous = %a.rendezvous, site = %format!("{}/{}", a.namespace, a.site), "vigil-gateway starting");
            gw.run().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
