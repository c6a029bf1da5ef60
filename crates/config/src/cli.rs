//! What every Vigil binary of the data path (`vigil-recorder`, `vigil-jobs`, `vigil-access`)
//! does the same way at start and exit: logs to stderr as text or JSON, and one subcommand run
//! to completion whose failure is logged with all its causes and becomes the exit status.

use std::process::ExitCode;

use tracing::error;

/// Logs to stderr; `RUST_LOG` filters (default `info`); `format` is `text` or `json`.
pub fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Runs one subcommand to completion on a runtime from `runtime`; logs a failure with its
/// causes and turns it into the exit code.
pub fn run_to_exit<T, E: std::error::Error + 'static>(
    runtime: &mut tokio::runtime::Builder,
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> ExitCode {
    let rt = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %vigil_store::error::chain(&e), "{what} failed");
            ExitCode::FAILURE
        }
    }
}
