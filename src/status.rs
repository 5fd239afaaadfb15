//! `rock status`: what a running `rock -d` reports about its session, and
//! how `rock status` finds every session of this user, asks each one and
//! shows them; the rocks of `rock COMMAND` supervisors are listed the same
//! way, one row per rock.
//!
//! Each session directory in the user's private runtime directory (see
//! [`crate::rundir`]) holds the session's control socket. Asked
//! `status`, it answers with a [`Report`] as `key value` lines and closes
//! (see [`crate::control_socket`]); a supervisor (`supervisor-PID`)
//! answers one report per rock, each followed by an empty line. Nothing is written to disk, so a report
//! is never stale; what can be stale is a directory left by a rock that
//! was killed before it could remove it. Its socket then refuses
//! connections — no process listens on it any more — and `rock status`
//! removes the directory. A socket that accepts but does not answer (rock
//! stopped with SIGSTOP, say) is listed as not responding.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rock_proto::State;

use crate::control_socket::{CONTROL_SOCKET, STATUS_REQUEST};
use crate::relay::Status;

/// How long `rock status` waits for a session's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// A refusing socket younger than this may belong to a rock that is
/// between `bind` and `listen`; older, its rock is gone.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// A session directory without a socket older than this was left by a
/// rock that died while starting.
const STARTING_AT_MOST: Duration = Duration::from_secs(60);

/// The facts about a session that do not change while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The rock process.
    pub pid: u32,
    /// The program it carries: ssh, scp, sftp, rsync or git.
    pub program: String,
    /// The destination as typed (`user@host`, the ssh alias, …).
    pub destination: String,
    /// When the session started.
    pub started: SystemTime,
    /// Started with `-k`: `rock checkpoint` may dump it.
    pub checkpointable: bool,
}

impl SessionInfo {
    /// This process's session to `destination`, carrying `program`,
    /// started now (to the second, as reports carry it).
    pub fn new(program: &str, destination: &str) -> SessionInfo {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        SessionInfo {
            pid: std::process::id(),
            program: program.to_owned(),
            destination: destination.to_owned(),
            started: UNIX_EPOCH + Duration::from_secs(secs),
            checkpointable: false,
        }
    }
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The command has not connected through rock yet.
    Starting,
    /// Dialling the first link.
    Connecting {
        /// The attempt under way, from 1.
        attempt: u32,
    },
    /// A link carries the session.
    Connected,
    /// The link is lost; rock is dialling again.
    Suspended {
        /// How long the link has been down.
        down_for: Duration,
        /// The attempt under way, from 1.
        attempt: u32,
    },
    /// The session is ending.
    Closing,
}

/// One session's status, as its rock reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The unchanging facts.
    pub info: SessionInfo,
    /// Where it stands.
    pub phase: Phase,
    /// The latest heartbeat round trip over the current link.
    pub rtt: Option<Duration>,
    /// Bytes sent but not yet acknowledged (refreshed up to 4 times a second).
    pub replay_bytes: u64,
    /// Links made after the first.
    pub reconnects: u64,
    /// The session's directory, where [`list`] found it (not part of the
    /// answer).
    pub dir: Option<PathBuf>,
}

impl Report {
    /// The report for `info`, from the relay's `status` if the relay runs.
    pub fn new(info: &SessionInfo, status: Option<&Status>, now: Instant) -> Report {
        let Some(s) = status else {
            return Report {
                info: info.clone(),
                phase: Phase::Starting,
                rtt: None,
                replay_bytes: 0,
                reconnects: 0,
                dir: None,
            };
        };
        let attempt = s.attempts.saturating_add(1);
        let phase = match s.state {
            State::Connecting => Phase::Connecting { attempt },
            State::Connected => Phase::Connected,
            State::Suspended { heard, .. } => Phase::Suspended {
                down_for: now.saturating_duration_since(heard),
                attempt,
            },
            State::Closed => Phase::Closing,
        };
        Report {
            info: info.clone(),
            rtt: s.rtt.filter(|_| phase == Phase::Connected),
            phase,
            replay_bytes: s.replay_buffered as u64,
            reconnects: s.reconnects,
            dir: None,
        }
    }

