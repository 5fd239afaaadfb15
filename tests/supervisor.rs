//! `rock COMMAND` without `-d`: the supervisor runs the command with
//! librocks.so preloaded into it and everything it starts, stays its
//! parent, forwards signals and exits with its status; a program the
//! loader cannot preload into is run with a line saying so.

mod common;
use common::text;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::rocked::{
    Server, ask_rendezvous, config_with_rock_port, free_port, library, rocked_server,
    wait_listening,
};
use common::{ROCK, assert_exit, run_with_timeout};

fn rock(args: &[&str]) -> Output {
    library();
    run_with_timeout(
        Command::new(ROCK).args(args).stdin(Stdio::null()),
        Duration::from_secs(30),
    )
}

#[test]
fn the_commands_exit_status_is_rocks() {
    let out = rock(&["sh", "-c", "echo out; exit 3"]);
    assert_exit(&out, 3, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let out = rock(&["sh", "-c", "kill -TERM $$"]);
    assert_exit(&out, 128 + 15, &text(&out));
}

#[test]
fn rock_adds_nothing_of_its_own_to_what_the_command_says() {
    let out = rock(&["sh", "-c", "echo out; echo err >&2"]);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn the_library_is_in_the_command_and_everything_it_starts() {
    // grep runs as a child of sh, and again as a grandchild.
    let script = "grep -c librocks.so /proc/self/maps; \
                  sh -c 'grep -c librocks.so /proc/self/maps'; \
                  env | grep '^LD_PRELOAD='";
    let out = rock(&["sh", "-c", script]);
    assert_exit(&out, 0, &text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text(&out));
    for maps in &lines[..2] {
        let mapped: u32 = maps.parse().unwrap_or(0);
        assert!(mapped > 0, "librocks.so not mapped: {}", text(&out));
    }
    let canonical = std::fs::canonicalize(library()).expect("the library's real path");
    assert_eq!(
        lines[2],
        format!("LD_PRELOAD={}", canonical.display()),
        "an absolute path, so every working directory finds it"
    );
}

#[test]
fn the_users_own_preloads_are_kept() {
    library();
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["sh", "-c", "echo \"$LD_PRELOAD\""])
            .env("LD_PRELOAD", "")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("librocks.so"),
        "an empty LD_PRELOAD adds nothing: {}",
        text(&out)
    );
    // A library of the user's stays, after ours (libc is always loadable).
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    if Path::new(libc).exists() {
        let out = run_with_timeout(
            Command::new(ROCK)
                .args(["sh", "-c", "echo \"$LD_PRELOAD\""])
                .env("LD_PRELOAD", libc)
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert_exit(&out, 0, &text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .ends_with(&format!("librocks.so:{libc}")),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn signals_sent_to_rock_reach_the_command() {
    library();
    let mut child = Command::new(ROCK)
        .args([
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = lines.next().and_then(Result::ok);
    assert_eq!(first.as_deref(), Some("ready"));
    // SAFETY: kill has no memory effects; the pid is our child's.
    let rc = unsafe { libc::kill(i32::try_from(child.id()).expect("a pid"), libc::SIGTERM) };
    assert_eq!(rc, 0);
    let next = lines.next().and_then(Result::ok);
    assert_eq!(next.as_deref(), Some("got TERM"));
    let status = child.wait().expect("wait for rock");
    assert_eq!(
        status.code(),
        Some(5),
        "rock exits with the command's status"
    );
}

#[test]
fn a_program_that_cannot_be_found_is_the_shells_127() {
    let out = rock(&["no-such-program-anywhere", "x"]);
    assert_exit(&out, 127, &text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rock: cannot run no-such-program-anywhere"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_static_program_runs_with_a_line_saying_its_connections_stay_plain() {
    let dir = common::temp_dir();
    let src = dir.path().join("s.c");
    std::fs::write(&src, "int main(void) { return 4; }\n").expect("write the source");
    let bin = dir.path().join("static-program");
    let built = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(built.success(), "gcc -static failed");
    let out = rock(&[bin.to_str().expect("a UTF-8 temporary path")]);
    assert_exit(&out, 4, &text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connections stay plain TCP") && err.contains("statically linked"),
        "{}",
        text(&out)
    );
}

/// An ordinary TCP echo server on loopback, in a thread of the test.
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut reader, &mut stream);
            });
        }
    });
    port
}

/// Runs a python script under `rock -vv` with the echo server's port as
/// its argument.
fn python_under_rock(script: &str, port: u16) -> Output {
    library();
    run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", script, &port.to_string()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    )
}

