//! `rock`: runs a command so that its network connections survive link
//! loss, address changes and long outages. Also the proxy and askpass
//! helpers of `rock -d`, when started under their names.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rock::config::{self, ReconnectMode};
use rock::launch::{self, LaunchOptions};
use rock::local::helper::{self, Helper};
use rock::local::rundir;
use rock::status;

/// Run a command over reliable, resumable connections.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    override_usage = "rock [-l] [-v] [--reconnect MODE] [--install-rockd] [-d [USER]] COMMAND [ARG]...\n       rock status\n       rock config check [HOST]"
)]
struct Args {
    /// Carry the command's ssh transport through a rockd started on the
    /// remote host (ssh, scp, sftp, rsync, git). An optional USER is the
    /// remote login.
    #[arg(short = 'd', num_args = 0..=1, default_missing_value = "", value_name = "USER")]
    daemon: Option<String>,
    /// Reconnect suspended links to 127.0.0.1 instead of the host's name.
    #[arg(short = 'l')]
    localhost: bool,
    /// Load the checkpoint library (not supported).
    #[arg(short = 'k', hide = true)]
    checkpoint: bool,
    /// More log output on stderr (repeat for more).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Path of rockd on the remote host, if it is not on PATH.
    #[arg(long, value_name = "PATH")]
    rockd: Option<String>,
    /// Seconds a session waits for a lost link before giving up (default:
    /// the host's profile, else 72 hours).
    #[arg(long, value_name = "SECS")]
    suspend_timeout: Option<u64>,
    /// How new links reach rockd: direct (to rockd's own port), ssh
    /// (through a new ssh connection: only the ssh port need be open) or
    /// auto (direct, else ssh). Default: the host's profile, else direct.
    #[arg(long, value_name = "MODE")]
    reconnect: Option<ReconnectMode>,
    /// If the remote host has no rockd (or an incompatible one), copy this
    /// rock's rockd to ~/.local/lib/rock/ there without asking, verify its
    /// sha256 and use it (auto_install = "yes" for this run).
    #[arg(long)]
    install_rockd: bool,
    /// The command to run and its arguments.
    #[arg(value_name = "COMMAND", required = true)]
    command: Vec<OsString>,
}

/// Programs `-d` carries; `-d ssh` means no user was given.
const CARRIED: [&str; 5] = ["ssh", "scp", "sftp", "rsync", "git"];
/// rock's options that take a value in the next word.
const VALUED: [&str; 3] = ["--rockd", "--suspend-timeout", "--reconnect"];

/// Where rock's own options end and the command begins, as with env(1):
/// at the first word that is not an option of rock's (after `-d`, a word
/// that is not a carried program is the user), or after `--`. Clap must
/// never see the command's options: `rock -d ssh -l alice host` passes
/// `-l alice` to ssh.
fn command_start(args: &[OsString]) -> usize {
    let is_program = |w: &OsString| {
        std::path::Path::new(w)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| CARRIED.contains(&n))
    };
    let mut i = 1;
    while let Some(word) = args.get(i) {
        let text = word.to_string_lossy();
        if text == "--" {
            return i + 1;
        }
        if !text.starts_with('-') || text == "-" {
            return i;
        }
        i += 1;
        let user_follows = text == "-d"
            && args
                .get(i)
                .is_some_and(|w| !w.to_string_lossy().starts_with('-') && !is_program(w));
        if user_follows || VALUED.contains(&text.as_ref()) {
            i += 1;
        }
    }
    i
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(helper) = argv.first().and_then(|a| Helper::from_argv0(a)) {
        return run_helper(helper, argv[1..].to_vec());
    }
    if argv.get(1).is_some_and(|a| a == "config") {
        return config_command(&argv[2..]);
    }
    if argv.get(1).is_some_and(|a| a == "status") {
        return status_command(&argv[2..]);
    }
    let start = command_start(&argv).min(argv.len());
    let (own, command) = argv.split_at(start);
    let mut own = own.to_vec();
    if own.last().is_some_and(|w| w == "--") {
        own.pop();
    }
    // Clap sees rock's options, then the command as one opaque operand list.
    let mut args = Args::parse_from(
        own.iter()
            .cloned()
            .chain((!command.is_empty()).then(|| OsString::from("--")))
            .chain(command.iter().cloned()),
    );
    args.command = command.to_vec();
    init_logging(args.verbose);
    match run(args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(255)
        }
    }
}

