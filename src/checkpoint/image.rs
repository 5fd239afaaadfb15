//! A checkpoint on disk: the directory CRIU dumps into — private (0700),
//! because it holds the session's memory, keys and data included — rock's
//! description of what is in it ([`Meta`], the file [`META_FILE`]), and the
//! claim ([`CLAIM_FILE`]) that lets a checkpoint be restored only once: a
//! second restore of the same images would run the session twice, two
//! clients with one session key.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// rock's description of a checkpoint, beside CRIU's images.
pub const META_FILE: &str = "rock-checkpoint";
/// Created, exclusively, by the one restore a checkpoint gets.
pub const CLAIM_FILE: &str = "restored";
/// CRIU's logs of the dump and the restore.
pub const DUMP_LOG: &str = "dump.log";
/// See [`DUMP_LOG`].
pub const RESTORE_LOG: &str = "restore.log";
/// First line of [`META_FILE`].
const MAGIC: &str = "rock-checkpoint 1";

/// What went wrong with a checkpoint directory.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The directory to dump into exists already.
    #[error("{} exists already; give a new directory with --dir, or remove it", .0.display())]
    Exists(PathBuf),
    /// Reading or writing failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// Not a checkpoint rock wrote.
    #[error("{} is not a rock checkpoint ({why})", path.display())]
    NotACheckpoint {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Restored before.
    #[error(
        "the checkpoint in {} was restored already ({when}); a second restore would run the \
         session twice, so it is refused — take a new checkpoint of the running session",
        path.display()
    )]
    Restored {
        /// The directory.
        path: PathBuf,
        /// What the claim says.
        when: String,
    },
}

/// rock's description of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// rock's version when dumped.
    pub version: String,
    /// The rock binary the session ran.
    pub exe: PathBuf,
    /// Its SHA-256: a restore needs the same binary at the same path.
    pub exe_sha256: String,
    /// The process at the root of the dumped tree.
    pub root: u32,
    /// Every process dumped; each must be free for the restore.
    pub pids: Vec<u32>,
    /// The session's runtime directory (recreated for the restore: its
    /// control socket is restored there).
    pub session_dir: PathBuf,
    /// The program carried (ssh, scp, …) and the destination, for messages.
    pub program: String,
    /// See [`Meta::program`].
    pub destination: String,
    /// The session ran on a terminal: it is restored onto the terminal of
    /// the restore.
    pub interactive: bool,
    /// The root's standard descriptors that were files, pipes or sockets,
    /// as CRIU names them (`tmp/log`, `pipe:[1234]`): the restore gives the
    /// session its own standard descriptors in their place, so output goes
    /// where `rock restore`'s goes, and a log file that grew meanwhile is
    /// no obstacle.
    pub stdio: Vec<(u32, String)>,
    /// When the checkpoint was taken.
    pub taken: SystemTime,
    /// A `rock COMMAND` supervisor, whose program's TCP connections to it
    /// were dumped with their state (CRIU's `--tcp-established`; its rocks'
    /// links were let go first); otherwise a `rock -d` session, whose one
    /// TCP connection, the link, is restored closed (`--tcp-close`).
    pub tcp_established: bool,
}

impl Meta {
    /// The file's text: the magic line, then `key value` lines.
    pub fn encode(&self) -> String {
        let secs = self
            .taken
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        // One value per line, whatever a path or a name holds.
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "{MAGIC}\nversion {}\nexe {}\nexe_sha256 {}\nroot {}\npids {}\nsession_dir {}\n\
             program {}\ndestination {}\ninteractive {}\ntaken {secs}\ntcp {}\n{}",
            one_line(&self.version),
            one_line(&self.exe.display().to_string()),
            self.exe_sha256,
            self.root,
            pids.join(" "),
            one_line(&self.session_dir.display().to_string()),
            one_line(&self.program),
            one_line(&self.destination),
            if self.interactive { "yes" } else { "no" },
            if self.tcp_established {
                "established"
            } else {
                "close"
            },
            self.stdio
                .iter()
                .map(|(fd, res)| format!("stdio {fd} {}\n", one_line(res)))
                .collect::<String>(),
        )
    }

    /// Parses [`Meta::encode`]'s text; `path` names the directory in errors.
    pub fn decode(text: &str, path: &Path) -> Result<Meta, ImageError> {
        let bad = |why: &str| ImageError::NotACheckpoint {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("its description does not start with the expected line"));
        }
        let field = |key: &str| {
            text.lines()
                .skip(1)
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .ok_or_else(|| bad(&format!("no {key}")))
        };
        let number = |key: &str| -> Result<u32, ImageError> {
            field(key)?
                .parse()
                .map_err(|_| bad(&format!("{key} is not a number")))
        };
        let pids = field("pids")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| bad("pids are not numbers"))?;
        let stdio = text
            .lines()
            .filter_map(|l| l.strip_prefix("stdio "))
            .map(|l| {
                let (fd, res) = l
                    .split_once(' ')
                    .ok_or_else(|| bad("a stdio line is short"))?;
                let fd = fd
                    .parse()
                    .map_err(|_| bad("a stdio descriptor is not a number"))?;
                Ok((fd, res.to_owned()))
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        let taken = field("taken")?
            .parse::<u64>()
            .map_err(|_| bad("taken is not a number"))?;
        Ok(Meta {
            version: field("version")?.to_owned(),
            exe: PathBuf::from(field("exe")?),
            exe_sha256: field("exe_sha256")?.to_owned(),
            root: number("root")?,
            pids,
            session_dir: PathBuf::from(field("session_dir")?),
            program: field("program")?.to_owned(),
            destination: field("destination")?.to_owned(),
            interactive: field("interactive")? == "yes",
            stdio,
            taken: UNIX_EPOCH + Duration::from_secs(taken),
            // Written by every version that dumps supervisors.
            tcp_established: field("tcp").is_ok_and(|t| t == "established"),
        })
    }
}

