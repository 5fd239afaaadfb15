//! `rock -k`, `rock checkpoint` and `rock restore`: a `rock -d` session,
//! or a `rock COMMAND` supervisor with its command, that outlives its
//! processes — dumped with CRIU, killed, and restored
//! later or on another machine, its link to rockd redialled at once while
//! rockd saw only a suspension.
//!
//! The sequence:
//! * `rock -k …` ([`run_checkpointable`]) checks that CRIU can be used,
//!   enters a new time namespace and starts the session in it as its child
//!   (`rock --checkpoint-root …`, which then runs as any `rock -d`), and
//!   stands for it in the shell's job ([`follow`]). The session's tree —
//!   that child, rock's worker, the user's ssh and its helpers — is what is
//!   dumped. The time namespace is why: CRIU restores it with offsets that
//!   continue the session's monotonic clock where the dump stopped it, so
//!   the engine's timers stay sound after a reboot or on another machine,
//!   whose clocks started elsewhere.
//! * `rock checkpoint` ([`checkpoint`]) finds the session, writes rock's
//!   description of it ([`image::Meta`]) into a new private directory and
//!   runs `criu dump --tcp-close` there (the link to rockd is restored
//!   closed and redialled; pipes, unix sockets, the terminal, epoll and the
//!   rest are CRIU's). Unless told to leave it running, the session's
//!   processes are gone afterwards, and `rock -k` says where it went.
//! * `rock restore` ([`restore`]) checks the binary, the pids and the
//!   one-restore claim, recreates the session's runtime directory and runs
//!   `criu restore` so that the session becomes its child, on this
//!   terminal if the session had one; then it stands for it as `rock -k`
//!   did.
//!
//! What CRIU cannot dump is kept out of the tree: nothing of the session
//! runs outside it, and the session uses no io_uring, no inotify and no
//! file locks. The link to rockd is the one external connection.

pub mod criu;
pub mod follow;
pub mod image;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::rundir::{self, RunDirError};
use crate::status::{self, Report};
use criu::{Criu, CriuError};
use follow::follow;
use image::{Claim, ImageError, Meta};

/// The hidden option `rock -k` starts the session's root with.
pub const ROOT_FLAG: &str = "--checkpoint-root";

/// What can stop a checkpoint or a restore.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// CRIU cannot be used.
    #[error(transparent)]
    Criu(#[from] CriuError),
    /// The checkpoint directory.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The runtime directory.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// Listing the sessions failed.
    #[error(transparent)]
    List(#[from] status::ListError),
    /// No session to checkpoint.
    #[error("{0}")]
    NoSession(String),
    /// The session was not started with `-k`.
    #[error(
        "the session {name} ({what}) was not started with -k, so it cannot be checkpointed: \
         its clock and processes are not set up for it; start the next one with rock -k -d …"
    )]
    NotCheckpointable {
        /// Its directory's name.
        name: String,
        /// Program and destination.
        what: String,
    },
    /// A process of the session is not what it should be.
    #[error("{0}")]
    Tree(String),
    /// A system call or process failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// CRIU failed.
    #[error("criu {action} failed ({status}); the end of its log ({}):\n{tail}", log.display())]
    CriuFailed {
        /// dump or restore.
        action: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The restore would run another binary than the one dumped.
    #[error(
        "this checkpoint was taken by {} (sha256 {want}), but here that file {found}; \
         restore with the same rock binary at the same path",
        exe.display()
    )]
    OtherRock {
        /// The path recorded.
        exe: PathBuf,
        /// Its recorded hash.
        want: String,
        /// What is there now.
        found: String,
    },
    /// A pid the restore needs is in use.
    #[error(
        "process {pid} of the checkpoint cannot be restored: that pid is taken here by {by}; \
         CRIU restores every process with its own pid — end that process, or restore on \
         another machine"
    )]
    PidTaken {
        /// The pid.
        pid: u32,
        /// Who has it.
        by: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let what = what.into();
    move |error| CheckpointError::Io { what, error }
}