#[test]
fn connections_are_announced_to_the_supervisor_and_work_unchanged() {
    let port = echo_server();
    let script = r#"
import socket, sys, asyncio
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"blocking\n")
print(s.makefile().readline().strip())
async def main():
    # A non-blocking connect in an event loop (epoll), as asyncio makes it.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"asyncio\n")
    await w.drain()
    print((await r.readline()).decode().strip())
    w.close()
asyncio.run(main())
"#;
    let out = python_under_rock(script, port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "blocking\nasyncio\n");
    let err = String::from_utf8_lossy(&out.stderr);
    let announced = err
        .matches(&format!("connect 127.0.0.1:{port}: direct"))
        .count();
    assert_eq!(announced, 2, "each connect is asked once: {}", text(&out));
}

#[test]
fn thousands_of_connections_leak_no_descriptor() {
    let port = echo_server();
    let script = r#"
import os, socket, sys
port = int(sys.argv[1])
def fds(): return len(os.listdir("/proc/self/fd"))
s = socket.create_connection(("127.0.0.1", port)); s.close()
before = fds()
for i in range(2000):
    s = socket.create_connection(("127.0.0.1", port))
    s.close()
print(fds() - before)
"#;
    let out = python_under_rock(script, port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        text(&out)
    );
}

#[test]
fn close_range_in_the_program_never_sends_a_question_into_its_files() {
    let port = echo_server();
    // The library's line sits at descriptor 512 or above. The program
    // closes everything, opens files until one takes a number at 512 or
    // above (where the line was), then connects again: the library must
    // notice its line is gone and never write into that file.
    let script = r#"
import os, socket, sys, tempfile
port = int(sys.argv[1])
socket.create_connection(("127.0.0.1", port)).close()
os.closerange(3, 65536)
path = tempfile.mktemp()
fds = []
while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fds.append(fd)
    if fd >= 512 + 8:
        break
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"again\n")
print(s.makefile().readline().strip())
print(os.path.getsize(path))
os.unlink(path)
"#;
    let out = python_under_rock(script, port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "again\n0\n",
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("connect 127.0.0.1:{port}: direct")),
        "{}",
        text(&out)
    );
}

// --- Ordinary programs against ordinary peers: rock is invisible --------

/// Starts `program args` as a server of the test on `port`.
fn start_server(program: &str, args: &[&str], port: u16, dir: Option<&Path>) -> Server {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let server = Server(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (scripts/setup installs it): {e}")),
    );
    wait_listening(port, program);
    server
}

/// The same command run plainly and under `rock -v -v`, stdin from
/// `input`, with rock's configuration files under `config`
/// (XDG_CONFIG_HOME) when given.
fn plain_and_under_rock_with(
    args: &[&str],
    input: &[u8],
    config: Option<&Path>,
) -> (Output, Output) {
    library();
    let dir = common::temp_dir();
    let stdin = dir.path().join("stdin");
    std::fs::write(&stdin, input).expect("write the input");
    let run = |command: &mut Command| {
        let file = std::fs::File::open(&stdin).expect("open the input");
        if let Some(config) = config {
            command.env("XDG_CONFIG_HOME", config);
        }
        run_with_timeout(
            command.env_remove("RUST_LOG").stdin(file),
            Duration::from_secs(30),
        )
    };
    let plain = run(Command::new(args[0]).args(&args[1..]));
    let rocked = run(Command::new(ROCK).args(["-v", "-v"]).args(args));
    (plain, rocked)
}