    /// The report as the control socket sends it: `key value` lines.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let started = self
            .info
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let _ = writeln!(out, "pid {}", self.info.pid);
        let _ = writeln!(out, "program {}", one_line(&self.info.program));
        let _ = writeln!(out, "destination {}", one_line(&self.info.destination));
        let _ = writeln!(out, "started {started}");
        if self.info.checkpointable {
            let _ = writeln!(out, "checkpoint yes");
        }
        let (state, down, attempt) = match &self.phase {
            Phase::Starting => ("starting", None, None),
            Phase::Connecting { attempt } => ("connecting", None, Some(attempt)),
            Phase::Connected => ("connected", None, None),
            Phase::Suspended { down_for, attempt } => {
                ("suspended", Some(down_for.as_millis()), Some(attempt))
            }
            Phase::Closing => ("closing", None, None),
        };
        let _ = writeln!(out, "state {state}");
        if let Some(ms) = down {
            let _ = writeln!(out, "down_ms {ms}");
        }
        if let Some(n) = attempt {
            let _ = writeln!(out, "attempt {n}");
        }
        if let Some(rtt) = self.rtt {
            let _ = writeln!(out, "rtt_us {}", rtt.as_micros());
        }
        let _ = writeln!(out, "replay_bytes {}", self.replay_bytes);
        let _ = writeln!(out, "reconnects {}", self.reconnects);
        out
    }

    /// Reads what [`Report::encode`] wrote; unknown keys are ignored, so a
    /// newer rock may say more.
    pub fn decode(text: &str) -> Result<Report, ReportError> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(' ') {
                fields.insert(k, v);
            }
        }
        let text_of = |k: &str| {
            fields
                .get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| ReportError::Missing(k.to_owned()))
        };
        let number = |k: &str| -> Result<u64, ReportError> {
            text_of(k)?
                .parse()
                .map_err(|_| ReportError::NotANumber(k.to_owned()))
        };
        let optional = |k: &str| fields.contains_key(k).then(|| number(k)).transpose();
        let attempt = || -> Result<u32, ReportError> {
            Ok(u32::try_from(number("attempt")?).unwrap_or(u32::MAX))
        };
        let phase = match text_of("state")?.as_str() {
            "starting" => Phase::Starting,
            "connecting" => Phase::Connecting {
                attempt: attempt()?,
            },
            "connected" => Phase::Connected,
            "suspended" => Phase::Suspended {
                down_for: Duration::from_millis(number("down_ms")?),
                attempt: attempt()?,
            },
            "closing" => Phase::Closing,
            other => return Err(ReportError::UnknownState(other.to_owned())),
        };
        Ok(Report {
            info: SessionInfo {
                pid: u32::try_from(number("pid")?)
                    .map_err(|_| ReportError::NotANumber("pid".to_owned()))?,
                program: text_of("program")?,
                destination: text_of("destination")?,
                started: UNIX_EPOCH + Duration::from_secs(number("started")?),
                checkpointable: fields.get("checkpoint") == Some(&"yes"),
            },
            phase,
            rtt: optional("rtt_us")?.map(Duration::from_micros),
            replay_bytes: number("replay_bytes")?,
            reconnects: number("reconnects")?,
            dir: None,
        })
    }
}

/// Why a session's answer is not a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A key every report has is missing.
    #[error("no `{0}` in the answer")]
    Missing(String),
    /// A key's value is not a number (of the right size).
    #[error("`{0}` is not a number rock can read")]
    NotANumber(String),
    /// A state this rock does not know.
    #[error("unknown state `{0}`")]
    UnknownState(String),
}

/// Every session of this user, as found by [`list`].
#[derive(Debug, Default)]
pub struct Listing {
    /// The sessions that answered, oldest first.
    pub sessions: Vec<Report>,
    /// Session directories whose rock accepts but does not answer.
    pub unresponsive: Vec<PathBuf>,
    /// Directories of sessions whose rock is gone, now removed.
    pub removed: Vec<PathBuf>,
}

/// Why the sessions could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list the sessions in {dir}")]
pub struct ListError {
    /// The runtime directory.
    pub dir: PathBuf,
    /// What failed.
    #[source]
    pub error: io::Error,
}

