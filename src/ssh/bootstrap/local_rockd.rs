//! The rockd binary rock can copy to a remote host: where it is (the
//! `rockd_binary` profile key, else next to rock's own executable, else on
//! `PATH`), its size, SHA-256 and version, and the name it is installed
//! under there.
//!
//! Invariants:
//! * The installed name carries the version and the first 16 hex digits of
//!   the SHA-256, so different builds coexist and a name never stands for
//!   two different files.
//! * The bytes sent are the bytes hashed: [`LocalRockd::read_checked`]
//!   reads the file once, hashes that buffer and refuses it if the file
//!   changed since it was first inspected.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ssh::target::expand_tilde;

/// Where rockd is installed on the remote host (relative to its `$HOME`).
pub const INSTALL_DIR: &str = "~/.local/lib/rock";

/// How long `rockd --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How the local rockd was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `rockd_binary` profile key.
    Configured,
    /// Next to rock's own executable: built and shipped with this rock.
    BesideRock,
    /// On `PATH`.
    Path,
}

/// A local rockd binary that can be copied to a remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRockd {
    /// Its path.
    pub path: PathBuf,
    /// How it was found.
    pub source: Source,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its version (`rockd --version`), reduced to characters safe in a
    /// file name.
    pub version: String,
}

/// Why there is no local rockd to copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalRockdError {
    /// None next to rock, none on PATH, none configured.
    #[error(
        "there is no rockd here to copy (looked next to rock, in {beside}, and on PATH); \
         set rockd_binary in the host's profile to the rockd to copy"
    )]
    NotFound {
        /// rock's own directory.
        beside: String,
    },
    /// It exists but cannot be read, or is not a file.
    #[error("cannot read the rockd to copy, {path}: {error}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// `--version` did not say it is a rockd.
    #[error(
        "{path} does not look like a rockd for this machine (`{path} --version`: {detail}); \
         rockd_binary must name a rockd built for this machine"
    )]
    NotRockd {
        /// The file.
        path: PathBuf,
        /// What running it gave.
        detail: String,
    },
    /// It changed between the first look and the copy.
    #[error("{path} changed while rock ran (sha256 was {was}, is now {now}); run rock again")]
    Changed {
        /// The file.
        path: PathBuf,
        /// The hash first seen.
        was: String,
        /// The hash now.
        now: String,
    },
}

impl LocalRockd {
    /// Finds the rockd to copy: `configured` (the `rockd_binary` key, `~`
    /// allowed) if given, else `rockd` next to rock's own executable, else
    /// `rockd` on `PATH`; and inspects it. Blocks (reads the whole file).
    pub fn find(configured: Option<&str>) -> Result<LocalRockd, LocalRockdError> {
        if let Some(path) = configured {
            return LocalRockd::inspect(&expand_tilde(Path::new(path)), Source::Configured);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf));
        if let Some(dir) = &beside {
            let path = dir.join("rockd");
            if is_executable(&path) {
                return LocalRockd::inspect(&path, Source::BesideRock);
            }
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("rockd"))
                .find(|p| is_executable(p))
        });
        match on_path {
            Some(path) => LocalRockd::inspect(&path, Source::Path),
            None => Err(LocalRockdError::NotFound {
                beside: beside.map_or_else(|| "(unknown)".to_owned(), |d| d.display().to_string()),
            }),
        }
    }

    /// Hashes `path` and learns its version. A rockd next to rock is the
    /// same package, hence rock's version; any other is asked.
    pub fn inspect(path: &Path, source: Source) -> Result<LocalRockd, LocalRockdError> {
        let (size, sha256) = hash_file(path)?;
        let version = match source {
            Source::BesideRock => env!("CARGO_PKG_VERSION").to_owned(),
            Source::Configured | Source::Path => ask_version(path)?,
        };
        Ok(LocalRockd {
            path: path.to_owned(),
            source,
            size,
            sha256,
            version,
        })
    }

    /// The file name it is installed under: `rockd-<version>-<16 hex>`.
    pub fn installed_name(&self) -> String {
        format!("rockd-{}-{}", self.version, &self.sha256[..16])
    }

    /// Its path on the remote host, for the launch script.
    pub fn installed_path(&self) -> String {
        format!("{INSTALL_DIR}/{}", self.installed_name())
    }

    /// Its size for people: `49.1 MiB`.
    pub fn size_text(&self) -> String {
        format!("{:.1} MiB", self.size as f64 / f64::from(1 << 20))
    }

    /// The file's bytes, refused if they no longer hash to
    /// [`LocalRockd::sha256`]. Blocks.
    pub fn read_checked(&self) -> Result<Vec<u8>, LocalRockdError> {
        let bytes = read(&self.path)?;
        let now = sha256_hex(&bytes);
        if now != self.sha256 {
            return Err(LocalRockdError::Changed {
                path: self.path.clone(),
                was: self.sha256.clone(),
                now,
            });
        }
        Ok(bytes)
    }
}

