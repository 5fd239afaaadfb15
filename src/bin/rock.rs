//! `rock`: runs a command so that its network connections survive failures.

use clap::Parser;

/// Run a command over reliable, resumable connections.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Redirect the command's ssh transport through a rockd started on the
    /// remote host (ssh, scp, sftp).
    #[arg(short = 'd')]
    daemon: bool,
    /// The command to run and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "rock {}: running `{}` is not implemented yet",
        env!("CARGO_PKG_VERSION"),
        args.command.join(" ")
    )
}