/// Asks every session under the runtime directory `dir` for its status,
/// removing what dead rocks left behind.
pub fn list(dir: &Path) -> Result<Listing, ListError> {
    let mut listing = Listing::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(error) => {
            return Err(ListError {
                dir: dir.to_owned(),
                error,
            });
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let supervisor = is_supervisor_name(&name);
        if !meta.is_dir() || !(is_session_name(&name) || supervisor) {
            continue;
        }
        match ask(&path) {
            // A `rock -d` session answers its one report; a supervisor one
            // per rock it runs, maybe none.
            Asked::Reports(reports) if !reports.is_empty() || supervisor => {
                listing
                    .sessions
                    .extend(reports.into_iter().map(|report| Report {
                        dir: Some(path.clone()),
                        ..report
                    }));
            }
            Asked::Reports(_) => listing.unresponsive.push(path),
            Asked::Silent => listing.unresponsive.push(path),
            Asked::Starting => {}
            Asked::Gone => {
                if std::fs::remove_dir_all(&path).is_ok() {
                    listing.removed.push(path);
                }
            }
        }
    }
    listing
        .sessions
        .sort_by_key(|r| (r.info.started, r.info.pid));
    Ok(listing)
}

/// Session directories are named by 16 hex digits of the session id.
fn is_session_name(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The directory of a `rock COMMAND` supervisor is `supervisor-PID`.
fn is_supervisor_name(name: &str) -> bool {
    name.strip_prefix("supervisor-")
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// What a session directory says.
enum Asked {
    /// What it answered: reports, each followed by an empty line.
    Reports(Vec<Report>),
    /// Its rock accepted but did not answer.
    Silent,
    /// Too young to judge.
    Starting,
    /// No rock behind it.
    Gone,
}

/// How long ago `path`'s inode last changed (its ctime): not its mtime,
/// which CRIU sets back to the dumped one when it restores a session's
/// control socket, so that a restored socket would look as old as the
/// dumped one while the restore finishes, and be taken for a dead rock's.
fn age(path: &Path) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let changed = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(meta.ctime()).ok()?)
        + Duration::from_nanos(u64::try_from(meta.ctime_nsec()).ok()?);
    SystemTime::now().duration_since(changed).ok()
}

fn ask(dir: &Path) -> Asked {
    let socket = dir.join(CONTROL_SOCKET);
    let old = |path: &Path, limit| age(path).is_some_and(|a| a > limit);
    let mut stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if old(dir, STARTING_AT_MOST) {
                Asked::Gone
            } else {
                Asked::Starting
            };
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return if old(&socket, STALE_AFTER) {
                Asked::Gone
            } else {
                Asked::Starting
            };
        }
        Err(_) => return Asked::Silent,
    };
    let answer = (|| -> io::Result<String> {
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.write_all(format!("{STATUS_REQUEST}\n").as_bytes())?;
        let mut text = String::new();
        stream.take(64 * 1024).read_to_string(&mut text)?;
        Ok(text)
    })();
    let Ok(text) = answer else {
        return Asked::Silent;
    };
    let reports: Result<Vec<Report>, ReportError> = text
        .split("\n\n")
        .filter(|part| !part.trim().is_empty())
        .map(Report::decode)
        .collect();
    match reports {
        Ok(reports) => Asked::Reports(reports),
        Err(_) => Asked::Silent,
    }
}