/// Stderr without rock's own lines (its notice and its -v log).
fn programs_stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("rock: ") && !l.contains(" rock::"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The program said and returned exactly what it does without rock, and
/// rock did see its connections to `port` (so the library was there).
#[track_caller]
fn assert_transparent(args: &[&str], input: &[u8], port: u16) -> Output {
    assert_transparent_with(args, input, None, &format!(":{port}: direct"))
}

/// As [`assert_transparent`], with rock's configuration under `config`,
/// and `route` in rock's log (what the supervisor answered).
#[track_caller]
fn assert_transparent_with(
    args: &[&str],
    input: &[u8],
    config: Option<&Path>,
    route: &str,
) -> Output {
    let (plain, rocked) = plain_and_under_rock_with(args, input, config);
    let context = format!(
        "{args:?}\n--- plainly ---\n{}\n--- under rock ---\n{}",
        text(&plain),
        text(&rocked)
    );
    assert_eq!(plain.status.code(), rocked.status.code(), "{context}");
    assert_eq!(plain.stdout, rocked.stdout, "{context}");
    assert_eq!(
        programs_stderr(&plain),
        programs_stderr(&rocked),
        "{context}"
    );
    assert!(
        String::from_utf8_lossy(&rocked.stderr).contains(route),
        "the supervisor never said {route:?}: {context}"
    );
    rocked
}

#[test]
fn redis_cli_under_rock_is_redis_cli() {
    let port = free_port();
    let p = port.to_string();
    let _redis = start_server(
        "redis-server",
        &[
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
        None,
    );
    let cli = |rest: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["redis-cli", "-h", "127.0.0.1", "-p", &p];
        args.extend_from_slice(rest);
        args
    };
    let out = assert_transparent(&cli(&["SET", "rock-key", "a value"]), b"", port);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = assert_transparent(&cli(&["GET", "rock-key"]), b"", port);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a value\n");
    assert_transparent(&cli(&["PING"]), b"", port);
    assert_transparent(&cli(&["DBSIZE"]), b"", port);
    // Commands read from stdin, one connection for all of them.
    let out = assert_transparent(&cli(&[]), b"SET n 1\nGET n\nEXISTS nothing\n", port);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n1\n0\n");
    // An error reply and a refused connection end the same way too.
    assert_transparent(&cli(&["NOSUCHCOMMAND"]), b"", port);
    let closed = free_port();
    let c = closed.to_string();
    let out = assert_transparent(
        &["redis-cli", "-h", "127.0.0.1", "-p", &c, "PING"],
        b"",
        closed,
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn curl_under_rock_is_curl() {
    let dir = common::temp_dir();
    std::fs::write(dir.path().join("page.txt"), "a page served to curl\n").expect("write");
    let port = free_port();
    let p = port.to_string();
    let _http = start_server(
        "python3",
        &["-m", "http.server", "--bind", "127.0.0.1", &p],
        port,
        Some(dir.path()),
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let page = url("page.txt");
    let out = assert_transparent(&["curl", "-sS", &page], b"", port);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a page served to curl\n"
    );
    let missing = url("missing");
    let out = assert_transparent(
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &missing,
        ],
        b"",
        port,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404\n");
    // --fail turns the 404 into curl's exit status 22, rocked or not.
    let out = assert_transparent(&["curl", "-s", "--fail", &missing], b"", port);
    assert_eq!(out.status.code(), Some(22), "{}", text(&out));
}

#[test]
fn socat_as_a_client_under_rock_is_socat() {
    let port = echo_server();
    let to = format!("TCP:127.0.0.1:{port}");
    let out = assert_transparent(&["socat", "-", &to], b"through socat\n", port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through socat\n");
}

// --- TCP Fast Open: sendto/sendmsg that connect ---------------------------

const TCP_FASTOPEN: &str = "/proc/sys/net/ipv4/tcp_fastopen";

/// Turns the client side of TCP Fast Open on (bit 1 of
/// net.ipv4.tcp_fastopen) while it lives, if it was off; puts the old
/// value back when dropped.
struct FastOpenClients(Option<String>);

impl FastOpenClients {
    fn enable() -> FastOpenClients {
        let old = std::fs::read_to_string(TCP_FASTOPEN).expect("read net.ipv4.tcp_fastopen");
        let value: u32 = old
            .trim()
            .parse()
            .expect("a number in net.ipv4.tcp_fastopen");
        if value & 1 != 0 {
            return FastOpenClients(None);
        }
        common::require_root("TCP Fast Open is off for clients and only root can turn it on");
        std::fs::write(TCP_FASTOPEN, format!("{}\n", value | 1)).expect("set tcp_fastopen");
        FastOpenClients(Some(old))
    }
}

impl Drop for FastOpenClients {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(TCP_FASTOPEN, old);
        }
    }
}

#[test]
fn sendto_and_sendmsg_with_msg_fastopen_are_announced_like_connect() {
    let _fastopen = FastOpenClients::enable();
    let port = echo_server();
    // No connect at all: each socket is connected by its first send.
    let script = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.sendto(b"sendto\n", socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(s.makefile().readline().strip())
s.sendto(b"again\n", 0, ("127.0.0.1", port))
print(s.makefile().readline().strip())
m = socket.socket()
m.sendmsg([b"send", b"msg\n"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(m.makefile().readline().strip())
"#;
    let out = python_under_rock(script, port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sendto\nagain\nsendmsg\n",
        "{}",
        text(&out)
    );
    // Two connections made; the second sendto (no flag, on a connected
    // socket) is an ordinary send, not a connect.
    let announced = String::from_utf8_lossy(&out.stderr)
        .matches(&format!("connect 127.0.0.1:{port}: direct"))
        .count();
    assert_eq!(announced, 2, "{}", text(&out));
}

// --- A supervisor that never answers ---------------------------------------

/// A stand-in for the supervisor's control socket that accepts every line
/// and reads its questions but never answers one. Returns the socket's
/// path (inside `dir`) and the questions as they arrive.
fn silent_supervisor(dir: &Path) -> (PathBuf, std::sync::mpsc::Receiver<String>) {
    let path = dir.join("ctl.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the socket");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut question = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            if reader.read_line(&mut question).is_ok() {
                let _ = tx.send(question);
            }
            // Kept open and silent.
            held.push((stream, reader));
        }
    });
    (path, rx)
}

#[test]
fn a_supervisor_that_never_answers_costs_one_bounded_wait_then_connects_go_direct() {
    let port = echo_server();
    let dir = common::temp_dir();
    let (socket, questions) = silent_supervisor(dir.path());
    let script = r#"
import socket, sys, time
port = int(sys.argv[1])
for word in ("first", "second"):
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    waited = time.monotonic() - t
    s.sendall(word.encode() + b"\n")
    print(s.makefile().readline().strip(), round(waited, 2))
"#;
    // The library alone, as rock would preload it, with the silent socket
    // where the supervisor's would be.
    let out = run_with_timeout(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .env("LD_PRELOAD", library())
            .env("ROCK_SUPERVISOR", &socket)
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let waits: Vec<(String, f64)> = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(w, t)| (w.to_owned(), t.parse().unwrap_or(f64::NAN)))
        .collect();
    assert_eq!(waits.len(), 2, "{}", text(&out));
    assert_eq!(waits[0].0, "first", "{}", text(&out));
    assert_eq!(waits[1].0, "second", "{}", text(&out));
    // The library's bound is 5 s (ANSWER_WITHIN_SECS in channel.rs).
    assert!(
        (4.5..7.0).contains(&waits[0].1),
        "the first connect waits for the 5 s bound, then goes direct: {}",
        text(&out)
    );
    assert!(
        waits[1].1 < 1.0,
        "a supervisor that timed out is not asked again at once: {}",
        text(&out)
    );
    let asked: Vec<String> = questions.try_iter().collect();
    assert_eq!(
        asked,
        [format!("connect 127.0.0.1:{port}\n")],
        "the question was asked once"
    );
}

// --- Slice 3: listeners, the rendezvous port, the client's probe -----------

/// A python echo server under `rock -v -v`, listening on loopback, that
/// prints `accepted HOST PORT peer HOST PORT local HOST PORT` (what accept,
/// getpeername and getsockname say) for each connection; its port, the rock process (ended when
/// dropped), rock's stderr, and the server's further lines.
fn rocked_echo_server(
    config: &Path,
) -> (
    u16,
    Server,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::mpsc::Receiver<String>,
) {
    library();
    let script = r#"
import socket, threading
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(16)
print(l.getsockname()[1], flush=True)
def echo(c):
    while (b := c.recv(4096)):
        c.sendall(b)
    c.close()
while True:
    c, a = l.accept()
    p = c.getpeername()
    m = c.getsockname()
    print("accepted", a[0], a[1], "peer", p[0], p[1], "local", m[0], m[1], flush=True)
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"#;
    rocked_script(config, script)
}

/// A python `script` under `rock -v -v` (configuration under `config`)
/// that prints the port it listens on as its first line: that port, the
/// rock process (ended when dropped), rock's stderr, and the script's
/// further lines.
fn rocked_script(
    config: &Path,
    script: &str,
) -> (
    u16,
    Server,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(ROCK)
        .args(["-v", "-v", "python3", "-c", script])
        .env("XDG_CONFIG_HOME", config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let stderr = common::live::stderr_text(&mut child);
    let lines = common::live::stdout_lines(&mut child);
    let port = lines
        .recv_timeout(Duration::from_secs(20))
        .ok()
        .and_then(|l| l.trim().parse().ok());
    let server = Server(child);
    let Some(port) = port else {
        panic!(
            "the server printed no port: {}",
            stderr.lock().expect("stderr")
        );
    };
    (port, server, stderr, lines)
}

/// The `HOST:PORT` of accept, getpeername and getsockname in an
/// `accepted … peer … local …` line.
fn accepted(line: &str) -> (String, String, String) {
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words.len(), 9, "{line}");
    (
        format!("{}:{}", words[1], words[2]),
        format!("{}:{}", words[4], words[5]),
        format!("{}:{}", words[7], words[8]),
    )
}

#[test]
fn a_rock_client_reaches_a_rock_listener_through_the_rendezvous_and_both_see_real_addresses() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let (port, _server, server_log, server_lines) = rocked_echo_server(config.path());
    let log = || server_log.lock().expect("log").clone();
    // The rendezvous port opens once the listener registers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Some(answer) = ask_rendezvous(rendezvous, port) {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rendezvous port: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer, "the listener is a rock listener");
    let ordinary = echo_server();
    assert_eq!(ask_rendezvous(rendezvous, ordinary), Some(false));
    assert!(
        log().contains(&format!("listen 127.0.0.1:{port}: registered")),
        "{}",
        log()
    );

    // A client under rock probes each destination once, then knows; its
    // connections to the rock listener go through the rendezvous port,
    // and getpeername still names the port it connected to.
    let script = r#"
import socket, sys
for port in sys.argv[1:]:
    for word in ("one", "two"):
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.sendall(word.encode() + b"\n")
        p = s.getpeername()
        m = s.getsockname()
        print(s.makefile().readline().strip(), p[0], p[1], file=sys.stdout)
        print(f"{m[0]}:{m[1]}", file=sys.stderr)
        s.close()
"#;
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", script])
            .args([port.to_string(), ordinary.to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "one 127.0.0.1 {port}\ntwo 127.0.0.1 {port}\n\
             one 127.0.0.1 {ordinary}\ntwo 127.0.0.1 {ordinary}\n"
        ),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let said = |what: &str| err.matches(what).count();
    let plain = format!("connect 127.0.0.1:{ordinary}: direct");
    assert_eq!(
        said(&format!("connect 127.0.0.1:{port}: via ")),
        2,
        "{}",
        text(&out)
    );
    assert_eq!(said(" (a rock listener; probed in "), 1, "{}", text(&out));
    assert_eq!(said(" (a rock listener, known)"), 1, "{}", text(&out));
    assert_eq!(
        said(&format!(
            "{plain} (not a rock listener, says its rendezvous port; probed in "
        )),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(
        said(&format!("{plain} (ordinary, known)")),
        1,
        "{}",
        text(&out)
    );

    // The server's accept and getpeername name the rock client's link (its
    // source address at the rendezvous port), not the loopback connection
    // its supervisor made to the listener; and the client's getsockname
    // names that same link address: both ends agree on the connection's
    // addresses, as over plain TCP.
    let client_ends: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("127.0.0.1:"))
        .collect();
    assert_eq!(client_ends.len(), 4, "{}", text(&out));
    for client_end in &client_ends[..2] {
        let line = server_lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no accepted line: {}", log()));
        let (from_accept, from_getpeername, own) = accepted(&line);
        assert_eq!(from_accept, from_getpeername, "{line}");
        assert_eq!(&from_accept, client_end, "{line}");
        assert_eq!(own, format!("127.0.0.1:{port}"), "{line}");
        let opened = format!("open {port} from {from_accept}: relaying through 127.0.0.1:");
        assert!(log().contains(&opened), "{line}\n{}", log());
        let linked = format!("connect 127.0.0.1:{port}: link from {client_end} to ");
        assert!(err.contains(&linked), "{}", text(&out));
    }

    // An ordinary client (not under rock) is accepted as it is.
    let mut plain_client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let me = plain_client.local_addr().expect("address");
    std::io::Write::write_all(&mut plain_client, b"plain\n").expect("write");
    let line = server_lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no accepted line: {}", log()));
    let there = plain_client.peer_addr().expect("address");
    assert_eq!(
        accepted(&line),
        (me.to_string(), me.to_string(), there.to_string()),
        "{line}"
    );
}

/// Runs a python client under rock (rendezvous port `rendezvous`) that
/// connects twice to an ordinary echo server and prints how long each
/// connect took, in seconds; returns the two times and rock's stderr.
fn timed_connects(rendezvous: u16) -> ([f64; 2], String) {
    let port = echo_server();
    let config = config_with_rock_port(rendezvous);
    let script = r#"
import socket, sys, time
for word in ("one", "two"):
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    took = time.monotonic() - t
    s.sendall(word.encode() + b"\n")
    assert s.makefile().readline().strip() == word
    print(f"{took:.4f}")
"#;
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", script, &port.to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(times.len(), 2, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.matches(&format!(
            "connect 127.0.0.1:{port}: direct (ordinary, known)"
        ))
        .count(),
        1,
        "the second connect is not probed again: {}",
        text(&out)
    );
    eprintln!("connect times with rendezvous port {rendezvous}: {times:?}");
    ([times[0], times[1]], err)
}

