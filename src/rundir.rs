//! The per-user runtime directory and one directory per session inside it.
//!
//! Everything the helpers need to reach the rock process (its control
//! socket, the helper links) lives here, so the directory must be private:
//! created with mode 0700, and refused if it is owned by someone else or
//! open to others.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// Creating or inspecting it failed.
    #[error("cannot prepare the runtime directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        error: io::Error,
    },
    /// It exists but is not private to this user.
    #[error(
        "the runtime directory {path} is not private (owner uid {owner}, mode {mode:o}); \
         remove it or fix its permissions with chmod 700"
    )]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `path` (mode 0700) if missing and checks it is private.
pub fn private_dir(path: &Path) -> Result<(), RunDirError> {
    let io_err = |error| RunDirError::Io {
        path: path.to_owned(),
        error,
    };
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || meta.uid() != uid() || mode & 0o077 != 0 {
        return Err(RunDirError::NotPrivate {
            path: path.to_owned(),
            owner: meta.uid(),
            mode,
        });
    }
    Ok(())
}

/// This user's rock directory: `$XDG_RUNTIME_DIR/rock`, or
/// `$TMPDIR/rock-<uid>` where there is no runtime directory.
pub fn user_dir() -> Result<PathBuf, RunDirError> {
    let dir = match dirs::runtime_dir() {
        Some(base) => base.join("rock"),
        None => std::env::temp_dir().join(format!("rock-{}", uid())),
    };
    private_dir(&dir)?;
    Ok(dir)
}

/// The file in a session's directory that sends its direct links to
/// 127.0.0.1 while it exists: `rock restore -l` writes it for a session
/// restored onto the server's own machine.
pub const LOCALHOST_FLAG: &str = "redial-localhost";

/// A session's own directory; removed with everything in it on drop.
#[derive(Debug)]
pub struct SessionDir {
    path: PathBuf,
}

impl SessionDir {
    /// Creates `<user dir>/<name>`.
    pub fn create(name: &str) -> Result<SessionDir, RunDirError> {
        let path = user_dir()?.join(name);
        private_dir(&path)?;
        Ok(SessionDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("x");
        private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
}