/// `rock -k …`: runs `argv` (rock's own command line) as the root of a
/// checkpointable session and returns the status to exit with.
pub fn run_checkpointable(argv: &[OsString]) -> Result<u8, CheckpointError> {
    Criu::find()?;
    // SAFETY: unshare has no memory-safety preconditions; the calling
    // process stays where it is, its next children go into the namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
        return Err(io("cannot make a time namespace for the session")(
            std::io::Error::last_os_error(),
        ));
    }
    let exe = std::env::current_exe().map_err(io("finding rock's own executable"))?;
    let mut root = Command::new(&exe);
    root.arg(ROOT_FLAG).args(argv.iter().skip(1));
    if !std::io::stdin().is_terminal() {
        // CRIU dumps a tree whose root leads its own session, unless the
        // session is a terminal's (then it is a shell job).
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            root.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = root.spawn().map_err(io("starting the session's root"))?;
    let pid = child.id();
    let ended = follow(pid as libc::pid_t).map_err(io("waiting for the session"))?;
    // The session is over either way: its status stands even if the
    // runtime directory cannot be looked at.
    if let Ok(marker) = marker_path(pid) {
        let dumped = std::fs::read_to_string(&marker);
        let _ = std::fs::remove_file(&marker);
        if let Ok(dir) = dumped
            && std::os::unix::process::ExitStatusExt::signal(&ended) == Some(libc::SIGKILL)
        {
            say_whole(&format!(
                "rock: the session was checkpointed into {dir}; `rock restore {dir}` resumes it\n"
            ));
            return Ok(0);
        }
    }
    Ok(crate::exit_status::shell_byte(ended))
}

/// Writes `line` to stderr in one write, so that output of the session
/// sharing the terminal cannot land inside it.
fn say_whole(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Where `rock checkpoint` tells the `rock -k` that waits for `root` that
/// its session was dumped, not killed.
fn marker_path(root: u32) -> Result<PathBuf, CheckpointError> {
    Ok(rundir::user_dir()?.join(format!("checkpointed-{root}")))
}

/// What `rock checkpoint` was asked.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// The session: its directory's name (or a prefix) or its rock's pid;
    /// by default the only checkpointable one.
    pub session: Option<String>,
    /// Where to dump; by default `checkpoints/<session>` in rock's state
    /// directory.
    pub dir: Option<PathBuf>,
    /// Keep the session running after the dump.
    pub leave_running: bool,
}

/// What a checkpoint did.
#[derive(Debug, Clone)]
pub struct Checkpointed {
    /// Where the images are.
    pub dir: PathBuf,
    /// What was dumped.
    pub meta: Meta,
    /// How long the dump took.
    pub took: Duration,
}

impl std::fmt::Display for Checkpointed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpointed the {} session to {} ({} processes) into {} in {:.2} s; \
             `rock restore {}` resumes it",
            self.meta.program,
            self.meta.destination,
            self.meta.pids.len(),
            self.dir.display(),
            self.took.as_secs_f64(),
            self.dir.display()
        )
    }
}

/// `rock checkpoint`.
pub fn checkpoint(options: &CheckpointOptions) -> Result<Checkpointed, CheckpointError> {
    let criu = Criu::find()?;
    criu.check()?;
    let runtime = rundir::user_dir()?;
    let report = select(status::list(&runtime)?, options.session.as_deref())?;
    let session_dir = report
        .dir
        .clone()
        .ok_or_else(|| CheckpointError::Tree("the session's directory is unknown".into()))?;
    let name = file_name(&session_dir);
    if !report.info.checkpointable {
        return Err(CheckpointError::NotCheckpointable {
            name,
            what: format!("{} to {}", report.info.program, report.info.destination),
        });
    }
    let supervisor = name.starts_with("supervisor-");
    let root = session_root(report.info.pid, supervisor)?;
    let exe = std::env::current_exe().map_err(io("finding rock's own executable"))?;
    let (_, exe_sha256) =
        crate::digest::sha256_file(&exe).map_err(io(format!("reading {}", exe.display())))?;
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => default_parent()?.join(&name),
    };
    image::create_dir(&dir)?;
    let meta = Meta {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        exe,
        exe_sha256,
        root,
        pids: tree(root),
        session_dir,
        program: report.info.program.clone(),
        destination: report.info.destination.clone(),
        interactive: on_terminal(root),
        stdio: stdio_of(root),
        taken: SystemTime::now(),
        tcp_established: supervisor,
    };
    let mut attempt = 1;
    let dumped = loop {
        if attempt > 1 {
            // A fresh directory for each try: CRIU's files of the failed
            // one, its log included, must not mix with the next.
            let _ = std::fs::remove_dir_all(&dir);
            image::create_dir(&dir)?;
        }
        let dumped = if supervisor {
            hold_links(&meta.session_dir)
                .and_then(|()| dump(&criu, &dir, &meta, options.leave_running))
        } else {
            dump(&criu, &dir, &meta, options.leave_running)
        };
        match dumped {
            Err(CheckpointError::CriuFailed { ref log, .. })
                if attempt < DUMP_ATTEMPTS && caught_a_network_notice(log) =>
            {
                // CRIU left the session running; its relay reads the
                // notice at its next turn.
                attempt += 1;
                std::thread::sleep(DUMP_PAUSE);
            }
            dumped => break dumped,
        }
    };
    if dumped.is_err() {
        // Half an image holds the session's memory and restores nothing.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let took = dumped?;
    Ok(Checkpointed { dir, meta, took })
}

