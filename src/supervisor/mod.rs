//! `rock COMMAND`: the supervisor. It runs the command with `librocks.so`
//! preloaded, stays its parent, forwards the signals sent to rock, and
//! exits with the command's status once the command is done.
//!
//! The command's children and whatever they exec inherit `LD_PRELOAD` and
//! `ROCK_SUPERVISOR` (the control socket in the supervisor's private
//! session directory, where the library asks where each connection goes:
//! [`requests`]), so the whole process tree is covered. A program the loader cannot preload
//! into (static, Go, setuid: see [`program`]) is run all the same, with a
//! line saying that its connections stay plain TCP.
//!
//! Signals: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to rock go on to the
//! command. SIGINT and SIGQUIT are ignored by rock: typed at the terminal
//! they reach the whole foreground process group, the command included,
//! and the command decides.
//!
//! * [`program`] — what kind of program the command is.
//! * [`library`] — where `librocks.so` is.
//! * [`requests`] — the library's questions, answered.
//! * [`peers`] — which destinations are rock servers (probe and cache).
//! * [`rendezvous`] — the command's listeners and the rendezvous port.
//! * [`carried`] — the connections the supervisor carries, and for whom.
//! * [`rocks`] — the rocks themselves: engine and relay per connection.
//! * [`messages`] — reading rendezvous messages exactly.
//! * [`handover`] — rock clients handed between supervisors on one host.

pub mod carried;
pub mod handover;
pub mod library;
pub mod messages;
pub mod peers;
pub mod program;
pub mod rendezvous;
pub mod requests;
pub mod rocks;

use std::ffi::{OsStr, OsString};
use std::future::poll_fn;
use std::path::PathBuf;
use std::task::Poll;

use tokio::process::Command;

use crate::control_socket;
use crate::rundir::SessionDir;
use crate::settings::{CommandLine, Profiles, Settings};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The environment variable the loader reads.
const LD_PRELOAD: &str = "LD_PRELOAD";
/// The environment variable that tells the library where its supervisor's
/// control socket is (the library's `channel::SUPERVISOR_ENV`).
const SUPERVISOR_ENV: &str = "ROCK_SUPERVISOR";

/// What `rock COMMAND` was asked to do.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// The rock binary, beside which the library lies.
    pub exe: PathBuf,
    /// The configuration files (`rock_port`, the engine's settings).
    pub profiles: Profiles,
    /// What the command line sets for every rock (`-l`,
    /// `--suspend-timeout`).
    pub cli: CommandLine,
    /// Started by `rock -k` as the root of a checkpointable session.
    pub checkpointable: bool,
}

/// Why the supervisor could not run the command.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Nothing to run.
    #[error("no command given: write the program to run after rock's own options")]
    Empty,
    /// The preload library is missing.
    #[error(transparent)]
    Library(#[from] library::LibraryMissing),
    /// The command could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program as typed.
        program: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The private session directory could not be made.
    #[error(transparent)]
    RunDir(crate::rundir::RunDirError),
    /// Something of rock's own failed.
    #[error("{what}")]
    Local {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

impl SupervisorError {
    /// The exit status, as a shell gives it: 127 for a program not found,
    /// 126 for one that cannot be run, 255 for rock's own failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            SupervisorError::Spawn { error, .. } => match error.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            },
            _ => 255,
        }
    }
}

/// A name for the supervisor's session directory: not one `rock status`
/// takes for a `rock -d` session (those are 16 hex digits), unique per
/// process.
fn session_name() -> String {
    format!("supervisor-{}", std::process::id())
}

/// `LD_PRELOAD` with `library` first, keeping what the user preloads.
fn preload_value(library: &OsStr, existing: Option<&OsStr>) -> OsString {
    let mut value = library.to_owned();
    if let Some(rest) = existing.filter(|r| !r.is_empty()) {
        value.push(":");
        value.push(rest);
    }
    value
}

/// Raises this process's soft limit on open descriptors to the hard limit
/// (every rock holds two or three); returns the limit as it was, which
/// the command gets back (a program using `select` needs its usual 1024).
fn raise_descriptor_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the live struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        ..limit
    };
    // SAFETY: setrlimit reads the live struct it is given.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0).then_some(limit)
}

