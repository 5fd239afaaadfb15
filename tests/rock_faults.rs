//! `rock COMMAND` at both ends, through real faults: ordinary programs
//! (python's blocking sockets and asyncio, redis-server, curl against a
//! threaded HTTP server, a forking socat) talk through rocks while the
//! kernel resets the rocks' links (`ss -K`) or drops their packets
//! (iptables). Each test checks that every byte arrived once and in order
//! (numbered lines, a counter incremented once per request, a checksum),
//! that the programs' exit statuses are their own, and that the rock did
//! resume (its log says so), so that the faults did hit.
//!
//! The links of every rock of a test go to the test's own rendezvous port,
//! so that the faults, matched by that port, hit the rocks and nothing
//! else: neither the programs' own loopback connections to their
//! supervisors nor another test's connections.

mod common;
use common::text;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::rocked::{
    ASYNCIO_ECHO_SERVER, Server, config_with_rock_port, free_port, rocked_server, server_log,
    server_runtime,
};
use common::{ROCK, TempDir, assert_exit, faults, require_root, run_with_timeout};

/// Resets the rocks' links every `every` on a thread, until dropped.
struct Resets {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resets {
    fn start(rendezvous: u16, every: Duration) -> Resets {
        require_root("`ss -K` on the rocks' links");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU32::new(0));
        let thread = {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    faults::reset_link(rendezvous);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Resets {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Stops; how many resets were made.
    fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Resets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A rendezvous port of the test's own, a configuration naming it, and a
/// directory for the server's files.
struct Setup {
    rendezvous: u16,
    config: TempDir,
    dir: TempDir,
    /// The client's XDG_RUNTIME_DIR.
    runtime: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let rendezvous = free_port();
        Setup {
            rendezvous,
            config: config_with_rock_port(rendezvous),
            dir: common::temp_dir(),
            runtime: common::temp_dir(),
        }
    }

    /// Starts `args` under rock as the test's server on `port`.
    fn server(&self, args: &[&str], port: u16) -> Server {
        rocked_server(
            args,
            self.config.path(),
            port,
            self.rendezvous,
            self.dir.path(),
        )
    }

    /// Runs `args` under `rock -v -v` as the client, within `limit`.
    fn client(&self, args: &[&str], limit: Duration) -> Output {
        run_with_timeout(
            Command::new(ROCK)
                .args(["-v", "-v"])
                .args(args)
                .env("XDG_CONFIG_HOME", self.config.path())
                .env("XDG_RUNTIME_DIR", self.runtime.path())
                .env_remove("RUST_LOG")
                .current_dir(self.dir.path())
                .stdin(Stdio::null()),
            limit,
        )
    }

    /// What the server's rock logged.
    fn server_log(&self) -> String {
        server_log(self.dir.path())
    }

    /// Runs the client `args` while the rocks' links are reset every
    /// `every`; checks that it exited 0, that resets were made and that a
    /// rock resumed. Returns its output and a context for messages.
    fn client_through_resets(&self, args: &[&str], every: Duration) -> (Output, String) {
        let resets = Resets::start(self.rendezvous, every);
        let out = self.client(args, Duration::from_secs(120));
        let made = resets.stop();
        let context = format!("{}\n--- server ---\n{}", text(&out), self.server_log());
        assert_exit(&out, 0, &context);
        assert!(made >= 3, "only {made} resets were made: {context}");
        assert!(resumes(&out) >= 1, "no link was resumed: {context}");
        (out, context)
    }
}

/// How many links of the client's rocks came back after a loss.
fn resumes(out: &Output) -> usize {
    String::from_utf8_lossy(&out.stderr)
        .matches("resumed=true")
        .count()
}

/// A client (python, blocking sockets) that sends `N` numbered lines of
/// 100 bytes to `127.0.0.1:PORT`, pausing now and then so that the
/// transfer lasts a while, half-closes, and checks that the echo is every
/// line once and in order followed by the end of the stream. Prints `ok N`.
const NUMBERED_LINES_CLIENT: &str = r#"
import socket, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
errors = []
def line(i):
    return b"%06d %s\n" % (i, b"x" * 92)
def reader():
    f = s.makefile("rb")
    for i in range(1, n + 1):
        got = f.readline()
        if got != line(i):
            errors.append("line %d: got %r" % (i, got[:20]))
            return
    rest = f.read()
    if rest:
        errors.append("after the last line: %r" % rest[:40])
t = threading.Thread(target=reader)
t.start()
for i in range(1, n + 1):
    s.sendall(line(i))
    if i % 25 == 0:
        time.sleep(0.01)
s.shutdown(socket.SHUT_WR)
t.join()
if errors:
    print("errors:", errors)
    sys.exit(1)
print("ok", n)
"#;

/// Runs the numbered-lines client against the rock server on `port` while
/// the links are reset every 150 ms; checks everything.
fn numbered_lines_through_resets(setup: &Setup, port: u16) {
    let (out, context) = setup.client_through_resets(
        &[
            "python3",
            "-c",
            NUMBERED_LINES_CLIENT,
            &port.to_string(),
            "4000",
        ],
        Duration::from_millis(150),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok 4000\n",
        "{context}"
    );
}

#[test]
fn a_blocking_client_and_an_asyncio_server_lose_nothing_to_resets() {
    let setup = Setup::new();
    let port = free_port();
    let _server = setup.server(
        &["python3", "-c", ASYNCIO_ECHO_SERVER, &port.to_string()],
        port,
    );
    numbered_lines_through_resets(&setup, port);
}

#[test]
fn a_forking_socat_server_loses_nothing_to_resets() {
    let setup = Setup::new();
    let port = free_port();
    let listen = format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr");
    let _server = setup.server(&["socat", &listen, "EXEC:cat"], port);
    numbered_lines_through_resets(&setup, port);
}

/// A client (python, blocking sockets) that sends `INCR rock-counter` `N`
/// times, one at a time, to redis at `127.0.0.1:PORT`, and checks that
/// each reply is the next number: a request lost, or carried twice, would
/// break the count. Prints `ok N`.
const REDIS_COUNTER_CLIENT: &str = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
s.sendall(b"DEL rock-counter\r\n")
f.readline()
for i in range(1, n + 1):
    s.sendall(b"INCR rock-counter\r\n")
    got = f.readline()
    if got != b":%d\r\n" % i:
        print("INCR number", i, "answered", got)
        sys.exit(1)
s.sendall(b"GET rock-counter\r\n")
f.readline()
got = f.readline()
if got != b"%d\r\n" % n:
    print("GET answered", got)
    sys.exit(1)
print("ok", n)
"#;

#[test]
fn redis_counts_every_request_once_through_resets() {
    let setup = Setup::new();
    let port = free_port();
    let p = port.to_string();
    let _redis = setup.server(
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
        port,
    );
    let (out, context) = setup.client_through_resets(
        &["python3", "-c", REDIS_COUNTER_CLIENT, &p, "5000"],
        Duration::from_millis(150),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok 5000\n",
        "{context}"
    );
}

#[test]
fn curl_downloads_a_whole_file_from_a_threaded_server_through_resets() {
    let setup = Setup::new();
    let port = free_port();
    let file = setup.dir.path().join("big");
    common::random_file(&file, 48 << 20);
    let want = common::sha256_file(&file);
    // python's http.server serves each request on a thread of its own.
    let _server = setup.server(
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ],
        port,
    );
    let got = setup.dir.path().join("got");
    let url = format!("http://127.0.0.1:{port}/big");
    let (_, context) = setup.client_through_resets(
        &[
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--limit-rate",
            "16M",
            "-o",
            got.to_str().expect("a UTF-8 path"),
            &url,
        ],
        Duration::from_millis(200),
    );
    assert_eq!(common::sha256_file(&got), want, "{context}");
}

/// The rock link is blackholed (every packet to and from the rendezvous
/// port dropped) for longer than the engine's link timeout while the
/// client waits for its echo; the rock comes back when the blackhole
/// lifts, and nothing is lost.
#[test]
fn a_blackholed_link_comes_back_with_nothing_lost() {
    let setup = Setup::new();
    let port = free_port();
    let _server = setup.server(
        &["python3", "-c", ASYNCIO_ECHO_SERVER, &port.to_string()],
        port,
    );
    let rendezvous = setup.rendezvous;
    let hole = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let blackhole = faults::Blackhole::new(rendezvous);
        std::thread::sleep(Duration::from_secs(12));
        drop(blackhole);
    });
    let out = setup.client(
        &[
            "python3",
            "-c",
            NUMBERED_LINES_CLIENT,
            &port.to_string(),
            "1500",
        ],
        Duration::from_secs(120),
    );
    hole.join().expect("the blackhole thread");
    let context = format!("{}\n--- server ---\n{}", text(&out), setup.server_log());
    assert_exit(&out, 0, &context);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok 1500\n",
        "{context}"
    );
    assert!(resumes(&out) >= 1, "no link was resumed: {context}");
}