pub use crate::digest::sha256_hex;

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn unreadable(path: &Path) -> impl Fn(String) -> LocalRockdError + '_ {
    move |error| LocalRockdError::Unreadable {
        path: path.to_owned(),
        error,
    }
}

/// Opens `path`, which must be a regular file.
fn open(path: &Path) -> Result<std::fs::File, LocalRockdError> {
    let file = std::fs::File::open(path).map_err(|e| unreadable(path)(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| unreadable(path)(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable(path)("not a regular file".to_owned()));
    }
    Ok(file)
}

/// The whole file.
fn read(path: &Path) -> Result<Vec<u8>, LocalRockdError> {
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path)(e.to_string()))?;
    Ok(bytes)
}

/// Size and SHA-256 of the file, which must be a regular file.
fn hash_file(path: &Path) -> Result<(u64, String), LocalRockdError> {
    open(path)?;
    crate::digest::sha256_file(path).map_err(|e| unreadable(path)(e.to_string()))
}

/// Runs `path --version` and takes the version from `rocks X.Y.Z` (or
/// `rockd X.Y.Z`).
fn ask_version(path: &Path) -> Result<String, LocalRockdError> {
    let not_rockd = |detail: String| LocalRockdError::NotRockd {
        path: path.to_owned(),
        detail,
    };
    let mut child = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| not_rockd(e.to_string()))?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(not_rockd(format!(
                    "no answer within {} s",
                    VERSION_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(not_rockd(e.to_string())),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        // A few bytes are expected; a flood is not a rockd.
        let _ = (&mut stdout).take(4096).read_to_string(&mut out);
    }
    // clap prints the package's name: `rocks 0.1.0`; accept `rockd` too.
    let mut words = out.split_whitespace();
    let version = match (words.next(), words.next()) {
        (Some("rockd" | "rocks"), Some(v)) => Some(file_name_safe(v)),
        _ => None,
    }
    .filter(|v| !v.is_empty());
    match version {
        Some(v) if status.success() => Ok(v),
        _ => Err(not_rockd(format!("{status}, printed {:?}", out.trim()))),
    }
}

/// Keeps the characters a version may have in a file name.
fn file_name_safe(version: &str) -> String {
    version
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._+-".contains(*c))
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn a_configured_rockd_is_hashed_and_named_by_version_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = "#!/bin/sh\necho 'rocks 1.2.3-beta/x'\n";
        let path = script(dir.path(), "my-rockd", body);
        let found = LocalRockd::find(Some(&path.display().to_string())).expect("found");
        assert_eq!(found.source, Source::Configured);
        assert_eq!(found.version, "1.2.3-betax");
        assert_eq!(found.size, body.len() as u64);
        assert_eq!(found.sha256, sha256_hex(body.as_bytes()));
        assert_eq!(
            found.installed_path(),
            format!(
                "~/.local/lib/rock/rockd-1.2.3-betax-{}",
                &found.sha256[..16]
            )
        );
        assert_eq!(found.read_checked().expect("same"), body.as_bytes());
        std::fs::write(&path, "#!/bin/sh\necho changed\n").expect("rewrite");
        assert!(matches!(
            found.read_checked(),
            Err(LocalRockdError::Changed { .. })
        ));
    }

    #[test]
    fn a_binary_that_is_not_rockd_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(dir.path(), "not-rockd", "#!/bin/sh\necho hello\n");
        let err = LocalRockd::inspect(&path, Source::Path).expect_err("refused");
        assert!(
            err.to_string().contains("does not look like a rockd"),
            "{err}"
        );
        let missing = dir.path().join("absent");
        let err = LocalRockd::inspect(&missing, Source::Configured).expect_err("refused");
        assert!(matches!(err, LocalRockdError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
