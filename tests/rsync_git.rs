//! `rock -d rsync` and `rock -d git` end to end: the real rsync and git
//! clients, whose ssh runs through rock, against the fixture's sshd (the
//! "remote" is this machine), with `ss -K` resets of the rock link while
//! the data flows. Trees are compared file by file by sha256; git
//! repositories by `git fsck` and their refs.

mod common;
use common::text;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::faults::{link_port_of, reset_link};
use common::{ROCKD, Sshd, assert_exit, require_root, run_with_timeout};

/// `rock --rockd <ours> -d <args…>`, with nothing inherited that would
/// change which ssh runs or how it authenticates.
fn rock_d<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = common::rock_base(ROCKD);
    cmd.arg("-d").args(args).stdin(Stdio::null());
    cmd
}

/// The ssh command that reaches the fixture as `rocktest`.
fn ssh_command(sshd: &Sshd) -> String {
    format!("ssh -F {}", sshd.ssh_config().display())
}

/// Total size of the files under `dir` (0 if it does not exist yet).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Runs `cmd` (a transfer through rock) and resets its rock link each time
/// `progress()` passes another `1/(resets+1)` of `total`. Asserts that
/// every reset happened while the transfer ran; returns its output.
fn transfer_with_resets(
    sshd: &Sshd,
    cmd: &mut Command,
    resets: u64,
    total: u64,
    progress: impl Fn() -> u64,
) -> Output {
    let (pid, waiter) = common::transfer::spawn_waited(cmd);
    let end = Instant::now() + Duration::from_secs(300);
    let (mut done_resets, mut port) = (0, None);
    while !waiter.is_finished() {
        assert!(
            Instant::now() < end,
            "the transfer did not finish in 5 minutes"
        );
        let done = progress();
        // Only once data flows: during the bootstrap rock's one TCP
        // connection is to sshd itself.
        if done > 0 {
            port = port.or_else(|| link_port_of(pid).filter(|&p| p != sshd.port()));
        }
        if let Some(p) = port
            && done_resets < resets
            && done >= (done_resets + 1) * total / (resets + 1)
        {
            let before = link_local_port(pid, p);
            reset_link(p);
            done_resets += 1;
            eprintln!("reset {done_resets} at {done} of {total} bytes");
            // The reset really cut the link: rock redials from a new port.
            if before.is_some() {
                wait_relinked(pid, p, before, &waiter);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().expect("waiter thread");
    assert_eq!(
        done_resets,
        resets,
        "the transfer outran the resets\n{}",
        text(&out)
    );
    out
}

/// The local port of `pid`'s established connection to `peer_port`.
fn link_local_port(pid: u32, peer_port: u16) -> Option<u16> {
    let out = Command::new("ss")
        .args(["-H", "-tnp", "state", "established"])
        .output()
        .expect("run ss");
    let needle = format!("pid={pid},");
    let port_of = |addr: &str| addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .find_map(|l| {
            // Columns: Recv-Q Send-Q Local:Port Peer:Port Process
            let mut cols = l.split_whitespace().skip(2);
            let (local, peer) = (cols.next()?, cols.next()?);
            (port_of(peer) == Some(peer_port))
                .then(|| port_of(local))
                .flatten()
        })
}

/// Waits until `pid`'s link to `peer_port` runs from another local port
/// than `before` (or the command has finished).
fn wait_relinked(
    pid: u32,
    peer_port: u16,
    before: Option<u16>,
    waiter: &std::thread::JoinHandle<Output>,
) {
    let end = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        let now = link_local_port(pid, peer_port);
        if now.is_some() && now != before {
            return;
        }
        assert!(Instant::now() < end, "rock did not redial after a reset");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file under `root` by relative path, with its sha256; directories
/// as `dir/` with an empty digest.
fn tree_digest(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            let rel = path.strip_prefix(root).expect("under root").to_owned();
            if path.is_dir() {
                out.insert(rel.join(""), String::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, common::sha256_file(&path));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A tree of about 128 MiB: three large random files, many small ones in
/// nested directories, an empty file and an empty directory.
fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    for (rel, size) in [
        ("big/one", 40u64 << 20),
        ("big/deeper/two", 40 << 20),
        ("three", 40 << 20),
    ] {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        common::random_file(&path, size);
        total += size;
    }
    for i in 0..200u64 {
        let dir = root.join(format!("small/{}/{}", i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 1 + i * 173 % 65_536;
        common::random_file(&dir.join(format!("f{i}")), size);
        total += size;
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::create_dir_all(root.join("nothing/here")).unwrap();
    total
}

#[test]
fn rsync_up_and_down_survives_resets() {
    require_root("ss -K on the rock link");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let (source, remote, back) = (
        dir.path().join("source"),
        dir.path().join("remote"),
        dir.path().join("back"),
    );
    let total = make_tree(&source);
    let sums = tree_digest(&source);

    // Up, with the ssh command in -e.
    let out = transfer_with_resets(
        &sshd,
        &mut rock_d(&[
            "rsync".to_owned(),
            "-a".to_owned(),
            "-e".to_owned(),
            ssh_command(&sshd),
            format!("{}/", source.display()),
            format!("rocktest:{}/", remote.display()),
        ]),
        3,
        total,
        || bytes_under(&remote),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(tree_digest(&remote), sums, "the uploaded tree differs");

    // Down, with the ssh command in RSYNC_RSH.
    let mut cmd = rock_d(&[
        "rsync".to_owned(),
        "-a".to_owned(),
        format!("rocktest:{}/", remote.display()),
        back.display().to_string(),
    ]);
    cmd.env("RSYNC_RSH", ssh_command(&sshd));
    let out = transfer_with_resets(&sshd, &mut cmd, 3, total, || bytes_under(&back));
    assert_exit(&out, 0, &text(&out));
    assert_eq!(tree_digest(&back), sums, "the downloaded tree differs");
}

/// `git <args>` in `dir`, isolated from the user's configuration; panics
/// with git's output if it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir).args(args).output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "rock test")
        .env("GIT_AUTHOR_EMAIL", "rock@test.invalid")
        .env("GIT_COMMITTER_NAME", "rock test")
        .env("GIT_COMMITTER_EMAIL", "rock@test.invalid");
    cmd
}

/// `rock -d git <args>` in `dir`, its ssh reaching the fixture.
fn rock_git(sshd: &Sshd, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = rock_d(&[&["git"], args].concat());
    cmd.current_dir(dir)
        .env("GIT_SSH_COMMAND", ssh_command(sshd))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd
}

#[test]
fn git_clone_push_and_clone_again_survive_resets() {
    require_root("ss -K on the rock link");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let remote = dir.path().join("remote.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    // Keep pushed packs as packs, so that progress shows while they arrive.
    git(&remote, &["config", "receive.unpackLimit", "1"]);
    let url = format!("rocktest:{}", remote.display());

    let out = run_with_timeout(
        &mut rock_git(&sshd, dir.path(), &["clone", "-q", &url, "work"]),
        Duration::from_secs(120),
    );
    assert_exit(&out, 0, &text(&out));
    let work = dir.path().join("work");
    assert_eq!(git(&work, &["remote", "get-url", "origin"]), url);

    // An empty clone's branch is named by the local default; push main.
    git(&work, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    const BLOB: u64 = 64 << 20;
    common::random_file(&work.join("big"), BLOB);
    let blob_sum = common::sha256_file(&work.join("big"));
    git(&work, &["add", "big"]);
    git(&work, &["commit", "-q", "-m", "a big file"]);
    let head = git(&work, &["rev-parse", "HEAD"]);

    let objects = remote.join("objects");
    let out = transfer_with_resets(
        &sshd,
        &mut rock_git(&sshd, &work, &["push", "-q", "origin", "main"]),
        3,
        BLOB,
        || bytes_under(&objects),
    );
    assert_exit(&out, 0, &text(&out));
    git(&remote, &["fsck", "--full", "--strict"]);
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/main"]), head);
    let blob = git_command(&remote)
        .args(["cat-file", "blob", "main:big"])
        .output()
        .expect("git cat-file");
    assert!(blob.status.success(), "{}", text(&blob));
    assert_eq!(blob.stdout.len() as u64, BLOB);
    let pushed = dir.path().join("pushed-blob");
    std::fs::write(&pushed, &blob.stdout).unwrap();
    assert_eq!(
        common::sha256_file(&pushed),
        blob_sum,
        "the pushed blob differs"
    );

    // And back down: a fresh clone, reset while the pack arrives.
    let copy = dir.path().join("copy");
    let out = transfer_with_resets(
        &sshd,
        &mut rock_git(&sshd, dir.path(), &["clone", "-q", &url, "copy"]),
        2,
        BLOB,
        || bytes_under(&copy),
    );
    assert_exit(&out, 0, &text(&out));
    git(&copy, &["fsck", "--full", "--strict"]);
    assert_eq!(git(&copy, &["rev-parse", "HEAD"]), head);
    assert_eq!(common::sha256_file(&copy.join("big")), blob_sum);
}

/// Runs a `rock -d` command that must be refused before it connects.
fn refused<S: AsRef<OsStr>>(args: &[S], dir: &Path) -> String {
    let out = run_with_timeout(rock_d(args).current_dir(dir), Duration::from_secs(30));
    assert_exit(&out, 255, &text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn what_rsync_and_git_cannot_carry_is_refused_clearly() {
    let dir = common::temp_dir();
    for daemon in ["rsync://localhost/module/", "localhost::module"] {
        let err = refused(&["rsync", "-a", "file", daemon], dir.path());
        assert!(
            err.contains("names an rsync daemon") && err.contains(daemon),
            "{err}"
        );
    }
    let err = refused(&["rsync", "-a", "here", "there"], dir.path());
    assert!(
        err.contains("cannot find the destination host in `rsync -a here there`"),
        "{err}"
    );
    let err = refused(&["rsync", "-e", "rsh", "f", "h:"], dir.path());
    assert!(err.contains("not OpenSSH's ssh"), "{err}");

    let err = refused(
        &["git", "clone", "https://example.invalid/r.git"],
        dir.path(),
    );
    assert!(err.contains("is not reached over ssh"), "{err}");
    git(dir.path(), &["init", "-q", "lonely"]);
    let err = refused(&["git", "-C", "lonely", "fetch"], dir.path());
    assert!(
        err.contains("cannot find which repository") && err.contains("ls-remote --get-url"),
        "{err}"
    );
    let err = refused(&["git", "status"], dir.path());
    assert!(
        err.contains("clone, fetch, pull, push or ls-remote"),
        "{err}"
    );
}
