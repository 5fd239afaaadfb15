//! rock copies its own rockd to a host that has none (or an incompatible
//! one): the real rock and rockd binaries against the real sshd fixture.
//!
//! The fixture's user is the current user (root), so each test gives the
//! remote side a throwaway home and a fixed PATH with sshd's `SetEnv`:
//! nothing is installed into the real home, and no rockd can be found on
//! the remote except the one a test puts there. rock itself is told that
//! rockd is at `/nonexistent/rockd`, as the missing-rockd test in
//! rock_d.rs does.

mod common;
use common::text;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pty::PtyChild;
use common::{
    ROCK, ROCKD, Sshd, TempDir, assert_exit, require_root, run_with_timeout, sha256_file,
};
use rock::ssh::bootstrap::{GLIBC_FLOOR, LocalRockd, Platform, Source};

/// A generous limit: the copy moves tens of MiB on a loaded machine.
const LIMIT: Duration = Duration::from_secs(180);

/// The sshd fixture with a throwaway remote home (and PATH).
struct Remote {
    sshd: Sshd,
    home: TempDir,
    /// rock's configuration directory (`XDG_CONFIG_HOME`), empty unless a
    /// test writes a profile.
    config: TempDir,
}

impl Remote {
    /// Remote sessions get `HOME=<throwaway>` and `PATH=<extra:>/usr/bin:/bin`.
    fn start(extra_path: Option<&Path>) -> Remote {
        require_root("the sshd fixture");
        let home = common::temp_dir();
        let path = match extra_path {
            Some(dir) => format!("{}:/usr/bin:/bin", dir.display()),
            None => "/usr/bin:/bin".to_owned(),
        };
        for dir in path.split(':') {
            assert!(
                !Path::new(dir).join("rockd").exists(),
                "{dir}/rockd exists: this test needs a remote PATH without rockd"
            );
        }
        let sshd = Sshd::builder()
            .option(format!("SetEnv HOME={} PATH={path}", home.path().display()))
            .start();
        Remote {
            sshd,
            home,
            config: common::temp_dir(),
        }
    }

    /// Writes rock's configuration file.
    fn configure(&self, text: &str) {
        let dir = self.config.path().join("rock");
        std::fs::create_dir_all(&dir).expect("make the config dir");
        std::fs::write(dir.join("config.toml"), text).expect("write config.toml");
    }

    /// `rock --rockd /nonexistent/rockd [extra] -d ssh -F <fixture config>`.
    fn rock(&self, extra: &[&str]) -> Command {
        let mut cmd = common::rock_command(&self.sshd, "/nonexistent/rockd", extra, "ssh");
        cmd.env("XDG_CONFIG_HOME", self.config.path());
        cmd
    }

    /// The remote install directory.
    fn install_dir(&self) -> PathBuf {
        self.home.path().join(".local/lib/rock")
    }

    /// Where rock installs this build's rockd.
    fn installed(&self) -> PathBuf {
        let sum = sha256_file(Path::new(ROCKD));
        self.install_dir().join(format!(
            "rockd-{}-{}",
            env!("CARGO_PKG_VERSION"),
            &sum[..16]
        ))
    }

    /// The names in the install directory (empty if it does not exist).
    fn installed_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.install_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Checks the installed rockd: the only file in a 0700 directory,
    /// mode 0755, the same bytes as the local rockd.
    fn assert_installed(&self, context: &str) {
        let installed = self.installed();
        let name = installed.file_name().expect("a name").to_string_lossy();
        assert_eq!(self.installed_files(), [name.as_ref()], "{context}");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode(&self.install_dir()), 0o700, "{context}");
        assert_eq!(mode(&installed), 0o755, "{context}");
        assert_eq!(
            sha256_file(&installed),
            sha256_file(Path::new(ROCKD)),
            "the installed rockd differs from the local one"
        );
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The installed file's modification time and inode: a new copy (renamed
/// into place) changes both.
fn identity(path: &Path) -> (i64, i64, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.mtime(), meta.mtime_nsec(), meta.ino())
}