/// Nothing of rock is left once the client's command has ended: the
/// supervisor has exited with the command (the run returned), and the
/// runtime directory it used holds nothing.
#[test]
fn nothing_is_left_behind_after_the_command() {
    let setup = Setup::new();
    let port = free_port();
    let _server = setup.server(
        &["python3", "-c", ASYNCIO_ECHO_SERVER, &port.to_string()],
        port,
    );
    let out = setup.client(
        &[
            "python3",
            "-c",
            NUMBERED_LINES_CLIENT,
            &port.to_string(),
            "10",
        ],
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 10\n");
    let rock_dir = setup.runtime.path().join("rock");
    let left: Vec<_> = std::fs::read_dir(&rock_dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", rock_dir.display());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("connect 127.0.0.1:{port}: via ")),
        "the connection was no rock: {}",
        text(&out)
    );
}

/// `rock status` with XDG_RUNTIME_DIR `runtime`: its table's lines.
fn status(runtime: &std::path::Path) -> String {
    let out = run_with_timeout(
        Command::new(ROCK)
            .arg("status")
            .env("XDG_RUNTIME_DIR", runtime)
            .stdin(Stdio::null()),
        Duration::from_secs(20),
    );
    assert_exit(&out, 0, &text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The row of `listing` whose DESTINATION column contains `peer`, split
/// into columns: PID, COMMAND, DESTINATION, STATE…, RTT, REPLAY,
/// RECONNECTS.
fn row(listing: &str, peer: &str) -> Option<Vec<String>> {
    let line = listing.lines().find(|l| l.contains(peer))?;
    Some(line.split_whitespace().map(str::to_owned).collect())
}

/// A client that sends one line, reads its echo, says `ready`, and keeps
/// its connection until the stop file argv[2] exists; then says `ok`.
const WAITING_CLIENT: &str = r#"
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"hello\n")
assert s.recv(100) == b"hello\n"
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
s.sendall(b"bye\n")
assert s.recv(100) == b"bye\n"
s.close()
print("ok", flush=True)
"#;

#[test]
fn rock_status_lists_each_rock_at_both_ends() {
    let setup = Setup::new();
    let port = free_port();
    let _server = setup.server(
        &["python3", "-c", ASYNCIO_ECHO_SERVER, &port.to_string()],
        port,
    );
    let stop = setup.dir.path().join("stop");
    // Ended when dropped, also when the test fails.
    let mut client = Server(
        Command::new(ROCK)
            .args(["python3", "-c", WAITING_CLIENT, &port.to_string()])
            .arg(&stop)
            .env("XDG_CONFIG_HOME", setup.config.path())
            .env("XDG_RUNTIME_DIR", setup.runtime.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client under rock"),
    );
    let lines = common::live::stdout_lines(&mut client.0);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).ok().as_deref(),
        Some("ready"),
        "{}",
        setup.server_log()
    );
    let server_run = server_runtime(setup.dir.path());
    let dest = format!("127.0.0.1:{port}");
    let listing = status(setup.runtime.path());
    let mine = row(&listing, &dest).unwrap_or_else(|| panic!("no row for {dest}:\n{listing}"));
    assert_eq!(mine[1], "python3", "{listing}");
    assert_eq!(mine[3], "connected", "{listing}");
    assert_eq!(mine.last().map(String::as_str), Some("0"), "{listing}");
    let theirs = status(&server_run);
    let to_port = format!("to port {port}");
    let server_row =
        row(&theirs, &to_port).unwrap_or_else(|| panic!("no row for the server:\n{theirs}"));
    assert_eq!(server_row[1], "python3", "{theirs}");
    assert!(server_row.contains(&"connected".to_owned()), "{theirs}");

    // After a reset the client's rock has reconnected.
    faults::reset_link(setup.rendezvous);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listing = status(setup.runtime.path());
        let again = row(&listing, &dest);
        // At least one: the reset may also catch the new link, made
        // within a millisecond while `ss` is still at work.
        let reconnected = |r: &Vec<String>| {
            r[3] == "connected" && r.last().and_then(|n| n.parse::<u32>().ok()) >= Some(1)
        };
        if again.as_ref().is_some_and(reconnected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnection shown:\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    std::fs::write(&stop, b"").expect("write the stop file");
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).ok().as_deref(),
        Some("ok")
    );
    let status_code = client.0.wait().expect("wait for the client");
    assert!(status_code.success());
    assert_eq!(status(setup.runtime.path()), "no rock sessions\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status(&server_run) != "no rock sessions\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the server's rock is still listed:\n{}",
            status(&server_run)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
