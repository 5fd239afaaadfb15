//! The CRIU program rock checkpoints and restores with: finding it,
//! checking that it is new enough and works on this kernel, that rock may
//! use it, and running its dump and restore.
//!
//! CRIU 4.2 is the oldest that dumps a TCP socket on current kernels (4.1
//! asks every socket for `SO_PASSCRED`, which kernels since 6.x refuse for
//! TCP); the README's set-up (`scripts/setup`) provides one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The oldest CRIU rock works with.
pub const MIN_VERSION: (u32, u32) = (4, 2);

/// Where CRIU is looked for besides `PATH` (`scripts/setup` installs into
/// the first; distributions into the others).
const PLACES: [&str; 3] = ["/usr/local/sbin/criu", "/usr/sbin/criu", "/sbin/criu"];

/// `CAP_CHECKPOINT_RESTORE`, bit 40 of the capability sets.
const CAP_CHECKPOINT_RESTORE: u32 = 40;
/// `CAP_SYS_ADMIN`, which also lets CRIU work.
const CAP_SYS_ADMIN: u32 = 21;

/// Why CRIU cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// No criu program.
    #[error(
        "CRIU is not installed (looked on PATH and in {}); rock -k needs CRIU {}.{} or newer: \
         run the README's scripts/setup as root, or install it from your distribution",
        PLACES.join(", "), MIN_VERSION.0, MIN_VERSION.1
    )]
    NotFound,
    /// `criu --version` did not say a version.
    #[error("cannot tell the version of {path}: {output:?}")]
    NoVersion {
        /// The program.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// Too old.
    #[error(
        "{path} is CRIU {found}, too old: rock needs {}.{} or newer (older ones cannot dump \
         TCP sockets on current kernels); run the README's scripts/setup as root",
        MIN_VERSION.0, MIN_VERSION.1
    )]
    TooOld {
        /// The program.
        path: PathBuf,
        /// Its version.
        found: String,
    },
    /// Neither root nor the capability.
    #[error(
        "checkpointing needs root or CAP_CHECKPOINT_RESTORE (CRIU reads and rebuilds other \
         processes); run rock as root"
    )]
    NotPrivileged,
    /// `criu check` failed.
    #[error("`{} check` says this kernel cannot be checkpointed:\n{output}", path.display())]
    CheckFailed {
        /// The program.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// Running criu failed.
    #[error("cannot run {}", path.display())]
    Run {
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// A CRIU that is new enough and that rock may use.
#[derive(Debug, Clone)]
pub struct Criu {
    path: PathBuf,
    version: String,
}

impl Criu {
    /// Finds CRIU and checks its version and rock's privileges (cheap: no
    /// `criu check`, see [`Criu::check`]).
    pub fn find() -> Result<Criu, CriuError> {
        let path = locate().ok_or(CriuError::NotFound)?;
        let out = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| CriuError::Run {
                path: path.clone(),
                error,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = parse_version(&text).ok_or_else(|| CriuError::NoVersion {
            path: path.clone(),
            output: text.trim().to_owned(),
        })?;
        if !new_enough(&version) {
            return Err(CriuError::TooOld {
                path,
                found: version,
            });
        }
        if !privileged() {
            return Err(CriuError::NotPrivileged);
        }
        Ok(Criu { path, version })
    }

    /// Runs `criu check`: whether this kernel has what CRIU needs.
    pub fn check(&self) -> Result<(), CriuError> {
        let out = self
            .command()
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| self.run_error(error))?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Err(CriuError::CheckFailed {
            path: self.path.clone(),
            output: output.trim().to_owned(),
        })
    }

    /// A command running this CRIU.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// The program's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version, as it says it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The error for a criu that could not be started.
    pub fn run_error(&self, error: std::io::Error) -> CriuError {
        CriuError::Run {
            path: self.path.clone(),
            error,
        }
    }
}

fn locate() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("criu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| PLACES.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// The `Version: X.Y[.Z]` line of `criu --version`.
fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn new_enough(version: &str) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= MIN_VERSION,
        (Some(major), None) => major > MIN_VERSION.0,
        _ => false,
    }
}

/// Root, or the capability in the effective set.
fn privileged() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| {
            caps & (1 << CAP_CHECKPOINT_RESTORE) != 0 || caps & (1 << CAP_SYS_ADMIN) != 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_compared() {
        assert_eq!(
            parse_version("Version: 4.2.1\nGitID: v4.2.1\n").as_deref(),
            Some("4.2.1")
        );
        assert_eq!(parse_version("criu 4\n"), None);
        for ok in ["4.2", "4.2.1", "4.10", "5.0", "5"] {
            assert!(new_enough(ok), "{ok}");
        }
        for old in ["4.1.1", "3.17", "4", "x.y", ""] {
            assert!(!new_enough(old), "{old}");
        }
    }
}