#[test]
fn a_missing_rockd_is_copied_verified_and_reused_by_the_next_session() {
    let remote = Remote::start(None);
    remote.configure("[defaults]\nauto_install = \"yes\"\n");
    let out = run_with_timeout(
        remote
            .rock(&[])
            .args(["rocktest", "echo hello from $HOME; exit 7"]),
        LIMIT,
    );
    assert_exit(
        &out,
        7,
        &format!("{}\nsshd log:\n{}", text(&out), remote.sshd.log()),
    );
    assert!(
        stdout(&out).contains(&format!("hello from {}", remote.home.path().display())),
        "{}",
        text(&out)
    );
    assert!(stderr(&out).contains("copied rockd"), "{}", text(&out));
    remote.assert_installed("after the first session");
    let first = identity(&remote.installed());

    // The next session finds it among the candidates and copies nothing.
    let out = run_with_timeout(
        remote.rock(&[]).args(["rocktest", "echo second session"]),
        LIMIT,
    );
    assert_exit(&out, 0, &text(&out));
    assert!(stdout(&out).contains("second session"), "{}", text(&out));
    assert!(!stderr(&out).contains("copied rockd"), "{}", text(&out));
    assert_eq!(
        identity(&remote.installed()),
        first,
        "the rockd was copied again"
    );
    remote.assert_installed("after the second session");
    remote.sshd.wait_no_descendants(Duration::from_secs(15));
}

#[test]
fn auto_install_no_refuses_and_names_the_flag() {
    let remote = Remote::start(None);
    remote.configure("[[profile]]\nhosts = [\"rocktest\"]\nauto_install = \"no\"\n");
    let out = run_with_timeout(
        remote.rock(&[]).args(["rocktest", "echo must not run"]),
        LIMIT,
    );
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/rockd"), "{err}");
    assert!(
        err.contains("--install-rockd") && err.contains("auto_install is \"no\""),
        "{err}"
    );
    assert!(!stdout(&out).contains("must not run"));
    assert!(!remote.install_dir().exists(), "something was installed");
    remote.sshd.wait_no_descendants(Duration::from_secs(15));
}

/// `rock -d ssh` as a person runs it: no BatchMode, so "ask" asks.
fn interactive(remote: &Remote, command: &str) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.args(["--rockd", "/nonexistent/rockd", "-d", "ssh", "-F"])
        .arg(remote.sshd.ssh_config())
        .args(["-o", "BatchMode=no", "rocktest", command])
        .env("XDG_CONFIG_HOME", remote.config.path())
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

#[test]
fn ask_copies_on_yes_and_refuses_on_no() {
    let remote = Remote::start(None);
    let question = format!("rockd was not found on 127.0.0.1; copy {ROCKD} (",);
    let platform = format!(
        "MiB, {}) to ~/.local/lib/rock/ there? [y/N] ",
        Platform::local()
    );

    let mut pty = PtyChild::spawn(&mut interactive(&remote, "echo must not run"));
    pty.expect("[y/N] ", LIMIT);
    assert!(
        pty.seen.contains(&question) && pty.seen.contains(&platform),
        "{}",
        pty.seen
    );
    pty.send("n\n");
    let status = pty.wait(LIMIT);
    assert_eq!(status.code(), Some(255), "{}", pty.seen);
    assert!(
        pty.seen.contains("you answered no") && pty.seen.contains("--install-rockd"),
        "{}",
        pty.seen
    );
    assert!(!pty.seen.contains("must not run"), "{}", pty.seen);
    assert!(!remote.install_dir().exists(), "installed despite no");

    let mut pty = PtyChild::spawn(&mut interactive(&remote, "echo installed when asked"));
    pty.expect("[y/N] ", LIMIT);
    pty.send("y\n");
    let status = pty.wait(LIMIT);
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    assert!(pty.seen.contains("installed when asked"), "{}", pty.seen);
    remote.assert_installed("after answering y");
}

#[test]
fn ask_without_a_terminal_counts_as_no_and_says_so() {
    let remote = Remote::start(None);
    let mut cmd = interactive(&remote, "echo must not run");
    cmd.stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it drops the controlling tty.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_with_timeout(&mut cmd, LIMIT);
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no terminal to ask on") && err.contains("--install-rockd"),
        "{err}"
    );
    assert!(!remote.install_dir().exists(), "installed without asking");
}

/// A remote `cat` that damages what it copies (every NUL byte becomes
/// 0x01): the copy's bytes on the remote disk differ from those sent.
fn damaging_cat(dir: &Path) {
    let cat = dir.join("cat");
    std::fs::write(&cat, "#!/bin/sh\nexec /usr/bin/tr '\\000' '\\001'\n").expect("write cat");
    std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o755)).expect("chmod cat");
}