#[test]
fn an_ordinary_host_costs_one_refused_probe_then_nothing() {
    let closed = free_port();
    let ([first, second], err) = timed_connects(closed);
    assert!(
        err.contains("(ordinary: its rendezvous port refused; probed in "),
        "{err}"
    );
    assert!(first < 0.2, "a refused probe is one round trip: {first} s");
    assert!(
        second < 0.05,
        "a known destination waits for nothing: {second} s"
    );
}

#[test]
fn a_silent_or_blackholed_rendezvous_port_costs_the_250_ms_bound_once() {
    // A rendezvous port that accepts (the kernel completes the handshake)
    // but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = silent.local_addr().expect("address").port();
    let ([first, second], err) = timed_connects(at);
    assert!(err.contains("did not answer in time; probed in "), "{err}");
    assert!((0.25..0.6).contains(&first), "{first} s");
    assert!(second < 0.05, "{second} s");
    drop(silent);

    // A rendezvous port whose packets a firewall drops (SYN unanswered).
    common::require_root("the blackhole is an iptables rule");
    let dropped = free_port();
    let _blackhole = common::faults::Blackhole::new(dropped);
    let ([first, second], err) = timed_connects(dropped);
    assert!(err.contains("did not answer in time; probed in "), "{err}");
    assert!((0.25..0.6).contains(&first), "{first} s");
    assert!(second < 0.05, "{second} s");
}

