//! `rockd`: the remote end of `rock -d`. Started by rock over ssh; reads the
//! session key from stdin, reports its port, detaches and bridges rock
//! links to the sshd it was started through.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rock::rockd::{self, RockdOptions};
use rock_proto::Config;

/// The remote end of `rock -d`; started by rock, not by hand.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on for rock links (repeatable).
    #[arg(long, default_values = ["[::]:0", "0.0.0.0:0"])]
    listen: Vec<SocketAddr>,
    /// Listen on a port in this inclusive range, e.g. 60000-60100.
    #[arg(long, value_parser = parse_range)]
    port_range: Option<(u16, u16)>,
    /// The sshd to bridge to (host:port); by default the one in SSH_CONNECTION.
    #[arg(long)]
    target: Option<String>,
    /// Seconds without any link before the session is given up (default:
    /// the engine's, as rock's).
    #[arg(long, default_value_t = Config::default().suspend_timeout.as_secs())]
    suspend_timeout: u64,
    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = millis(Config::default().heartbeat_interval))]
    heartbeat_ms: u64,
    /// Milliseconds of silence after which a link is declared dead.
    #[arg(long, default_value_t = millis(Config::default().link_timeout))]
    link_timeout_ms: u64,
    /// Stay in the foreground instead of detaching.
    #[arg(long)]
    foreground: bool,
    /// Log file (default: rockd.log in the user's state directory).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Seconds to wait for rock's first link before giving the session up.
    #[arg(long, default_value_t = 120)]
    first_link_timeout: u64,
}

/// `d` in whole milliseconds, as the options take it.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST")?;
    let (a, b) = (a.parse::<u16>(), b.parse::<u16>());
    match (a, b) {
        (Ok(a), Ok(b)) if a <= b && a > 0 => Ok((a, b)),
        _ => Err(format!("{s:?} is not a port range like 60000-60100")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = RockdOptions {
        listen: args.listen,
        port_range: args.port_range,
        target: args.target,
        config: Config {
            suspend_timeout: Duration::from_secs(args.suspend_timeout),
            heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
            link_timeout: Duration::from_millis(args.link_timeout_ms),
            ..Config::default()
        },
        foreground: args.foreground,
        log: args.log,
        first_link_timeout: Duration::from_secs(args.first_link_timeout),
    };
    let ssh_connection = std::env::var("SSH_CONNECTION").ok();
    ExitCode::from(rockd::run(
        options,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout(),
        ssh_connection.as_deref(),
    ))
}
