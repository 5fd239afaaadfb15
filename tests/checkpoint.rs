//! `rock -k`, `rock checkpoint` and `rock restore` with the real CRIU the
//! set-up provides, a real sshd and a real ssh: a session is dumped, all
//! its local processes are gone while the remote command goes on printing
//! into rockd's buffer, and the restored session delivers every line once,
//! in order, with the remote command's exit status. Then the errors a user
//! can meet, each with its message.
//!
//! Each test gives rock its own runtime and state directories
//! (`XDG_RUNTIME_DIR`, `XDG_STATE_HOME`), so `rock checkpoint` sees only
//! the test's session. Dump and restore times are printed
//! (`checkpoint figures:`, shown with `--nocapture`), not asserted.

mod common;
use common::text;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ROCK, Sshd, TempDir, assert_exit, require_root, rock_command, run_with_timeout};

/// The rockd binary under test.
const ROCKD: &str = env!("CARGO_BIN_EXE_rockd");
/// Generous bound for anything that takes seconds.
const LIMIT: Duration = Duration::from_secs(120);
/// How long the session's processes stay gone.
const GONE_FOR: Duration = Duration::from_secs(10);
/// Lines the remote command prints, one every 100 ms.
const LINES: usize = 200;

/// A test's own directories: rock's runtime and state directories, and
/// room for output files and checkpoints.
struct Place {
    dir: TempDir,
}

