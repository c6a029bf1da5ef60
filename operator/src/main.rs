//! `vigil-operator`: the Vigil operator binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
            for (_, crd) in vigil_operator::crd::all() {
                let yaml =
                    vigil_operator::crd::to_yaml(&crd).map_err(|e| Error::Check(e.to_string()))?;
                println!("---\n{yaml}");
            }
            Ok(())
        }
    }
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