fn run(args: Args) -> anyhow::Result<i32> {
    if args.checkpoint {
        anyhow::bail!("rock: -k (checkpointing) is not supported by this rock");
    }
    let Some(user) = args.daemon else {
        anyhow::bail!(
            "rock: running a command without -d needs librocks.so, which this build does not \
             include yet; use `rock -d ssh host`, `rock -d scp ...` or `rock -d sftp host`"
        );
    };
    let profiles = config::Config::load(&config::default_paths())?;
    let options = LaunchOptions {
        command: args.command,
        user: (!user.is_empty()).then_some(user),
        localhost: args.localhost,
        rockd_path: args.rockd,
        suspend_timeout: args.suspend_timeout.map(Duration::from_secs),
        reconnect: args.reconnect,
        install_rockd: args.install_rockd,
        profiles,
        exit_linger: Duration::from_secs(10),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(launch::run(options)) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("{e}");
            Ok(e.exit_code())
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `rock config check [HOST]`: validates the configuration files and
/// prints the settings in force for HOST, with where each comes from.
fn config_command(args: &[OsString]) -> ExitCode {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let host = match words.as_slice() {
        [check] if check == "check" => None,
        [check, host] if check == "check" => Some(host.as_str()),
        _ => {
            eprintln!("usage: rock config check [HOST]");
            return ExitCode::from(2);
        }
    };
    let paths = config::default_paths();
    let profiles = match config::Config::load(&paths) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rock: {e}");
            return ExitCode::FAILURE;
        }
    };
    for path in &paths {
        let state = if path.exists() { "ok" } else { "absent" };
        println!("{}: {state}", path.display());
    }
    if let Some(host) = host {
        let e = profiles.for_host(host);
        println!("settings for {host}:");
        fn line<T: std::fmt::Debug>(key: &str, v: &Option<config::Sourced<T>>, default: &str) {
            match v {
                Some(s) => println!("  {key} = {:?}    # {}", s.value, s.from),
                None => println!("  {key} = {default}    # built-in"),
            }
        }
        line(
            "rockd_path",
            &e.rockd_path,
            "rockd on PATH, ~/.local/bin, ~/.cargo/bin",
        );
        line("suspend_timeout", &e.suspend_timeout, "72h");
        line("heartbeat_interval", &e.heartbeat_interval, "1s");
        line("link_timeout", &e.link_timeout, "6s");
        line("replay_buffer", &e.replay_buffer, "4MiB");
        line("reconnect_to_localhost", &e.reconnect_to_localhost, "false");
        match &e.reconnect {
            Some(s) => println!("  reconnect = \"{}\"    # {}", s.value, s.from),
            None => println!("  reconnect = \"direct\"    # built-in"),
        }
        match &e.rockd_listen {
            Some(s) => println!("  rockd_listen = \"{}\"    # {}", s.value, s.from),
            None => println!("  rockd_listen = all addresses    # built-in"),
        }
        match &e.rockd_port_range {
            Some(s) => println!(
                "  rockd_port_range = \"{}-{}\"    # {}",
                s.value.0, s.value.1, s.from
            ),
            None => println!("  rockd_port_range = any free port    # built-in"),
        }
        line("sign_of_life", &e.sign_of_life, "true");
        match &e.auto_install {
            Some(s) => println!("  auto_install = \"{}\"    # {}", s.value, s.from),
            None => println!("  auto_install = \"ask\"    # built-in"),
        }
        line(
            "rockd_binary",
            &e.rockd_binary,
            "rockd next to rock, else on PATH",
        );
    }
    ExitCode::SUCCESS
}

/// `rock status`: this user's sessions, one line each.
fn status_command(args: &[OsString]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("usage: rock status");
        return ExitCode::from(2);
    }
    let listing = rundir::user_dir()
        .map_err(|e| e.to_string())
        .and_then(|dir| status::list(&dir).map_err(|e| e.to_string()));
    match listing {
        Ok(listing) => {
            print!("{}", status::render(&listing, std::time::SystemTime::now()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rock status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The helpers the inner ssh starts; see `rock::local::helper`.
fn run_helper(helper: Helper, args: Vec<OsString>) -> ExitCode {
    match helper {
        Helper::Proxy { dir } => match helper::run_proxy(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rock-proxy: {e}");
                ExitCode::from(255)
            }
        },
        Helper::Askpass { dir } => {
            let prompt = args
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default();
            match helper::ask(&dir, &prompt) {
                Ok(Some(password)) => {
                    println!("{}", password.as_str());
                    ExitCode::SUCCESS
                }
                Ok(None) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("rock-askpass: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> (Vec<String>, Vec<String>) {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        let at = command_start(&args).min(args.len());
        let strings = |a: &[OsString]| a.iter().map(|w| w.to_string_lossy().into_owned()).collect();
        (strings(&args[..at]), strings(&args[at..]))
    }

    #[test]
    fn rock_options_end_where_the_command_begins() {
        assert_eq!(
            split("rock -d ssh -l alice host").1,
            ["ssh", "-l", "alice", "host"]
        );
        assert_eq!(split("rock -d bob ssh -v host").0, ["rock", "-d", "bob"]);
        assert_eq!(
            split("rock -d /usr/bin/ssh host").1,
            ["/usr/bin/ssh", "host"]
        );
        assert_eq!(
            split("rock -v --rockd /opt/rockd -l -d scp -P 22 a h:").1,
            ["scp", "-P", "22", "a", "h:"]
        );
        assert_eq!(split("rock -d -- ssh -V").1, ["ssh", "-V"]);
        assert_eq!(split("rock --suspend-timeout=5 -d sftp h").1, ["sftp", "h"]);
        assert_eq!(
            split("rock --reconnect ssh -d ssh -p 2 h").0,
            ["rock", "--reconnect", "ssh", "-d"]
        );
        assert_eq!(
            split("rock --reconnect=auto -d scp a h:").1,
            ["scp", "a", "h:"]
        );
        assert_eq!(split("rock -d rsync -a d h:").1, ["rsync", "-a", "d", "h:"]);
        assert_eq!(split("rock -d git push").1, ["git", "push"]);
        assert_eq!(
            split("rock --install-rockd -d ssh h true"),
            (
                vec!["rock".to_owned(), "--install-rockd".into(), "-d".into()],
                vec!["ssh".to_owned(), "h".into(), "true".into()]
            )
        );
    }
}