impl Place {
    fn new() -> Place {
        let place = Place {
            dir: common::temp_dir(),
        };
        for sub in ["run", "state"] {
            std::fs::create_dir(place.path(sub)).expect("create a test directory");
            set_private(&place.path(sub));
        }
        place
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cmd` with this place's runtime and state directories.
    fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_STATE_HOME", self.path("state"))
    }

    /// `rock ARGS` here.
    fn rock(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ROCK);
        cmd.args(args).stdin(Stdio::null());
        self.apply(&mut cmd);
        cmd
    }

    /// `rock [-k] -d ssh rocktest <counter>`, output into `out`.
    fn session(&self, sshd: &Sshd, k: bool, out: &str) -> Child {
        let mut cmd = rock_command(sshd, ROCKD, if k { &["-k"] } else { &[] }, "ssh");
        cmd.args(["rocktest", &counter()]);
        self.apply(&mut cmd)
            .stdout(self.file(out))
            .stderr(self.file(&format!("{out}.err")))
            .spawn()
            .expect("start rock")
    }

    fn file(&self, name: &str) -> File {
        File::create(self.path(name)).expect("create an output file")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Waits until `name` holds at least `n` lines.
    fn wait_lines(&self, name: &str, n: usize) {
        let end = Instant::now() + LIMIT;
        while self.read(name).lines().count() < n {
            assert!(
                Instant::now() < end,
                "{name} has not {n} lines after {LIMIT:?}: {:?}\nstderr: {}",
                self.read(name),
                self.read(&format!("{name}.err"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700 a test directory");
}

/// Numbered lines every 100 ms, then `end`, exit 7.
fn counter() -> String {
    format!(
        "i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo \"line $i\"; sleep 0.1; done; \
         echo end; exit 7"
    )
}

/// Every line once and in order, then `end`.
fn check_lines(all: &str, context: &str) {
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), LINES + 1, "line count; {context}");
    for (i, line) in lines[..LINES].iter().enumerate() {
        assert_eq!(
            *line,
            format!("line {}", i + 1),
            "line {} lost, duplicated or out of order; {context}",
            i + 1
        );
    }
    assert_eq!(lines[LINES], "end", "{context}");
}

/// The pids a checkpoint recorded.
fn checkpoint_pids(dir: &Path) -> Vec<u32> {
    let meta = std::fs::read_to_string(dir.join("rock-checkpoint")).expect("read the description");
    meta.lines()
        .find_map(|l| l.strip_prefix("pids "))
        .expect("a pids line")
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect()
}

/// Whether `pid` runs (a zombie does not count).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

/// `out` ended with `code`, and its stderr says `words`.
fn says(out: &Output, code: i32, words: &str) {
    assert_exit(out, code, &text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(words),
        "{}",
        text(out)
    );
}

/// Waits until none of `pids` runs, as after a reboot.
fn wait_gone(pids: &[u32]) {
    let end = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| running(p)) {
        assert!(
            Instant::now() < end,
            "session processes still run: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < end, "{what} did not exit within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_checkpointed_session_comes_back_with_every_line_once() {
    require_root("CRIU dumps and restores other processes");
    let sshd = Sshd::start();
    let place = Place::new();
    let mut rock = place.session(&sshd, true, "before");
    place.wait_lines("before", 10);

    // A directory that exists is refused, and the session goes on.
    std::fs::create_dir(place.path("taken")).expect("mkdir");
    let taken = place.path("taken");
    let out = run_with_timeout(
        &mut place.rock(&["checkpoint", "--dir", taken.to_str().expect("utf-8")]),
        LIMIT,
    );
    says(&out, 1, "exists already");

    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(&mut place.rock(&["checkpoint", "--dir", cp_arg]), LIMIT);
    assert_exit(&out, 0, &text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("checkpointed the ssh session to rocktest"),
        "{said}"
    );
    // The rock the test started says where its session went, and ends.
    let status = wait_exit(&mut rock, "rock -k after the checkpoint");
    assert_eq!(status.code(), Some(0), "{}", place.read("before.err"));
    assert!(
        place
            .read("before.err")
            .contains(&format!("checkpointed into {cp_arg}")),
        "{}",
        place.read("before.err")
    );
    // As after a reboot: nothing of the session runs here.
    let pids = checkpoint_pids(&cp);
    assert!(pids.len() >= 3, "root, worker and ssh at least: {pids:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cp).expect("stat").permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o700,
        "the checkpoint holds the session's memory"
    );
    wait_gone(&pids);
    let before = place.read("before");
    std::thread::sleep(GONE_FOR);
    assert_eq!(
        place.read("before"),
        before,
        "nothing local wrote while dumped"
    );

    let started = Instant::now();
    let mut restore = restore_in(&place, None, &[], &cp);
    let end = Instant::now() + LIMIT;
    while place.read("after").is_empty() {
        assert!(
            Instant::now() < end,
            "no output after the restore: {}",
            place.read("after.err")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let first_byte = started.elapsed();
    // `rock status` lists the restored session (its control socket came
    // back with it; on a loaded machine, within a few seconds).
    let listed = |listing: &str| {
        listing
            .lines()
            .any(|l| l.contains("ssh") && l.contains("rocktest"))
    };
    let mut listing = String::new();
    for _ in 0..50 {
        let out = run_with_timeout(&mut place.rock(&["status"]), LIMIT);
        assert_exit(&out, 0, &text(&out));
        listing = String::from_utf8_lossy(&out.stdout).into_owned();
        if listed(&listing) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        listed(&listing),
        "rock status should list the restored session:\n{listing}\nin {}:\n{}",
        place.path("run").display(),
        String::from_utf8_lossy(
            &Command::new("ls")
                .args(["-laR", "--time-style=full-iso"])
                .arg(place.path("run"))
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
    );
    let status = wait_exit(&mut restore, "rock restore");
    let all = format!("{before}{}", place.read("after"));
    let context = format!(
        "--- rock -k's stderr ---\n{}\n--- rock restore's stderr ---\n{}",
        place.read("before.err"),
        place.read("after.err")
    );
    check_lines(&all, &context);
    assert_eq!(
        status.code(),
        Some(7),
        "the remote command's status; {context}"
    );
    let took = |text: &str, word: &str| {
        text.split(word)
            .nth(1)
            .and_then(|t| t.split(" in ").nth(1))
            .and_then(|t| t.split(' ').next())
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "checkpoint figures: dump {} s, restore {} s, restore to first byte {:.2} s; {} lines \
         before the dump, {} after",
        took(&said, "checkpointed"),
        took(&place.read("after.err"), "restored"),
        first_byte.as_secs_f64(),
        before.lines().count(),
        LINES + 1 - before.lines().count()
    );

    // Once only.
    let out = run_with_timeout(&mut place.rock(&["restore", cp_arg]), LIMIT);
    says(&out, 1, "was restored already");
}

#[test]
fn a_session_not_started_with_k_is_not_checkpointed() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let place = Place::new();
    let mut rock = place.session(&sshd, false, "out");
    place.wait_lines("out", 5);
    let out = run_with_timeout(&mut place.rock(&["checkpoint"]), LIMIT);
    says(&out, 1, "no session started with -k");
    let name = std::fs::read_dir(place.path("run").join("rock"))
        .expect("the runtime directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 16)
        .expect("the session's directory");
    let out = run_with_timeout(&mut place.rock(&["checkpoint", &name]), LIMIT);
    says(&out, 1, "was not started with -k");
    // Untouched: every line, and the command's status.
    let status = wait_exit(&mut rock, "rock");
    assert_eq!(status.code(), Some(7), "{}", place.read("out.err"));
    check_lines(&place.read("out"), &place.read("out.err"));
}

#[test]
fn a_restore_over_a_running_session_is_refused() {
    require_root("CRIU dumps and restores other processes");
    let sshd = Sshd::start();
    let place = Place::new();
    let mut rock = place.session(&sshd, true, "out");
    place.wait_lines("out", 5);
    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(
        &mut place.rock(&["checkpoint", "--leave-running", "--dir", cp_arg]),
        LIMIT,
    );
    assert_exit(&out, 0, &text(&out));
    // Its pids are taken by the session itself, still running.
    let out = run_with_timeout(&mut place.rock(&["restore", cp_arg]), LIMIT);
    says(&out, 1, "that pid is taken here by rock");
    // Refused before the claim: the checkpoint can still be restored.
    assert!(!cp.join("restored").exists());
    let status = wait_exit(&mut rock, "rock");
    assert_eq!(status.code(), Some(7), "{}", place.read("out.err"));
    check_lines(&place.read("out"), &place.read("out.err"));
}

#[test]
fn a_restore_needs_the_same_rock_binary_and_a_checkpoint() {
    require_root("CRIU");
    let place = Place::new();
    let cp = place.path("cp");
    std::fs::create_dir(&cp).expect("mkdir");
    set_private(&cp);
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(&mut place.rock(&["restore", cp_arg]), LIMIT);
    says(&out, 1, "is not a rock checkpoint");
    let meta = format!(
        "rock-checkpoint 1\nversion 0.0.0\nexe {ROCK}\nexe_sha256 {}\nroot 1\npids 1\n\
         session_dir {}\nprogram ssh\ndestination elsewhere\ninteractive no\ntaken 0\n",
        "0".repeat(64),
        place
            .path("run")
            .join("rock")
            .join("0123456789abcdef")
            .display()
    );
    std::fs::write(cp.join("rock-checkpoint"), meta).expect("write");
    let out = run_with_timeout(&mut place.rock(&["restore", cp_arg]), LIMIT);
    says(&out, 1, "restore with the same rock binary");
}

#[test]
fn an_old_criu_is_named_and_refused() {
    require_root("a root rock, so that only the version stands in the way");
    let place = Place::new();
    let bin = place.path("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let fake = bin.join("criu");
    std::fs::write(&fake, "#!/bin/sh\necho 'Version: 4.1.1'\n").expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run_with_timeout(place.rock(&["checkpoint"]).env("PATH", &path), LIMIT);
    says(&out, 1, "is CRIU 4.1.1, too old");
}

#[test]
fn without_privileges_rock_says_why() {
    require_root("running rock as the unprivileged test user");
    assert!(
        common::user_exists(common::PASSWORD_USER),
        "run scripts/setup: the test user is missing"
    );
    let out = run_with_timeout(
        Command::new("su")
            .args([common::PASSWORD_USER, "-c"])
            .arg(format!("{ROCK} checkpoint"))
            .stdin(Stdio::null()),
        LIMIT,
    );
    says(&out, 1, "needs root or CAP_CHECKPOINT_RESTORE");
}

/// `rock -k COMMAND`: a redis client under rock, counting through a rock
/// to a redis-server under rock, is checkpointed (its rock lets its link
/// go first; its own loopback connection to its supervisor is dumped with
/// its state), gone for a while, and restored: its rock resumes at the
/// server's rendezvous port and the count goes on, every request answered
/// once.
#[test]
fn a_rock_command_client_is_restored_and_its_rock_resumes() {
    use common::rocked::{REDIS_COUNTER, config_with_rock_port, free_port, rocked_server};
    require_root("CRIU dumps and restores other processes");
    let place = Place::new();
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let port = free_port();
    let p = port.to_string();
    let server_dir = place.path("server");
    std::fs::create_dir(&server_dir).expect("mkdir");
    let _redis = rocked_server(
        &[
            "redis-server",
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        config.path(),
        port,
        rendezvous,
        &server_dir,
    );
    let stop = place.path("stop");
    let mut cmd = place.rock(&[
        "-k",
        "-v",
        "-v",
        "python3",
        "-c",
        REDIS_COUNTER,
        "127.0.0.1",
        &p,
    ]);
    cmd.arg(&stop).env("XDG_CONFIG_HOME", config.path());
    let mut rock = cmd
        .stdout(place.file("before"))
        .stderr(place.file("before.err"))
        .spawn()
        .expect("start rock -k");
    place.wait_lines("before", 4);
    assert!(
        place.read("before.err").contains(": rock "),
        "the client's connection is no rock: {}",
        place.read("before.err")
    );

    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(&mut place.rock(&["checkpoint", "--dir", cp_arg]), LIMIT);
    assert_exit(&out, 0, &text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("checkpointed the python3 session"), "{said}");
    let status = wait_exit(&mut rock, "rock -k after the checkpoint");
    assert_eq!(status.code(), Some(0), "{}", place.read("before.err"));
    let pids = checkpoint_pids(&cp);
    wait_gone(&pids);
    let before = place.read("before");
    std::thread::sleep(Duration::from_secs(5));

    let mut restore = restore_in(&place, None, &[], &cp);
    place.wait_lines("after", 4);
    std::fs::write(&stop, b"").expect("write the stop file");
    let status = wait_exit(&mut restore, "rock restore");
    let all = format!("{before}{}", place.read("after"));
    let context = format!(
        "{all}\n--- rock -k ---\n{}\n--- rock restore ---\n{}",
        place.read("before.err"),
        place.read("after.err")
    );
    assert_eq!(status.code(), Some(0), "{context}");
    let lines: Vec<&str> = all.lines().collect();
    let (last, counts) = lines.split_last().expect("lines");
    for (i, line) in counts.iter().enumerate() {
        assert_eq!(*line, format!("count {}", 25 * (i + 1)), "{context}");
    }
    let total: usize = last
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ok line: {context}"));
    assert!(total >= 25 * counts.len(), "{context}");
    assert!(
        place.read("after.err").contains("resumed=true"),
        "the restored rock did not resume: {context}"
    );
}

/// Every `tick N` line in `text` (a terminal's output), in order.
fn ticks(text: &str) -> Vec<u32> {
    text.split(['\r', '\n'])
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

/// The issue's own scenario: an interactive `rock -k -d ssh` on a
/// terminal, the remote shell's state set and a counter printing; the
/// session is checkpointed and everything local is gone for 30 s while the
/// remote goes on printing into rockd's buffer; `rock restore` on a new
/// terminal brings back the same shell (same directory, same variable),
/// and the counter's lines arrive once and in order.
#[test]
fn an_interactive_session_is_restored_onto_a_new_terminal() {
    use common::pty::PtyChild;
    require_root("CRIU dumps and restores other processes");
    const TICKS: u32 = 400;
    let sshd = Sshd::start();
    let place = Place::new();
    let mut cmd = rock_command(&sshd, ROCKD, &["-k"], "ssh");
    cmd.args(["-tt", "rocktest"]);
    place.apply(&mut cmd);
    let mut first = PtyChild::spawn(&mut cmd);
    first.send("cd /tmp; X=42; PS1='remote$ '\r");
    first.expect("remote$ ", LIMIT);
    first.send(&format!(
        "for i in $(seq 1 {TICKS}); do echo tick $i; sleep 0.1; done; echo \"in $(pwd) X=$X\"\r"
    ));
    first.expect("tick 10\r\n", LIMIT);

    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(&mut place.rock(&["checkpoint", "--dir", cp_arg]), LIMIT);
    assert_exit(&out, 0, &text(&out));
    let status = first.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", first.seen);
    first.expect("checkpointed into", LIMIT);
    let description = std::fs::read_to_string(cp.join("rock-checkpoint")).expect("description");
    assert!(description.contains("interactive yes"), "{description}");
    let pids = checkpoint_pids(&cp);
    wait_gone(&pids);
    std::thread::sleep(Duration::from_secs(30));

    let mut restore = Command::new(ROCK);
    restore.args(["restore", cp_arg]);
    place.apply(&mut restore);
    // Another terminal, of another size than the first (0 × 0).
    let mut second = PtyChild::spawn_sized(&mut restore, Some((37, 100)));
    second.expect("in /tmp X=42", LIMIT);
    // ssh was told of the new terminal's size and told the remote side.
    second.send("stty size\r");
    second.expect("37 100", LIMIT);
    // Every terminal descriptor of the restored session is the new
    // terminal: none follows the old one's name.
    let tty = std::fs::read_link(format!("/proc/{}/fd/0", second.child.id())).expect("the tty");
    for &pid in &pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.starts_with("/dev/pts")
            {
                assert_eq!(
                    target,
                    tty,
                    "process {pid}'s descriptor {:?}",
                    fd.file_name()
                );
            }
        }
    }
    second.send("echo \"still $X in $(pwd)\"\r");
    second.expect("still 42 in /tmp", LIMIT);
    second.send("exit\r");
    let status = second.wait(LIMIT);
    let all = format!("{}{}", first.seen, second.seen);
    let got = ticks(&all);
    let want: Vec<u32> = (1..=TICKS).collect();
    assert_eq!(
        got, want,
        "ticks lost, duplicated or out of order\n--- first terminal ---\n{}\n--- second ---\n{}",
        first.seen, second.seen
    );
    assert_eq!(status.code(), Some(0), "{}", second.seen);
}

/// `rock -k -d scp` of 256 MiB, checkpointed mid-copy (scp's rate is
/// limited so that the copy is sure to be under way), gone 5 s, restored:
/// the copy finishes with scp's status 0 and the same sha256.
#[test]
fn an_scp_checkpointed_mid_copy_finishes_intact() {
    require_root("CRIU dumps and restores other processes");
    const BIG: u64 = 256 << 20;
    let sshd = Sshd::start();
    let place = Place::new();
    let original = place.path("original");
    common::random_file(&original, BIG);
    let sum = common::sha256_file(&original);
    let copy = place.path("copy");
    let mut cmd = rock_command(&sshd, ROCKD, &["-k"], "scp");
    cmd.args(["-l", "400000"])
        .arg(&original)
        .arg(format!("rocktest:{}", copy.display()));
    let mut rock = place
        .apply(&mut cmd)
        .stdout(place.file("scp.out"))
        .stderr(place.file("scp.err"))
        .spawn()
        .expect("start rock -k -d scp");
    let size = || std::fs::metadata(&copy).map_or(0, |m| m.len());
    let end = Instant::now() + LIMIT;
    while size() < BIG / 8 {
        assert!(
            Instant::now() < end,
            "the copy did not start: {}",
            place.read("scp.err")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let out = run_with_timeout(&mut place.rock(&["checkpoint", "--dir", cp_arg]), LIMIT);
    assert_exit(&out, 0, &text(&out));
    let at_dump = size();
    assert!(at_dump < BIG, "the copy was over before the checkpoint");
    let status = wait_exit(&mut rock, "rock -k -d scp after the checkpoint");
    assert_eq!(status.code(), Some(0), "{}", place.read("scp.err"));
    std::thread::sleep(Duration::from_secs(5));
    let out = run_with_timeout(
        &mut place.rock(&["restore", cp_arg]),
        Duration::from_secs(300),
    );
    assert_exit(
        &out,
        0,
        &format!(
            "{}\n--- scp's stderr ---\n{}",
            text(&out),
            place.read("scp.err")
        ),
    );
    assert_eq!(size(), BIG, "the copy's length");
    assert_eq!(
        common::sha256_file(&copy),
        sum,
        "the copy differs from the original"
    );
    println!(
        "checkpoint figures: scp of 256 MiB checkpointed at {} MiB; {}",
        at_dump >> 20,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `rock restore [EXTRA] CHECKPOINT`, in network namespace `ns` if given
/// (see [`in_net_only`]), started, its output in `after` and `after.err`.
fn restore_in(place: &Place, ns: Option<&str>, extra: &[&str], checkpoint: &Path) -> Child {
    let mut args = vec!["restore"];
    args.extend_from_slice(extra);
    args.push(checkpoint.to_str().expect("a UTF-8 checkpoint path"));
    let mut restore = place.rock(&args);
    if let Some(ns) = ns {
        restore = in_net_only(ns, &restore);
    }
    restore
        .stdout(place.file("after"))
        .stderr(place.file("after.err"))
        .spawn()
        .unwrap_or_else(|e| panic!("start rock restore {extra:?} in {ns:?}: {e}"))
}

/// `cmd` in network namespace `ns` only (`nsenter --net`), keeping the
/// mount namespace: `ip netns exec` would give each command a mount
/// namespace of its own, which CRIU would then have to dump and rebuild.
/// (So no `/etc/netns` hosts file: the test names the server by address.)
fn in_net_only(ns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("nsenter");
    wrapped
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The sshd in `net`'s server namespace, named by address (no hosts
/// file: see [`in_net_only`]).
fn server_sshd(net: &common::netns::Net) -> Sshd {
    Sshd::builder()
        .in_netns(
            &net.server,
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        )
        .client_host(net.server_addr().to_string())
        .start()
}

/// Starts `rock -k -d ssh` with the counter on `net`'s laptop, lets it
/// print ten lines, checkpoints it there into `place`'s `cp` (CRIU dumps
/// from inside the session's network namespace, and restores into the one
/// it runs in) and waits for the `rock -k` to end; returns the checkpoint.
fn checkpoint_on_laptop(net: &common::netns::Net, sshd: &Sshd, place: &Place) -> PathBuf {
    checkpoint_on_laptop_amid(net, sshd, place, Duration::ZERO)
}

/// The same, while for `storm` from the checkpoint's start an address
/// comes and goes on the laptop every few milliseconds: the network change
/// notices that rock's relay subscribes to keep arriving while CRIU has it
/// frozen, and CRIU refuses to dump a netlink socket holding one.
fn checkpoint_on_laptop_amid(
    net: &common::netns::Net,
    sshd: &Sshd,
    place: &Place,
    storm: Duration,
) -> PathBuf {
    let mut cmd = rock_command(sshd, ROCKD, &["-k", "-v"], "ssh");
    cmd.args(["rocktest", &counter()]);
    place.apply(&mut cmd);
    let mut rock = in_net_only(&net.laptop, &cmd)
        .stdout(place.file("before"))
        .stderr(place.file("before.err"))
        .spawn()
        .expect("start rock -k on the laptop");
    place.wait_lines("before", 10);
    let cp = place.path("cp");
    let cp_arg = cp.to_str().expect("utf-8");
    let laptop = net.laptop.clone();
    let storming = std::thread::spawn(move || {
        let end = Instant::now() + storm;
        let mut changes = 0;
        while Instant::now() < end {
            let op = if changes % 2 == 0 { "add" } else { "del" };
            let _ = Command::new("ip")
                .args(["-n", &laptop, "addr", op, "10.9.9.9/32", "dev", "lo"])
                .status();
            changes += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        changes
    });
    let out = run_with_timeout(
        &mut in_net_only(&net.laptop, &place.rock(&["checkpoint", "--dir", cp_arg])),
        LIMIT,
    );
    let changes = storming.join().expect("the address storm");
    assert_exit(
        &out,
        0,
        &format!(
            "{}
({changes} address changes during it)",
            text(&out)
        ),
    );
    let status = wait_exit(&mut rock, "rock -k after the checkpoint");
    assert_eq!(status.code(), Some(0), "{}", place.read("before.err"));
    cp
}

/// Follows a restored session (`restore`) to its end on `ns`, until the
/// server shows a connection that `linked` accepts; then checks every line
/// and the remote status.
fn restored_session_ends_well(
    net: &common::netns::Net,
    place: &Place,
    mut restore: Child,
    what: &str,
    linked: impl Fn(&str) -> bool,
) {
    let end = Instant::now() + LIMIT;
    loop {
        let sockets = net.sockets(&net.server);
        if linked(&sockets) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the restored session's link is not {what}:\n{sockets}\n--- after ---\n{}\n\
             --- after.err ---\n{}",
            place.read("after"),
            place.read("after.err")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = wait_exit(&mut restore, "rock restore");
    let context = format!(
        "--- before ---\n{}\n--- after ---\n{}",
        place.read("before.err"),
        place.read("after.err")
    );
    check_lines(
        &format!("{}{}", place.read("before"), place.read("after")),
        &context,
    );
    assert_eq!(status.code(), Some(7), "{context}");
}

/// Migration: a `rock -k -d ssh` on one laptop (a network namespace) is
/// checkpointed there and restored on a second laptop with another
/// address; the session goes on from there — its link now comes from the
/// second laptop's address — with every line once and the remote status.
#[test]
fn a_session_checkpointed_on_one_laptop_continues_on_another() {
    use common::netns::{Net, SECOND_LAPTOP_ADDR};
    require_root("network namespaces and CRIU");
    let mut net = Net::new();
    let sshd = server_sshd(&net);
    let laptop2 = net.add_second_laptop();
    let place = Place::new();
    let cp = checkpoint_on_laptop(&net, &sshd, &place);
    std::thread::sleep(Duration::from_secs(5));
    let restore = restore_in(&place, Some(&laptop2), &[], &cp);
    // rockd listens on both families: ss shows [::ffff:10.3.0.2]:PORT.
    let from = SECOND_LAPTOP_ADDR.to_string();
    restored_session_ends_well(&net, &place, restore, "from the second laptop", |s| {
        s.contains(&from)
    });
}

/// A checkpoint taken while the laptop's network keeps changing: CRIU
/// refuses to dump the relay's network watch while a change notice waits
/// in it, so `rock checkpoint` tries again once the relay has read it. The
/// storm lasts a second; the checkpoint succeeds, and the session restored
/// on the same laptop finishes with every line once.
#[test]
fn a_checkpoint_amid_network_changes_is_tried_again_until_it_holds() {
    use common::netns::Net;
    require_root("network namespaces and CRIU");
    let net = Net::new();
    let sshd = server_sshd(&net);
    let place = Place::new();
    let cp = checkpoint_on_laptop_amid(&net, &sshd, &place, Duration::from_secs(1));
    let restore = restore_in(&place, Some(&net.laptop), &[], &cp);
    // rockd listens on both families: ss shows [::ffff:10.1.0.2]:PORT.
    let from = net.laptop_addr().to_string();
    restored_session_ends_well(&net, &place, restore, "from the laptop", |s| {
        s.lines()
            .any(|l| l.starts_with("ESTAB") && l.contains(&from))
    });
}

/// `rock restore -l`: a session checkpointed on the laptop and restored on
/// the server's own machine reaches rockd at 127.0.0.1 from then on (its
/// rock's link to rockd is a loopback connection there), and finishes
/// with every line once.
#[test]
fn a_session_restored_onto_the_server_with_l_redials_localhost() {
    use common::netns::Net;
    require_root("network namespaces and CRIU");
    let net = Net::new();
    let sshd = server_sshd(&net);
    let place = Place::new();
    let cp = checkpoint_on_laptop(&net, &sshd, &place);
    let restore = restore_in(&place, Some(&net.server), &["-l"], &cp);
    restored_session_ends_well(&net, &place, restore, "rock's on loopback", |sockets| {
        sockets.lines().any(|l| {
            l.starts_with("ESTAB")
                && l.contains("users:((\"rock\"")
                && l.matches("127.0.0.1:").count() == 2
        })
    });
}
