//! Finding `librocks.so`, the preload library, without any environment
//! set by the user: beside the `rock` binary (as cargo builds them, and as
//! the README installs them), else in `../lib/rock/` from it (a
//! `/usr/local/bin` + `/usr/local/lib/rock` install).

use std::path::{Path, PathBuf};

/// The library's file name.
pub const LIBRARY: &str = "librocks.so";

/// The library could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find {LIBRARY}: looked in {}; install it beside rock \
     (cargo build --release builds it as target/release/{LIBRARY})",
    .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
)]
pub struct LibraryMissing {
    /// Every path looked at.
    pub tried: Vec<PathBuf>,
}

/// The places to look for the library, for the rock binary at `exe`.
pub fn candidates(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    vec![
        dir.join(LIBRARY),
        dir.join("..").join("lib").join("rock").join(LIBRARY),
    ]
}

/// The library for the rock binary at `exe`: the first candidate that is
/// a file, as an absolute path (the loader resolves a relative
/// `LD_PRELOAD` against each program's own working directory).
pub fn find(exe: &Path) -> Result<PathBuf, LibraryMissing> {
    let tried = candidates(exe);
    tried
        .iter()
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .ok_or(LibraryMissing { tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_rock_first_then_lib_rock() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let bin = root.path().join("bin");
        let lib = root.path().join("lib").join("rock");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::create_dir_all(&lib).expect("mkdir lib/rock");
        let exe = bin.join("rock");
        let err = find(&exe).expect_err("nothing installed yet");
        assert!(err.to_string().contains("bin/librocks.so"), "{err}");
        std::fs::write(lib.join(LIBRARY), b"").expect("write");
        assert!(
            find(&exe)
                .expect("in lib/rock")
                .ends_with("lib/rock/librocks.so")
        );
        std::fs::write(bin.join(LIBRARY), b"").expect("write");
        assert!(
            find(&exe)
                .expect("beside rock")
                .ends_with("bin/librocks.so")
        );
    }
}