#[test]
fn asyncio_reaches_a_rock_listener_with_its_non_blocking_connect() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let (port, _server, server_log, _lines) = rocked_echo_server(config.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, port).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no rendezvous port: {}",
            server_log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // asyncio connects non-blocking (EINPROGRESS, then epoll and SO_ERROR)
    // on a socket registered before connect.
    let script = r#"
import asyncio, sys
async def main(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for word in ("first", "second"):
        w.write(word.encode() + b"\n")
        await w.drain()
        print((await r.readline()).decode().strip(), flush=True)
    print(w.get_extra_info("peername")[1] == port)
    w.close()
    await w.wait_closed()
asyncio.run(main(int(sys.argv[1])))
"#;
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", script, &port.to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nTrue\n",
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("connect 127.0.0.1:{port}: via ")),
        "{}",
        text(&out)
    );
}

#[test]
fn a_rock_listener_that_closed_refuses_as_the_kernel_does() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    // A server under rock that listens (registering the port), then closes
    // its listener and stays.
    let script = r#"
import socket, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
print(l.getsockname()[1], flush=True)
l.close()
print("closed", flush=True)
time.sleep(60)
"#;
    let (port, _server, log, lines) = rocked_script(config.path(), script);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
        Some("closed")
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, port).is_none() {
        assert!(std::time::Instant::now() < deadline, "no rendezvous port");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except ConnectionRefusedError as e:
    print("refused", e.errno)
"#;
    let (plain, rocked) = {
        let run = |command: &mut Command| {
            run_with_timeout(
                command
                    .env("XDG_CONFIG_HOME", config.path())
                    .env_remove("RUST_LOG")
                    .stdin(Stdio::null()),
                Duration::from_secs(30),
            )
        };
        let p = port.to_string();
        (
            run(Command::new("python3").args(["-c", client, &p])),
            run(Command::new(ROCK).args(["-v", "-v", "python3", "-c", client, &p])),
        )
    };
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "refused 111\n");
    assert_eq!(
        String::from_utf8_lossy(&rocked.stdout),
        "refused 111\n",
        "{}",
        text(&rocked)
    );
    assert!(
        String::from_utf8_lossy(&rocked.stderr)
            .contains(&format!("connect 127.0.0.1:{port}: direct")),
        "{}",
        text(&rocked)
    );
    // The server's supervisor noticed the listener is gone.
    assert!(
        log.lock()
            .expect("log")
            .contains(&format!("port {port} refused: forgotten")),
        "{}",
        log.lock().expect("log")
    );
}

