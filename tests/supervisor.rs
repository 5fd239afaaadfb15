//! `rock COMMAND` without `-d`: the supervisor runs the command with
//! librocks.so preloaded into it and everything it starts, stays its
//! parent, forwards signals and exits with its status; a program the
//! loader cannot preload into is run with a line saying so.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ROCK, assert_exit, run_with_timeout};

/// The library cargo builds beside the rock binary.
fn library() -> PathBuf {
    let lib = Path::new(ROCK).with_file_name("librocks.so");
    assert!(
        lib.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace; \
         scripts/test does)",
        lib.display()
    );
    lib
}

fn rock(args: &[&str]) -> Output {
    library();
    run_with_timeout(
        Command::new(ROCK).args(args).stdin(Stdio::null()),
        Duration::from_secs(30),
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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
fn rock_says_the_connections_stay_plain_until_the_library_makes_rocks() {
    let out = rock(&["true"]);
    assert_exit(&out, 0, &text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("they stay plain TCP"),
        "{}",
        text(&out)
    );
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

/// A server program of the test's own, on a free loopback port, killed
/// when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    /// Starts `program args…`, where `{port}` in an argument is replaced by
    /// a free port, and waits until it accepts connections.
    fn start(program: &str, args: &[&str], dir: &Path) -> Server {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address").port()
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let child = Command::new(program)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (run scripts/setup): {e}"));
        let server = Server { child, port };
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < end,
                "{program} did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program args…` plainly and under `rock -v -v`, and checks that
/// rock changed nothing the program shows (output, status), and that each
/// of its connections to `port` was announced (and answered `direct`).
fn same_with_and_without_rock(program: &str, args: &[&str], port: u16) -> Output {
    library();
    let limit = Duration::from_secs(60);
    let plain = run_with_timeout(Command::new(program).args(args).stdin(Stdio::null()), limit);
    let rocked = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", program])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        limit,
    );
    assert_eq!(
        (rocked.status.code(), &rocked.stdout),
        (plain.status.code(), &plain.stdout),
        "{program} under rock differs from {program} plain:\n--- plain ---\n{}\n--- rock ---\n{}",
        text(&plain),
        text(&rocked)
    );
    assert!(
        String::from_utf8_lossy(&rocked.stderr)
            .contains(&format!("connect 127.0.0.1:{port}: direct")),
        "the library did not announce {program}'s connection: {}",
        text(&rocked)
    );
    rocked
}

#[test]
fn redis_cli_against_an_ordinary_redis_server_is_unchanged() {
    let dir = common::temp_dir();
    let redis = Server::start(
        "redis-server",
        &[
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        dir.path(),
    );
    let port = redis.port.to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["-h", "127.0.0.1", "-p", port.as_str()];
        all.extend_from_slice(args);
        same_with_and_without_rock("redis-cli", &all, redis.port)
    };
    cli(&["SET", "rock", "plain"]);
    let out = cli(&["GET", "rock"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "plain\n",
        "{}",
        text(&out)
    );
    // An error reply comes through as it is.
    let out = cli(&["INCR", "rock"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not an integer"),
        "{}",
        text(&out)
    );
}

#[test]
fn curl_against_an_ordinary_http_server_is_unchanged() {
    let dir = common::temp_dir();
    let page: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.path().join("page.txt"), &page).expect("write the page");
    let http = Server::start(
        "python3",
        &["-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{}/page.txt", http.port);
    // curl connects non-blocking and waits with poll.
    let out = same_with_and_without_rock("curl", &["-sS", "--fail", &url], http.port);
    assert_eq!(String::from_utf8_lossy(&out.stdout), page);
    let missing = format!("http://127.0.0.1:{}/missing", http.port);
    let out = same_with_and_without_rock("curl", &["-sS", "--fail", &missing], http.port);
    assert_exit(&out, 22, &text(&out));
}

#[test]
fn socat_as_a_client_is_unchanged() {
    let port = echo_server();
    let pipeline = format!("printf 'through socat\\n' | socat - TCP:127.0.0.1:{port}");
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "sh", "-c", &pipeline])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    // socat sends the line, half-closes at the end of its input, and
    // prints what the echo server sent back before it closed.
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through socat\n",
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("connect 127.0.0.1:{port}: direct")),
        "{}",
        text(&out)
    );
}

/// A supervisor that takes questions and never answers: the library waits
/// for its bound once, connects plainly, and asks no more in that process.
/// Run with the library preloaded by hand and `ROCK_SUPERVISOR` pointing at
/// the test's own silent socket.
#[test]
fn a_supervisor_that_never_answers_costs_one_wait_then_nothing() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    let dir = common::temp_dir();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).expect("bind the silent supervisor's socket");
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&heard);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).unwrap_or(0);
            sink.lock()
                .expect("heard")
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            // Never answered, never closed while the test runs.
            held.push(stream);
        }
    });
    let port = echo_server();
    let script = r#"
import socket, sys
port = int(sys.argv[1])
for i in range(5):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"echo %d\n" % i)
    print(s.makefile().readline().strip())
    s.close()
"#;
    let out = run_with_timeout(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .env("LD_PRELOAD", library())
            .env("ROCK_SUPERVISOR", &path)
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo 0\necho 1\necho 2\necho 3\necho 4\n",
        "{}",
        text(&out)
    );
    let heard = heard.lock().expect("heard").clone();
    assert_eq!(
        heard.len(),
        1,
        "one question, then none: {heard:?}; {}",
        text(&out)
    );
    assert!(
        heard[0].contains(&port.to_string()),
        "the question named the destination: {heard:?}"
    );
}

/// TCP Fast Open: `sendto` and `sendmsg` with `MSG_FASTOPEN` connect as
/// they send, so the library announces them as it announces `connect`;
/// the data arrives as without rock.
#[test]
fn fast_open_sends_are_announced_as_connects() {
    let port = echo_server();
    let script = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.sendto(b"sendto\n", socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(s.makefile().readline().strip())
s.close()
s = socket.socket()
s.sendmsg([b"send", b"msg\n"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
print(s.makefile().readline().strip())
s.close()
"#;
    let out = python_under_rock(script, port);
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sendto\nsendmsg\n",
        "{}",
        text(&out)
    );
    let announced = String::from_utf8_lossy(&out.stderr)
        .matches(&format!("connect 127.0.0.1:{port}: direct"))
        .count();
    assert_eq!(
        announced,
        2,
        "one announcement per fast-open send: {}",
        text(&out)
    );
}