fn dump(
    criu: &Criu,
    dir: &Path,
    meta: &Meta,
    leave_running: bool,
) -> Result<Duration, CheckpointError> {
    image::write_meta(dir, meta)?;
    let marker = marker_path(meta.root)?;
    if !leave_running {
        std::fs::write(&marker, dir.display().to_string())
            .map_err(io(format!("writing {}", marker.display())))?;
    }
    let mut cmd = criu.command();
    cmd.arg("dump")
        .arg("-t")
        .arg(meta.root.to_string())
        .arg("-D")
        .arg(dir)
        .args([tcp_option(meta), "-o", image::DUMP_LOG, "-v2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if meta.interactive {
        cmd.arg("--shell-job");
    }
    if leave_running {
        cmd.arg("--leave-running");
    }
    let start = Instant::now();
    let status = cmd.status().map_err(|e| criu.run_error(e))?;
    let took = start.elapsed();
    if !status.success() {
        let _ = std::fs::remove_file(&marker);
        return Err(failed("dump", status, &dir.join(image::DUMP_LOG)));
    }
    Ok(took)
}

/// How many times a dump is tried when it only failed on a network
/// change notice (see [`caught_a_network_notice`]), [`DUMP_PAUSE`] apart:
/// some seconds in all, for a burst of changes (an interface coming up
/// brings several) to pass.
const DUMP_ATTEMPTS: u32 = 10;
const DUMP_PAUSE: Duration = Duration::from_millis(300);

/// Whether a dump failed only because a relay's network watch (a netlink
/// socket, `relay::NetWatch`) had a notice queued when CRIU froze it: CRIU
/// cannot dump a netlink socket holding data. The kernel sends such
/// notices whenever an address or route changes (an IPv6 address leaving
/// its tentative state, a route added), so any dump may meet one; the
/// relay drains them as soon as it runs again.
fn caught_a_network_notice(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .is_ok_and(|text| text.contains("netlink: The socket has data to read"))
}

/// How CRIU is to treat the session's TCP connections: a `rock -d`
/// session's one, the link, is restored closed and redialled; a
/// supervisor's, its program's connections to it over loopback, are dumped
/// and restored with their state (its links were let go first).
fn tcp_option(meta: &Meta) -> &'static str {
    if meta.tcp_established {
        "--tcp-established"
    } else {
        "--tcp-close"
    }
}

/// How long a supervisor's rocks hold their links off for a dump: longer
/// than any dump takes; after a restore, whatever is left of it passes
/// (the session's clock continues where the dump stopped it).
const HOLD_FOR: Duration = Duration::from_secs(3);