// --- Real servers under rock, real clients under rock -----------------------

#[test]
fn redis_cli_under_rock_reaches_redis_server_under_rock_through_the_rendezvous() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let port = free_port();
    let p = port.to_string();
    let dir = common::temp_dir();
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
        dir.path(),
    );
    let via = format!("connect 127.0.0.1:{port}: via ");
    let cli = |rest: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["redis-cli", "-h", "127.0.0.1", "-p", &p];
        args.extend_from_slice(rest);
        args
    };
    let out = assert_transparent_with(
        &cli(&["SET", "through", "the rendezvous"]),
        b"",
        Some(config.path()),
        &via,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = assert_transparent_with(&cli(&["GET", "through"]), b"", Some(config.path()), &via);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "the rendezvous\n");
    let out = assert_transparent_with(
        &cli(&[]),
        b"SET n 1\nINCR n\nGET n\n",
        Some(config.path()),
        &via,
    );
    // Each run (plainly, then under rock) sets n anew.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n2\n2\n");
    // A big value both ways through the two supervisors' relay.
    let big = "x".repeat(1 << 20);
    let input = format!("SET big {big}\nSTRLEN big\n");
    let out = assert_transparent_with(&cli(&[]), input.as_bytes(), Some(config.path()), &via);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n1048576\n");
}