/// The listing as `rock status` prints it: a table, or a line saying there
/// are no sessions. `now` is the wall-clock time of the listing.
pub fn render(listing: &Listing, now: SystemTime) -> String {
    let mut out = String::new();
    if listing.sessions.is_empty() && listing.unresponsive.is_empty() {
        out.push_str("no rock sessions\n");
    } else {
        let mut rows = vec![[
            "PID".to_owned(),
            "COMMAND".to_owned(),
            "DESTINATION".to_owned(),
            "STATE".to_owned(),
            "RTT".to_owned(),
            "REPLAY".to_owned(),
            "RECONNECTS".to_owned(),
        ]];
        for r in &listing.sessions {
            rows.push([
                r.info.pid.to_string(),
                r.info.program.clone(),
                r.info.destination.clone(),
                describe(&r.phase, now),
                r.rtt.map_or_else(|| "-".to_owned(), format_rtt),
                format_bytes(r.replay_bytes),
                r.reconnects.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        for dir in &listing.unresponsive {
            let _ = writeln!(
                out,
                "{}: its rock does not answer (stopped?)",
                dir.display()
            );
        }
    }
    for dir in &listing.removed {
        let _ = writeln!(
            out,
            "removed {}, left by a rock that is no longer running",
            dir.display()
        );
    }
    out
}

/// The STATE column.
pub fn describe(phase: &Phase, now: SystemTime) -> String {
    match phase {
        Phase::Starting => "starting".into(),
        Phase::Connecting { attempt } => format!("connecting, attempt {attempt}"),
        Phase::Connected => "connected".into(),
        Phase::Suspended { down_for, attempt } => format!(
            "suspended since {} ({} s), reconnecting, attempt {attempt}",
            clock(now.checked_sub(*down_for).unwrap_or(now)),
            down_for.as_secs()
        ),
        Phase::Closing => "closing".into(),
    }
}

fn format_rtt(rtt: Duration) -> String {
    let us = rtt.as_micros();
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

fn format_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{} KiB", n / 1024),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Local wall-clock time as HH:MM:SS.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let time = libc::time_t::try_from(secs).unwrap_or_default();
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let tm = unsafe {
        let mut tm = std::mem::zeroed::<libc::tm>();
        if libc::localtime_r(&time, &mut tm).is_null() {
            let s = secs % 86_400;
            return format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60);
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(phase: Phase) -> Report {
        Report {
            info: SessionInfo {
                pid: 4242,
                program: "rsync".into(),
                destination: "alice@files".into(),
                started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                checkpointable: phase == Phase::Connected,
            },
            rtt: (phase == Phase::Connected).then(|| Duration::from_micros(1234)),
            phase,
            replay_bytes: 3 << 20,
            reconnects: 2,
            dir: None,
        }
    }

    #[test]
    fn a_report_reads_back_what_was_written() {
        for phase in [
            Phase::Starting,
            Phase::Connecting { attempt: 3 },
            Phase::Connected,
            Phase::Suspended {
                down_for: Duration::from_millis(12_345),
                attempt: 7,
            },
            Phase::Closing,
        ] {
            let r = report(phase);
            assert_eq!(Report::decode(&r.encode()), Ok(r));
        }
        let newer = format!("{}colour green\n", report(Phase::Connected).encode());
        assert!(Report::decode(&newer).is_ok(), "unknown keys are ignored");
        assert_eq!(
            Report::decode("pid 1\n"),
            Err(ReportError::Missing("state".into()))
        );
        assert!(
            Report::decode("pid 1\n")
                .unwrap_err()
                .to_string()
                .contains("state")
        );
    }

    #[test]
    fn the_table_says_what_a_person_needs() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let listing = Listing {
            sessions: vec![
                report(Phase::Connected),
                report(Phase::Suspended {
                    down_for: Duration::from_secs(12),
                    attempt: 4,
                }),
            ],
            unresponsive: vec![],
            removed: vec!["/run/user/0/rock/0123456789abcdef".into()],
        };
        let shown = render(&listing, now);
        let lines: Vec<&str> = shown.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "PID",
                "COMMAND",
                "DESTINATION",
                "STATE",
                "RTT",
                "REPLAY",
                "RECONNECTS"
            ]
        );
        assert!(
            lines[1].contains("4242") && lines[1].contains("connected"),
            "{shown}"
        );
        assert!(
            lines[1].contains("1.2 ms") && lines[1].contains("3.0 MiB"),
            "{shown}"
        );
        assert!(
            lines[2].contains("suspended since ")
                && lines[2].contains("(12 s), reconnecting, attempt 4  -  "),
            "{shown}"
        );
        assert!(
            lines[3].contains("removed /run/user/0/rock/0123456789abcdef"),
            "{shown}"
        );
        assert_eq!(render(&Listing::default(), now), "no rock sessions\n");
    }

    #[test]
    fn a_directory_whose_rock_is_gone_is_removed() {
        let base = tempfile::tempdir().unwrap();
        let dead = base.path().join("00000000000000aa");
        std::fs::create_dir(&dead).unwrap();
        // A socket nobody listens on any more, bound long enough ago.
        drop(std::os::unix::net::UnixListener::bind(dead.join(CONTROL_SOCKET)).unwrap());
        let other = base.path().join("not-a-session");
        std::fs::create_dir(&other).unwrap();
        std::thread::sleep(STALE_AFTER + Duration::from_millis(200));
        let listing = list(base.path()).unwrap();
        assert_eq!(listing.removed, std::slice::from_ref(&dead));
        assert!(!dead.exists() && other.exists());
        assert!(listing.sessions.is_empty());
    }
}