/// Asks the supervisor whose session directory is `session_dir` to let
/// every link go and make none for [`HOLD_FOR`], and waits until no link
/// of it is left: CRIU must find no connection to a peer.
fn hold_links(session_dir: &Path) -> Result<(), CheckpointError> {
    use std::io::{Read, Write};
    let socket = session_dir.join(crate::control_socket::CONTROL_SOCKET);
    let asked = (|| -> std::io::Result<String> {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let request = format!(
            "{} {}\n",
            crate::control_socket::HOLD_REQUEST,
            HOLD_FOR.as_millis()
        );
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match asked {
        Ok(answer) if answer == "ok\n" => {
            // The relays let their links go at their next turn.
            std::thread::sleep(Duration::from_millis(100));
            Ok(())
        }
        Ok(answer) => Err(CheckpointError::Tree(format!(
            "the supervisor at {} did not agree to hold its links ({answer:?})",
            socket.display()
        ))),
        Err(error) => Err(io(format!("asking the supervisor at {}", socket.display()))(error)),
    }
}

/// The error for a failed criu run, with the end of its log.
fn failed(action: &'static str, status: std::process::ExitStatus, log: &Path) -> CheckpointError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    CheckpointError::CriuFailed {
        action,
        status,
        log: log.to_owned(),
        tail,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The session `wanted` names, or the only checkpointable one.
fn select(listing: status::Listing, wanted: Option<&str>) -> Result<Report, CheckpointError> {
    let name = |r: &Report| r.dir.as_deref().map(file_name).unwrap_or_default();
    let describe = |r: &Report| {
        format!(
            "{} ({} to {}, pid {})",
            name(r),
            r.info.program,
            r.info.destination,
            r.info.pid
        )
    };
    // A supervisor answers a report per rock, all with its directory: one
    // session.
    let mut seen = std::collections::HashSet::new();
    let sessions: Vec<Report> = listing
        .sessions
        .into_iter()
        .filter(|r| seen.insert(r.dir.clone()))
        .collect();
    let listing = status::Listing {
        sessions,
        ..listing
    };
    let mut found: Vec<Report> = match wanted {
        Some(w) => listing
            .sessions
            .into_iter()
            .filter(|r| name(r).starts_with(w) || r.info.pid.to_string() == w)
            .collect(),
        None => listing
            .sessions
            .into_iter()
            .filter(|r| r.info.checkpointable)
            .collect(),
    };
    match (found.len(), wanted) {
        (1, _) => Ok(found.remove(0)),
        (0, Some(w)) => Err(CheckpointError::NoSession(format!(
            "no session is named {w} or has rock pid {w}; `rock status` lists them"
        ))),
        (0, None) => Err(CheckpointError::NoSession(
            "no session started with -k is running; start one with rock -k -d ssh HOST".into(),
        )),
        _ => Err(CheckpointError::NoSession(format!(
            "several sessions match; name one: {}",
            found.iter().map(describe).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The root of a `-k` session's tree: its worker's parent, started as
/// `rock --checkpoint-root`.
fn session_root(worker: u32, supervisor: bool) -> Result<u32, CheckpointError> {
    // A `rock -k COMMAND` supervisor is the root itself (a `rock -d`
    // worker, forked from its root, has the same command line).
    if supervisor {
        return if has_root_flag(worker) {
            Ok(worker)
        } else {
            Err(CheckpointError::Tree(format!(
                "rock process {worker} is not the root of a -k session"
            )))
        };
    }
    let parent = parent_of(worker)
        .ok_or_else(|| CheckpointError::Tree(format!("rock process {worker} is gone")))?;
    if !has_root_flag(parent) {
        return Err(CheckpointError::Tree(format!(
            "rock process {worker}'s parent ({parent}) is not the root of a -k session"
        )));
    }
    Ok(parent)
}

/// Whether process `pid` was started as the root of a `-k` session.
fn has_root_flag(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline
        .split(|&b| b == 0)
        .any(|a| a == ROOT_FLAG.as_bytes())
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process below it.
fn tree(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found
}

/// Whether `pid`'s standard input is a terminal.
fn on_terminal(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/0")).is_ok_and(|p| {
        let p = p.to_string_lossy();
        p.starts_with("/dev/pts/") || p.starts_with("/dev/tty")
    })
}

/// `pid`'s standard descriptors that are regular files, pipes or sockets,
/// named as CRIU names them in `--inherit-fd` (a file's path without its
/// leading `/`).
fn stdio_of(pid: u32) -> Vec<(u32, String)> {
    (0..3)
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            let name = target.to_string_lossy().into_owned();
            if name.starts_with("pipe:[") || name.starts_with("socket:[") {
                return Some((fd, name));
            }
            let meta = std::fs::metadata(&target).ok()?;
            let file = name.strip_prefix('/')?;
            meta.is_file().then(|| (fd, file.to_owned()))
        })
        .collect()
}

/// `checkpoints` in rock's state directory, made private if missing.
fn default_parent() -> Result<PathBuf, CheckpointError> {
    let base = dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .ok_or_else(|| {
            CheckpointError::NoSession("no home directory for checkpoints; give --dir".into())
        })?;
    let dir = base.join("rock").join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    rundir::private_dir(&dir)?;
    Ok(dir)
}

/// What `rock restore` restored.
#[derive(Debug)]
pub struct Restored {
    /// What it restored.
    pub meta: Meta,
    /// How long CRIU took.
    pub took: Duration,
}

/// `rock restore [-l] [DIR]`: restores the checkpoint and follows the
/// session to its end; returns the status to exit with. With `localhost`
/// the session's direct links go to 127.0.0.1 from now on (restored onto
/// the server's own machine).
pub fn restore(dir: Option<&Path>, localhost: bool) -> Result<u8, CheckpointError> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => only_checkpoint()?,
    };
    let meta = image::read_meta(&dir)?;
    same_rock(&meta)?;
    let criu = Criu::find()?;
    criu.check()?;
    for &pid in &meta.pids {
        if let Some(by) = holder_after_reaping(pid) {
            return Err(CheckpointError::PidTaken { pid, by });
        }
    }
    let claim = Claim::take(&dir)?;
    // CRIU gives the terminal the size it had at the dump; this one's is
    // put back afterwards.
    let size = meta.interactive.then(terminal_size).flatten();
    let restored = start_restore(&criu, &dir, &meta, localhost);
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            claim.release();
            return Err(e);
        }
    };
    // One write: the restored session shares the terminal and is already
    // printing, and a line written in pieces would be cut by its output.
    say_whole(&format!(
        "rock: restored the {} session to {} from {} in {:.2} s\n",
        restored.meta.program,
        restored.meta.destination,
        dir.display(),
        restored.took.as_secs_f64()
    ));
    if let Some(size) = size {
        // Setting it back tells the foreground job (SIGWINCH), and ssh
        // tells the remote side, as on any resize.
        set_terminal_size(&size);
    }
    let ended = follow(meta.root as libc::pid_t).map_err(io("waiting for the restored session"))?;
    Ok(crate::exit_status::shell_byte(ended))
}

fn start_restore(
    criu: &Criu,
    dir: &Path,
    meta: &Meta,
    localhost: bool,
) -> Result<Restored, CheckpointError> {
    // The control socket is restored where it was; after a reboot or on
    // another machine its directory is not there.
    if let Some(parent) = meta.session_dir.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        rundir::private_dir(parent)?;
    }
    rundir::private_dir(&meta.session_dir)?;
    // The control socket file the dumped session left is stale: CRIU binds
    // the restored listener anew, and `rock status` must never take an old
    // file for the restored session's (an old socket that refuses is a
    // dead rock's, and its directory is removed).
    let _ = std::fs::remove_file(meta.session_dir.join(crate::control_socket::CONTROL_SOCKET));
    let flag = meta.session_dir.join(rundir::LOCALHOST_FLAG);
    if localhost {
        std::fs::write(&flag, "").map_err(io(format!("writing {}", flag.display())))?;
    } else {
        // A flag an earlier restore left applies no more.
        let _ = std::fs::remove_file(&flag);
    }
    let mut cmd = criu.command();
    cmd.arg("restore")
        .arg("-D")
        .arg(dir)
        .args([
            tcp_option(meta),
            "--restore-detached",
            "--restore-sibling",
            "-o",
            image::RESTORE_LOG,
            "-v2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if meta.interactive {
        cmd.arg("--shell-job")
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    }
    for (fd, resource) in &meta.stdio {
        // criu's own descriptor `fd` — ours — stands in for `resource`.
        cmd.arg("--inherit-fd").arg(format!("fd[{fd}]:{resource}"));
        match fd {
            0 => cmd.stdin(Stdio::inherit()),
            1 => cmd.stdout(Stdio::inherit()),
            _ => cmd.stderr(Stdio::inherit()),
        };
    }
    let start = Instant::now();
    let status = cmd.status().map_err(|e| criu.run_error(e))?;
    let took = start.elapsed();
    if !status.success() {
        // A process CRIU made as our child before it failed is ours to reap.
        // SAFETY: waitpid on our own children, without blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        return Err(failed("restore", status, &dir.join(image::RESTORE_LOG)));
    }
    Ok(Restored {
        meta: meta.clone(),
        took,
    })
}

/// The size of the terminal on standard input, if it is one.
fn terminal_size() -> Option<libc::winsize> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it in.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor number and a valid winsize pointer.
    let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) };
    (rc == 0).then_some(size)
}