#[test]
fn a_copy_damaged_on_the_way_is_refused_and_removed() {
    let bin = common::temp_dir();
    damaging_cat(bin.path());
    let remote = Remote::start(Some(bin.path()));
    let out = run_with_timeout(
        remote
            .rock(&["--install-rockd"])
            .args(["rocktest", "echo must not run"]),
        LIMIT,
    );
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    let sum = sha256_file(Path::new(ROCKD));
    assert!(
        err.contains("damaged on the way") && err.contains(&sum) && err.contains("ran nothing"),
        "{err}"
    );
    assert!(!stdout(&out).contains("must not run"));
    // The directory was made for the copy; nothing, not even the
    // temporary file, is left in it.
    assert!(remote.install_dir().is_dir(), "{err}");
    assert_eq!(remote.installed_files(), Vec::<String>::new());
    remote.sshd.wait_no_descendants(Duration::from_secs(15));
}

#[test]
fn an_incompatible_rockd_is_replaced_by_ours_with_install_rockd() {
    let remote = Remote::start(None);
    let dir = common::temp_dir();
    let old = dir.path().join("old-rockd");
    // A rockd from a future (or ancient) release that speaks link protocol
    // 9 only; it leaves a mark so the test knows it was found first.
    std::fs::write(
        &old,
        "#!/bin/sh\ntouch \"$HOME/old-rockd-ran\"\nhead -n 4 >/dev/null\n\
         echo 'rockd-ready 1 version 9.9.9 proto 9-9 port 1'\n",
    )
    .expect("write the old rockd");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rock = |extra: &[&str], command: &str| {
        let mut cmd = common::rock_command(&remote.sshd, &old, extra, "ssh");
        cmd.env("XDG_CONFIG_HOME", remote.config.path())
            .args(["rocktest", command]);
        run_with_timeout(&mut cmd, LIMIT)
    };

    // Without permission: the version, and how to fix it.
    let out = rock(&[], "echo must not run");
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("9.9.9") && err.contains("--install-rockd"),
        "{err}"
    );
    assert!(
        !remote.install_dir().exists(),
        "installed without permission"
    );

    let out = rock(&["--install-rockd"], "echo replaced");
    assert_exit(&out, 0, &text(&out));
    assert!(stdout(&out).contains("replaced"), "{}", text(&out));
    assert!(stderr(&out).contains("copied rockd"), "{}", text(&out));
    assert!(remote.home.path().join("old-rockd-ran").exists());
    remote.assert_installed("after replacing the incompatible rockd");

    // The old one still comes first (it is configured), but the copy
    // already there is verified and used, not copied again.
    let first = identity(&remote.installed());
    std::fs::remove_file(remote.home.path().join("old-rockd-ran")).expect("remove the mark");
    let out = rock(&["--install-rockd"], "echo reused");
    assert_exit(&out, 0, &text(&out));
    assert!(stdout(&out).contains("reused"), "{}", text(&out));
    assert!(!stderr(&out).contains("copied rockd"), "{}", text(&out));
    assert!(remote.home.path().join("old-rockd-ran").exists());
    assert_eq!(identity(&remote.installed()), first, "copied again");
}

#[test]
fn the_built_rockd_is_found_by_version_and_hash_as_a_path_would_be() {
    // Found on PATH (or through rockd_binary), rockd is asked its version.
    let found = LocalRockd::inspect(Path::new(ROCKD), Source::Path).expect("inspect rockd");
    assert_eq!(found.version, env!("CARGO_PKG_VERSION"));
    let sum = sha256_file(Path::new(ROCKD));
    assert_eq!(found.sha256, sum);
    assert_eq!(
        found.installed_path(),
        format!(
            "~/.local/lib/rock/rockd-{}-{}",
            env!("CARGO_PKG_VERSION"),
            &sum[..16]
        )
    );
}

/// The newest `GLIBC_x.y` symbol version a binary needs, per objdump.
fn glibc_floor_of(binary: &str) -> (u32, u32) {
    let out = Command::new("objdump")
        .args(["-T", binary])
        .output()
        .expect("run objdump (install binutils)");
    assert!(out.status.success(), "objdump -T {binary}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(version)
        .max()
        .unwrap_or_else(|| panic!("no GLIBC_ versions in objdump -T {binary}"))
}

fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn the_built_rockd_needs_no_newer_glibc_than_documented() {
    let documented = version(GLIBC_FLOOR).expect("GLIBC_FLOOR is major.minor");
    let needed = glibc_floor_of(ROCKD);
    assert!(
        needed <= documented,
        "{ROCKD} needs GLIBC_{}.{}, newer than the documented floor {GLIBC_FLOOR}: \
         update GLIBC_FLOOR, README.md and man/rockd.8",
        needed.0,
        needed.1
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, phrase) in [
        ("README.md", format!("rockd needs glibc >= {GLIBC_FLOOR}")),
        ("man/rockd.8", format!("glibc >= {GLIBC_FLOOR}")),
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        assert!(text.contains(&phrase), "{file} does not say {phrase:?}");
    }
}