#[test]
fn curl_under_rock_reaches_an_http_server_under_rock_through_the_rendezvous() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let dir = common::temp_dir();
    std::fs::write(dir.path().join("page.txt"), "a page through two rocks\n").expect("write");
    let port = free_port();
    let p = port.to_string();
    let _http = rocked_server(
        &["python3", "-m", "http.server", "--bind", "127.0.0.1", &p],
        config.path(),
        port,
        rendezvous,
        dir.path(),
    );
    let via = format!("connect 127.0.0.1:{port}: via ");
    let page = format!("http://127.0.0.1:{port}/page.txt");
    let out = assert_transparent_with(&["curl", "-sS", &page], b"", Some(config.path()), &via);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a page through two rocks\n"
    );
    let missing = format!("http://127.0.0.1:{port}/missing");
    let out = assert_transparent_with(
        &["curl", "-s", "--fail", &missing],
        b"",
        Some(config.path()),
        &via,
    );
    assert_eq!(out.status.code(), Some(22), "{}", text(&out));
}

#[test]
fn socat_both_ends_under_rock_with_a_forking_server() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let dir = common::temp_dir();
    let port = free_port();
    // socat accepts, then forks a child per connection that runs cat.
    let listen = format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork");
    let _server = rocked_server(
        &["socat", &listen, "EXEC:cat"],
        config.path(),
        port,
        rendezvous,
        dir.path(),
    );
    let to = format!("TCP:127.0.0.1:{port}");
    let via = format!("connect 127.0.0.1:{port}: via ");
    for word in ["first", "second"] {
        let input = format!("{word} through a forking socat\n");
        let out = assert_transparent_with(
            &["socat", "-t", "2", "-", &to],
            input.as_bytes(),
            Some(config.path()),
            &via,
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), input);
    }
}

#[test]
fn ipv6_clients_and_listeners_under_rock() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("this test needs IPv6 on loopback (::1)");
    }
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let script = r#"
import socket, threading
l = socket.socket(socket.AF_INET6)
l.bind(("::1", 0))
l.listen(16)
print(l.getsockname()[1], flush=True)
while True:
    c, a = l.accept()
    print("accepted", a[0], a[1], flush=True)
    c.sendall(c.recv(100))
    c.close()
"#;
    let (port, _server, log, lines) = rocked_script(config.path(), script);
    let client = r#"
import socket, sys
s = socket.create_connection(("::1", int(sys.argv[1])))
s.sendall(b"six\n")
print(s.recv(100).decode().strip(), s.getpeername()[:2])
"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The rendezvous port opens once the listener registers.
        let probe = std::net::TcpStream::connect(("::1", rendezvous));
        if probe.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rendezvous port");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", client, &port.to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("six ('::1', {port})\n"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("connect [::1]:{port}: via ")),
        "{}",
        text(&out)
    );
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no accepted line: {}", log.lock().expect("log")));
    // The rock client's link, over IPv6, as the server's accept reports it.
    let from = line
        .strip_prefix("accepted ::1 ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        log.lock().expect("log").contains(&format!(
            "open {port} from [::1]:{from}: relaying through [::1]:"
        )),
        "{line}\n{}",
        log.lock().expect("log")
    );
}

