//! `rock`: runs a command so that its network connections survive link
//! loss, address changes and long outages. Also the proxy and askpass
//! helpers of `rock -d`, when started under their names. Parses the
//! command line, runs, maps the outcome to an exit status; the library
//! does the rest.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rock::redirect::helper::{self, Helper};
use rock::redirect::job::Job;
use rock::redirect::launch::{self, LaunchOptions};
use rock::settings::{self, CommandLine, Profiles, ReconnectMode};
use rock::supervisor::{self, SupervisorError, SupervisorOptions};
use rock::{checkpoint, rundir, status};

/// Run a command over reliable, resumable connections.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    override_usage = "rock [-k] [-l] [-v] [--reconnect MODE] [--install-rockd] [-d [USER]] COMMAND [ARG]...\n       rock status\n       rock checkpoint [SESSION] [--dir DIR] [--leave-running]\n       rock restore [-l] [DIR]\n       rock config check [HOST]"
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
    /// Run the session so that `rock checkpoint` can dump it with CRIU and
    /// `rock restore` resume it, later or on another machine (with -d).
    #[arg(short = 'k')]
    checkpoint: bool,
    /// Set by `rock -k` for the session it starts in its time namespace.
    #[arg(long = "checkpoint-root", hide = true)]
    checkpoint_root: bool,
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
const CARRIED: [&str; 6] = ["ssh", "slogin", "scp", "sftp", "rsync", "git"];
/// rock's options that take a value in the next word.
const VALUED: [&str; 3] = ["--rockd", "--suspend-timeout", "--reconnect"];

/// Where rock's own options end and the command begins, as with env(1):
/// at the first word that is not an option of rock's, or after `--`.
/// After `-d`, a word is the remote user only when a carried program (or
/// `--`) follows it: `rock -d bob ssh host` is bob's, while `rock -d telnet
/// host` is a command rock will name when it refuses it. Clap must
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
                .is_some_and(|w| !w.to_string_lossy().starts_with('-') && !is_program(w))
            && args.get(i + 1).is_some_and(|w| is_program(w) || w == "--");
        if user_follows || VALUED.contains(&text.as_ref()) {
            i += 1;
        }
    }
    i
}