/// Runs the command under the supervisor; returns its exit status.
pub async fn run(options: SupervisorOptions) -> Result<u8, SupervisorError> {
    let (program, args) = options
        .command
        .split_first()
        .ok_or(SupervisorError::Empty)?;
    let library = library::find(&options.exe)?;
    let shown = program.to_string_lossy().into_owned();
    let kind = program::find(program, std::env::var_os("PATH").as_deref())
        .map(|path| program::inspect(&path));
    let mut command = Command::new(program);
    command.args(args);
    if let Some(original) = raise_descriptor_limit() {
        // SAFETY: setrlimit is async-signal-safe and touches only the
        // child's own limits, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::setrlimit(libc::RLIMIT_NOFILE, &original);
                Ok(())
            });
        }
    }
    match kind.as_ref().and_then(program::Kind::limit) {
        Some(why) => eprintln!("rock: {shown}'s connections stay plain TCP: {why}"),
        None => {
            let existing = std::env::var_os(LD_PRELOAD);
            command.env(
                LD_PRELOAD,
                preload_value(library.as_os_str(), existing.as_deref()),
            );
        }
    }
    let local = |what| move |error| SupervisorError::Local { what, error };
    // The session directory holds the control socket the library asks.
    let dir = SessionDir::create(&session_name()).map_err(SupervisorError::RunDir)?;
    // A supervisor of the same pid that was killed may have left its socket.
    let _ = std::fs::remove_file(dir.path().join(control_socket::CONTROL_SOCKET));
    let listener = control_socket::bind(dir.path()).map_err(local("opening the control socket"))?;
    command.env(
        SUPERVISOR_ENV,
        dir.path().join(control_socket::CONTROL_SOCKET),
    );
    let own_port = options
        .profiles
        .defaults()
        .rock_port
        .map_or(peers::DEFAULT_ROCK_PORT, |p| p.value);
    // How long rocks still delivering their end may outlive the command.
    let close_timeout = Settings::resolve(&options.profiles, "", &options.cli)
        .map_or(crate::settings::resolve::DEFAULT_CLOSE_TIMEOUT, |s| {
            s.close_timeout.value
        });
    let carried = std::sync::Arc::new(carried::Carried::default());
    let name = std::path::Path::new(program)
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    let mut rocks = rocks::Rocks::new(&name, options.profiles.clone(), options.cli.clone());
    if options.checkpointable {
        rocks = rocks.checkpointable(dir.path().to_path_buf());
    }
    let rocks = std::sync::Arc::new(rocks);
    let context = requests::Context {
        peers: peers::Peers::new(options.profiles),
        rendezvous: rendezvous::Rendezvous::new(
            own_port,
            carried.clone(),
            rocks.clone(),
            dir.path().to_path_buf(),
        ),
        carried,
        rocks: rocks.clone(),
        expected: std::sync::Mutex::default(),
    };
    let serving = tokio::spawn(requests::serve(listener, std::sync::Arc::new(context)));
    let mut forwarded = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        forwarded.push((kind, signal(kind).map_err(local("handling signals"))?));
    }
    // Ignored, not forwarded: the terminal sends them to the command too.
    let mut interrupts = signal(SignalKind::interrupt()).map_err(local("handling SIGINT"))?;
    let mut quits = signal(SignalKind::quit()).map_err(local("handling SIGQUIT"))?;
    let mut child = command.spawn().map_err(|error| SupervisorError::Spawn {
        program: shown,
        error,
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let status = loop {
        let next = first_signal(&mut forwarded);
        tokio::select! {
            status = child.wait() => break status.map_err(local("waiting for the command"))?,
            kind = next => {
                if let Some(pid) = pid {
                    // SAFETY: kill has no memory effects; pid is our child,
                    // not yet reaped (we reap it only in this loop).
                    unsafe { libc::kill(pid, kind.as_raw_value()) };
                }
            }
            _ = interrupts.recv() => {}
            _ = quits.recv() => {}
        }
    };
    // The command is done, and so are its rocks' programs; each rock still
    // delivers its end to the peer (within close_timeout, or until rock is
    // told to stop).
    if rocks.running() > 0 {
        tracing::debug!("{} rocks still delivering their end", rocks.running());
        let told = first_signal(&mut forwarded);
        tokio::select! {
            _ = rocks.idle() => {}
            _ = tokio::time::sleep(close_timeout) => {
                tracing::info!("rocks still open {close_timeout:?} after the command ended: closed");
            }
            _ = told => {}
            _ = interrupts.recv() => {}
        }
        rocks.stop();
        // A close is sent on the links that are up.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rocks.idle()).await;
    }
    serving.abort();
    Ok(crate::exit_status::shell_byte(status))
}

/// The kind of the first of `signals` to arrive.
async fn first_signal(signals: &mut [(SignalKind, Signal)]) -> SignalKind {
    poll_fn(|cx| {
        for (kind, signal) in signals.iter_mut() {
            if let Poll::Ready(Some(())) = signal.poll_recv(cx) {
                return Poll::Ready(*kind);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_goes_first_and_the_users_preloads_stay() {
        assert_eq!(
            preload_value(OsStr::new("/r/librocks.so"), None),
            "/r/librocks.so"
        );
        assert_eq!(
            preload_value(OsStr::new("/r/librocks.so"), Some(OsStr::new(""))),
            "/r/librocks.so"
        );
        assert_eq!(
            preload_value(OsStr::new("/r/librocks.so"), Some(OsStr::new("/u/x.so"))),
            "/r/librocks.so:/u/x.so"
        );
    }
}