/// Makes the directory to dump into: it must not exist; its parent must.
pub fn create_dir(dir: &Path) -> Result<(), ImageError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ImageError::Exists(dir.into())),
        Err(error) => Err(ImageError::Io {
            what: "cannot create the checkpoint directory",
            path: dir.into(),
            error,
        }),
    }
}

/// Writes the description into `dir` (mode 0600).
pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), ImageError> {
    let path = dir.join(META_FILE);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(meta.encode().as_bytes()))
        .map_err(|error| ImageError::Io {
            what: "cannot write",
            path,
            error,
        })
}

/// Reads the description in `dir`.
pub fn read_meta(dir: &Path) -> Result<Meta, ImageError> {
    let path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ImageError::NotACheckpoint {
            path: dir.to_owned(),
            why: format!("it has no {META_FILE}"),
        },
        _ => ImageError::Io {
            what: "cannot read",
            path: path.clone(),
            error,
        },
    })?;
    Meta::decode(&text, dir)
}

/// The one restore's claim on a checkpoint; [`Claim::release`] gives it
/// back when the restore failed before anything ran.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
}

impl Claim {
    /// Claims `dir` for a restore, or says when it was restored before.
    pub fn take(dir: &Path) -> Result<Claim, ImageError> {
        let path = dir.join(CLAIM_FILE);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{now} pid {}", std::process::id());
                Ok(Claim { path })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ImageError::Restored {
                path: dir.to_owned(),
                when: describe_claim(&std::fs::read_to_string(&path).unwrap_or_default()),
            }),
            Err(error) => Err(ImageError::Io {
                what: "cannot claim the checkpoint",
                path,
                error,
            }),
        }
    }

    /// The restore failed before the session ran: the checkpoint may be
    /// restored again.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// "at <unix time> by pid N", from the claim's text.
fn describe_claim(text: &str) -> String {
    let mut words = text.split_whitespace();
    match (words.next(), words.nth(1)) {
        (Some(secs), Some(pid)) => format!("at {secs} (seconds since 1970) by rock pid {pid}"),
        _ => "when, it does not say".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            version: "0.1.0".into(),
            exe: "/usr/local/bin/rock".into(),
            exe_sha256: "ab".repeat(32),
            root: 100,
            pids: vec![100, 101, 105],
            session_dir: "/run/user/0/rock/0123456789abcdef".into(),
            program: "ssh".into(),
            destination: "alice@host".into(),
            interactive: true,
            stdio: vec![(1, "tmp/out log".into()), (2, "pipe:[77]".into())],
            taken: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            tcp_established: true,
        }
    }

    #[test]
    fn the_description_reads_back() {
        let m = meta();
        assert_eq!(Meta::decode(&m.encode(), Path::new("/d")).unwrap(), m);
    }

    #[test]
    fn a_foreign_or_broken_description_is_refused() {
        let d = Path::new("/d");
        assert!(Meta::decode("something else\n", d).is_err());
        let text = meta().encode().replace("root 100\n", "");
        let e = Meta::decode(&text, d).unwrap_err().to_string();
        assert!(e.contains("no root"), "{e}");
        let text = meta().encode().replace("pids 100 101 105", "pids 100 x");
        assert!(Meta::decode(&text, d).is_err());
    }

    #[test]
    fn a_checkpoint_is_restored_once_unless_released() {
        let dir = tempfile::tempdir().unwrap();
        let claim = Claim::take(dir.path()).expect("first claim");
        let again = Claim::take(dir.path()).unwrap_err().to_string();
        assert!(again.contains("restored already"), "{again}");
        claim.release();
        Claim::take(dir.path()).expect("claimable again after a release");
    }

    #[test]
    fn the_dump_directory_must_be_new_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("cp");
        create_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(matches!(create_dir(&dir), Err(ImageError::Exists(_))));
    }
}