/// Sets the size of the terminal on standard input.
fn set_terminal_size(size: &libc::winsize) {
    // SAFETY: as above; a failure leaves the size as it was.
    unsafe { libc::ioctl(0, libc::TIOCSWINSZ, size) };
}

/// The restore must run the very binary the session ran.
fn same_rock(meta: &Meta) -> Result<(), CheckpointError> {
    let found = match crate::digest::sha256_file(&meta.exe) {
        Ok((_, hash)) if hash == meta.exe_sha256 => return Ok(()),
        Ok((_, hash)) => format!("has sha256 {hash}"),
        Err(e) => format!("cannot be read ({e})"),
    };
    Err(CheckpointError::OtherRock {
        exe: meta.exe.clone(),
        want: meta.exe_sha256.clone(),
        found,
    })
}

/// How long a zombie holding a pid the restore needs is given to be
/// reaped: a dumped session's processes die together, and those whose
/// parent died first wait for init to reap them.
const REAPING: Duration = Duration::from_secs(5);

/// Who holds `pid` here, if anyone, once a zombie had time to be reaped.
fn holder_after_reaping(pid: u32) -> Option<String> {
    let end = Instant::now() + REAPING;
    loop {
        let by = holder(pid)?;
        if !by.contains("zombie") || Instant::now() >= end {
            return Some(by);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Who holds `pid` here, if anyone.
fn holder(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = stat
        .find('(')
        .zip(stat.rfind(')'))
        .map_or("?", |(a, b)| &stat[a + 1..b]);
    let zombie = stat[stat.rfind(')').unwrap_or(0)..]
        .split_whitespace()
        .nth(1)
        == Some("Z");
    Some(if zombie {
        format!("{name} (a zombie its parent has not reaped)")
    } else {
        name.to_owned()
    })
}

/// The one checkpoint in the default place not restored yet.
fn only_checkpoint() -> Result<PathBuf, CheckpointError> {
    let parent = default_parent()?;
    let waiting: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map_err(io(format!("reading {}", parent.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(image::META_FILE).is_file() && !p.join(image::CLAIM_FILE).exists())
        .collect();
    match waiting.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CheckpointError::NoSession(format!(
            "no checkpoint waits in {}; give the directory: rock restore DIR",
            parent.display()
        ))),
        many => Err(CheckpointError::NoSession(format!(
            "several checkpoints wait in {}; name one: {}",
            parent.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dump_that_met_a_network_notice_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        // The end of a real failed dump's log.
        std::fs::write(
            &log,
            "Warn  (compel/arch/x86/src/lib/infect.c:419): Will restore 14080 with interrupted \
             system call\nError (criu/sk-netlink.c:77): netlink: The socket has data to read\n\
             Error (criu/cr-dump.c:1545): Dump files (pid: 14081) failed with -1\n",
        )
        .unwrap();
        assert!(caught_a_network_notice(&log));
        std::fs::write(&log, "Error (criu/sk-inet.c:210): inet: Can't dump\n").unwrap();
        assert!(!caught_a_network_notice(&log));
        assert!(!caught_a_network_notice(&dir.path().join("none.log")));
    }

    #[test]
    fn a_process_tree_is_found_from_its_root() {
        let me = std::process::id();
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let found = tree(me);
        assert_eq!(found[0], me);
        assert!(found.contains(&child.id()), "{found:?}");
        assert_eq!(parent_of(child.id()), Some(me));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_free_pid_has_no_holder_and_a_taken_one_names_it() {
        assert!(holder(std::process::id()).is_some());
        assert_eq!(holder(u32::MAX - 1), None);
    }
}
