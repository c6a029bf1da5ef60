//! `vigil-access`: the access point — the one address users talk to: query, HLS playback, MP4
//! export and the web page (`serve`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_config::cli::{init_logs, run_to_exit};

#[derive(Parser)]
#[command(
    name = "vigil-access",
    version,
    about = "Vigil's access point: query, playback, export and the web page"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"], env = "VIGIL_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Query and playback server: recordings as JSON, HLS, MP4 export, web page at `/`.
    Serve(vigil_access::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match cli.cmd {
        Cmd::Serve(args) => run_to_exit(&mut runtime, "serve", vigil_access::run(args)),
    }
}