/// rock's own options, parsed by clap, and the command as it was typed.
fn parse(argv: &[OsString]) -> Args {
    let start = command_start(argv).min(argv.len());
    let (own, command) = argv.split_at(start);
    let own = match own.split_last() {
        Some((last, rest)) if last == "--" => rest,
        _ => own,
    };
    // Clap sees rock's options, then the command as one opaque operand list.
    let mut args = Args::parse_from(
        own.iter()
            .cloned()
            .chain((!command.is_empty()).then(|| OsString::from("--")))
            .chain(command.iter().cloned()),
    );
    args.command = command.to_vec();
    args
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(helper) = argv.first().and_then(|a| Helper::from_argv0(a)) {
        return ExitCode::from(helper::run(helper, &argv[1..]));
    }
    let words = |from: usize| -> Vec<String> {
        argv.iter()
            .skip(from)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    // Each way of running: its result, and the status a failure exits with.
    let (result, failure) = match argv.get(1).and_then(|a| a.to_str()) {
        Some("config") => (config_command(&words(2)), 1),
        Some("status") => (status_command(&words(2)), 1),
        Some("checkpoint") => (checkpoint_command(&argv[1..]), 1),
        Some("restore") => (restore_command(&argv[1..]), 1),
        _ => {
            let args = parse(&argv);
            init_logging(args.verbose);
            (run(args, &argv), 255)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rock: {e:#}");
            // A command the supervisor cannot start fails with the shell's
            // status for it (127, 126).
            let code = e
                .downcast_ref::<SupervisorError>()
                .map_or(failure, SupervisorError::exit_code);
            ExitCode::from(code)
        }
    }
}

fn run(args: Args, argv: &[OsString]) -> anyhow::Result<u8> {
    if args.checkpoint && !args.checkpoint_root {
        return Ok(checkpoint::run_checkpointable(argv)?);
    }
    let Some(user) = args.daemon else {
        let options = SupervisorOptions {
            command: args.command,
            exe: std::env::current_exe().context("finding rock's own executable")?,
            profiles: Profiles::load(&settings::default_paths())?,
            cli: CommandLine {
                suspend_timeout: args.suspend_timeout.map(Duration::from_secs),
                localhost: args.localhost,
                ..CommandLine::default()
            },
            checkpointable: args.checkpoint_root,
        };
        return Ok(runtime()?.block_on(supervisor::run(options))?);
    };
    let options = LaunchOptions {
        command: args.command,
        user: (!user.is_empty()).then_some(user),
        cli: CommandLine {
            rockd_path: args.rockd,
            suspend_timeout: args.suspend_timeout.map(Duration::from_secs),
            reconnect: args.reconnect,
            install_rockd: args.install_rockd,
            localhost: args.localhost,
        },
        profiles: Profiles::load(&settings::default_paths())?,
        exit_linger: Duration::from_secs(2),
        // Before the runtime: no thread may exist when rock splits in two.
        job: Job::split().context("starting rock's worker process")?,
        checkpointable: args.checkpoint_root,
    };
    // Built after the split, in the worker only.
    let code = runtime()?.block_on(launch::run(options))?;
    Ok(u8::try_from(code).unwrap_or(255))
}

/// The async runtime: one thread, as rock's work is one session's I/O.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
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
    // Colours only for a person at a terminal, never into a file or pipe.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// `rock config check [HOST]`: validates the configuration files and
/// prints the settings in force for HOST, with where each comes from.
fn config_command(words: &[String]) -> anyhow::Result<u8> {
    let host = match words {
        [check] if check == "check" => None,
        [check, host] if check == "check" => Some(host.as_str()),
        _ => {
            eprintln!("usage: rock config check [HOST]");
            return Ok(2);
        }
    };
    print!("{}", settings::check(&settings::default_paths(), host)?);
    Ok(0)
}

/// `rock status`: this user's sessions, one line each.
/// `rock checkpoint [SESSION] [--dir DIR] [--leave-running]`.
#[derive(Debug, Parser)]
#[command(name = "rock checkpoint")]
struct CheckpointArgs {
    /// The session: its name in `rock status`'s directory (or a prefix),
    /// or its rock's pid; by default the only one started with -k.
    session: Option<String>,
    /// Where to write the checkpoint (a new directory); by default
    /// ~/.local/state/rock/checkpoints/SESSION.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Keep the session running after the dump.
    #[arg(long)]
    leave_running: bool,
}

fn checkpoint_command(words: &[OsString]) -> anyhow::Result<u8> {
    let args = CheckpointArgs::parse_from(words);
    let done = checkpoint::checkpoint(&checkpoint::CheckpointOptions {
        session: args.session,
        dir: args.dir,
        leave_running: args.leave_running,
    })?;
    eprintln!("rock: {done}");
    Ok(0)
}

/// `rock restore [DIR]`.
#[derive(Debug, Parser)]
#[command(name = "rock restore")]
struct RestoreArgs {
    /// The session was restored onto the server's own machine: its links
    /// go to rockd at 127.0.0.1 from now on.
    #[arg(short = 'l')]
    localhost: bool,
    /// The checkpoint's directory; by default the only one not yet
    /// restored in ~/.local/state/rock/checkpoints.
    dir: Option<std::path::PathBuf>,
}

fn restore_command(words: &[OsString]) -> anyhow::Result<u8> {
    let args = RestoreArgs::parse_from(words);
    Ok(checkpoint::restore(args.dir.as_deref(), args.localhost)?)
}

fn status_command(words: &[String]) -> anyhow::Result<u8> {
    if !words.is_empty() {
        eprintln!("usage: rock status");
        return Ok(2);
    }
    let listing = status::list(&rundir::user_dir()?)?;
    print!("{}", status::render(&listing, std::time::SystemTime::now()));
    Ok(0)
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
        // Regression: `telnet` was taken for a user, and `host` refused.
        assert_eq!(split("rock -d telnet host").1, ["telnet", "host"]);
        assert_eq!(split("rock -d bob slogin h").0, ["rock", "-d", "bob"]);
        assert_eq!(split("rock -d bob -- ssh h").1, ["ssh", "h"]);
        assert_eq!(
            split("rock --install-rockd -d ssh h true"),
            (
                vec!["rock".to_owned(), "--install-rockd".into(), "-d".into()],
                vec!["ssh".to_owned(), "h".into(), "true".into()]
            )
        );
    }
}