#[test]
fn two_rock_servers_on_one_host_share_the_rendezvous_port() {
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let (first, first_server, first_log, _first_lines) = rocked_echo_server(config.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, first) != Some(true) {
        assert!(std::time::Instant::now() < deadline, "no rendezvous port");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second cannot bind the port the first holds: the first asks it.
    let (second, _second_server, second_log, second_lines) = rocked_echo_server(config.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, second) != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second server's listener is not announced:\n{}\n{}",
            first_log.lock().expect("log"),
            second_log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = r#"
import socket, sys
for port in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(b"hello " + port.encode() + b"\n")
    print(s.makefile().readline().strip())
"#;
    let run_client = |ports: &[u16]| {
        let out = run_with_timeout(
            Command::new(ROCK)
                .args(["-v", "-v", "python3", "-c", script])
                .args(ports.iter().map(u16::to_string))
                .env("XDG_CONFIG_HOME", config.path())
                .env_remove("RUST_LOG")
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert_exit(&out, 0, &text(&out));
        let expected: String = ports.iter().map(|p| format!("hello {p}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{}",
            text(&out)
        );
        for p in ports {
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains(&format!("connect 127.0.0.1:{p}: via ")),
                "{}",
                text(&out)
            );
        }
    };
    run_client(&[first, second]);
    // The second server's program sees the rock client's real address.
    let line = second_lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no accepted line: {}", second_log.lock().expect("log")));
    let (from_accept, _, _) = accepted(&line);
    assert!(
        second_log.lock().expect("log").contains(&format!(
            "open {second} from {from_accept}: relaying through"
        )),
        "{line}\n{}",
        second_log.lock().expect("log")
    );
    assert!(
        first_log.lock().expect("log").contains("handed over to"),
        "{}",
        first_log.lock().expect("log")
    );

    // When the first ends, the second takes the port over.
    drop(first_server);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !second_log
        .lock()
        .expect("log")
        .contains(&format!("rendezvous port {rendezvous}: listening"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            second_log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run_client(&[second]);
}

#[test]
fn fast_open_sends_to_a_rock_listener_go_through_the_rendezvous_too() {
    let _fastopen = FastOpenClients::enable();
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let (port, _server, server_log, _lines) = rocked_echo_server(config.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, port) != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rendezvous port: {}",
            server_log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.sendto(b"sendto\n", socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(s.makefile().readline().strip(), s.getpeername()[1] == port)
m = socket.socket()
m.sendmsg([b"send", b"msg\n"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(m.makefile().readline().strip(), m.getpeername()[1] == port)
"#;
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c", script, &port.to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sendto True\nsendmsg True\n",
        "{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches(&format!("connect 127.0.0.1:{port}: via "))
            .count(),
        2,
        "{}",
        text(&out)
    );
}

#[test]
fn a_local_process_racing_to_the_via_port_gets_nothing() {
    use std::io::{Read, Write};
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let (port, _server, server_log, _lines) = rocked_echo_server(config.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, port) != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rendezvous port: {}",
            server_log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client supervisor whose command only says where its control
    // socket is; the test then speaks as the library would.
    let mut client = Command::new(ROCK)
        .args([
            "-v",
            "-v",
            "python3",
            "-c",
            "import os, time; print(os.environ['ROCK_SUPERVISOR'], flush=True); time.sleep(60)",
        ])
        .env("XDG_CONFIG_HOME", config.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let client_log = common::live::stderr_text(&mut client);
    let lines = common::live::stdout_lines(&mut client);
    let _client = Server(client);
    let socket = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the control socket's path");
    let mut line = std::os::unix::net::UnixStream::connect(socket.trim()).expect("connect");
    let mut ask = |question: &str| -> String {
        line.write_all(question.as_bytes()).expect("ask");
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while line.read(&mut byte).expect("answer") == 1 && byte[0] != b'\n' {
            answer.push(byte[0]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = ask(&format!("connect 127.0.0.1:{port}\n"));
    let via: u16 = answer
        .strip_prefix("via ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{answer}: {}", client_log.lock().expect("log")));
    // Another process gets to the port first; then the program's socket.
    let mut racer = std::net::TcpStream::connect(("127.0.0.1", via)).expect("race");
    let mut program = std::net::TcpStream::connect(("127.0.0.1", via)).expect("connect");
    program
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let local = program.local_addr().expect("address");
    assert_eq!(ask(&format!("from {local} via {via}\n")), "ok");
    program.write_all(b"mine\n").expect("write");
    let mut echoed = [0u8; 5];
    program.read_exact(&mut echoed).expect("the echo");
    assert_eq!(&echoed, b"mine\n");
    let _ = racer.write_all(b"stolen\n");
    racer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = racer.read_to_end(&mut got);
    assert!(got.is_empty(), "the racer read {got:?}");
    assert!(
        client_log
            .lock()
            .expect("log")
            .contains("is not the program's socket"),
        "{}",
        client_log.lock().expect("log")
    );
}
