//! What programs do with their sockets, over rocks: fork and let the child
//! write, exec another program with the socket, `dup2` onto and away from
//! a rock, epoll registrations made before a non-blocking connect, a
//! thousand rocks in one program, a server that accepted once and closed
//! its listener (its rock still comes back after a reset), and a rock
//! client reading an ordinary server's banner (a real sshd: server speaks
//! first). Both ends run under rock unless the test says otherwise.

mod common;
use common::text;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::rocked::{
    ASYNCIO_ECHO_SERVER, Server, config_with_rock_port, free_port, rocked_server, server_log,
};
use common::{ROCK, Sshd, TempDir, assert_exit, faults, run_with_timeout};

/// A rendezvous port of the test's own and an echo server under rock.
struct Echo {
    rendezvous: u16,
    port: u16,
    config: TempDir,
    dir: TempDir,
    _server: Server,
}

impl Echo {
    fn start() -> Echo {
        Echo::start_with(ASYNCIO_ECHO_SERVER)
    }

    /// `script` (python, port in argv[1]) as the server.
    fn start_with(script: &str) -> Echo {
        let rendezvous = free_port();
        let config = config_with_rock_port(rendezvous);
        let dir = common::temp_dir();
        let port = free_port();
        let server = rocked_server(
            &["python3", "-c", script, &port.to_string()],
            config.path(),
            port,
            rendezvous,
            dir.path(),
        );
        Echo {
            rendezvous,
            port,
            config,
            dir,
            _server: server,
        }
    }

    /// Runs python `script` under `rock -v -v` with the echo server's port
    /// as argv[1] and `args` after it.
    fn client(&self, script: &str, args: &[&str]) -> Output {
        run_with_timeout(
            Command::new(ROCK)
                .args(["-v", "-v", "python3", "-c", script, &self.port.to_string()])
                .args(args)
                .env("XDG_CONFIG_HOME", self.config.path())
                .env_remove("RUST_LOG")
                .current_dir(self.dir.path())
                .stdin(Stdio::null()),
            Duration::from_secs(120),
        )
    }

    /// Checks that `out` exited 0 saying `ok`, and that its connections to
    /// the server were rocks.
    #[track_caller]
    fn assert_ok(&self, out: &Output, rocks: usize) {
        let context = format!(
            "{}\n--- server ---\n{}",
            text(out),
            server_log(self.dir.path())
        );
        assert_exit(out, 0, &context);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{context}");
        let made = String::from_utf8_lossy(&out.stderr)
            .matches(&format!("connect 127.0.0.1:{}: link from", self.port))
            .count();
        assert_eq!(made, rocks, "rocks made: {context}");
    }
}

#[test]
fn a_forked_child_writes_on_its_parents_rock() {
    let echo = Echo::start();
    let out = echo.client(
        r#"
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
pid = os.fork()
if pid == 0:
    s.sendall(b"from the child\n")
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
f = s.makefile("rb")
assert f.readline() == b"from the child\n"
s.sendall(b"from the parent\n")
assert f.readline() == b"from the parent\n"
print("ok")
"#,
        &[],
    );
    echo.assert_ok(&out, 1);
}

#[test]
fn an_execd_program_uses_the_rock_it_inherited() {
    let echo = Echo::start();
    let out = echo.client(
        r#"
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
fd = s.detach()
os.set_inheritable(fd, True)
child = "import os, sys\nfd = int(sys.argv[1])\nos.write(fd, b'from the exec\\n')\nassert os.read(fd, 100) == b'from the exec\\n'\nprint('ok')\n"
os.execvp("python3", ["python3", "-c", child, str(fd)])
"#,
        &[],
    );
    echo.assert_ok(&out, 1);
}

#[test]
fn dup2_onto_and_away_from_a_rock_and_getpeername_follows() {
    let echo = Echo::start();
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain_port = plain.local_addr().expect("address").port();
    // An ordinary server of the test's own: it says hello and echoes once.
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = plain.accept() {
            use std::io::{Read, Write};
            let _ = c.write_all(b"plain\n");
            let mut buf = [0u8; 64];
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
        }
    });
    let out = echo.client(
        r#"
import os, socket, sys
port, plain_port = int(sys.argv[1]), int(sys.argv[2])
rock = socket.create_connection(("127.0.0.1", port))
other = socket.create_connection(("127.0.0.1", plain_port))
# onto: the rock's descriptor now at 100, the original closed
os.dup2(rock.fileno(), 100)
r = socket.socket(fileno=os.dup(100))
rock.close()
assert r.getpeername() == ("127.0.0.1", port), r.getpeername()
os.write(100, b"through 100\n")
assert os.read(100, 100) == b"through 100\n"
# away: the ordinary connection over descriptor 100 (the rock stays open
# through r)
os.dup2(other.fileno(), 100)
p = socket.socket(fileno=os.dup(100))
assert p.getpeername() == ("127.0.0.1", plain_port), p.getpeername()
assert os.read(100, 100) == b"plain\n"
os.write(100, b"to the plain one\n")
assert os.read(100, 100) == b"to the plain one\n"
r.sendall(b"still the rock\n")
assert r.recv(100) == b"still the rock\n"
print("ok")
"#,
        &[&plain_port.to_string()],
    );
    echo.assert_ok(&out, 1);
}

#[test]
fn epoll_registrations_made_before_a_non_blocking_connect_fire_after_it() {
    let echo = Echo::start();
    let out = echo.client(
        r#"
import errno, select, socket, sys
s = socket.socket()
s.setblocking(False)
ep = select.epoll()
ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)
err = s.connect_ex(("127.0.0.1", int(sys.argv[1])))
assert err in (0, errno.EINPROGRESS), err
events = ep.poll(10)
assert events and events[0][1] & select.EPOLLOUT, events
assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
s.send(b"after epoll\n")
ep.modify(s.fileno(), select.EPOLLIN)
got = b""
while not got.endswith(b"\n"):
    assert ep.poll(10), "no EPOLLIN"
    got += s.recv(100)
assert got == b"after epoll\n", got
print("ok")
"#,
        &[],
    );
    echo.assert_ok(&out, 1);
}

#[test]
fn a_thousand_rocks_in_one_program() {
    let echo = Echo::start();
    let out = echo.client(
        r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
port = int(sys.argv[1])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
for i, c in enumerate(conns):
    c.sendall(b"%d\n" % i)
for i, c in enumerate(conns):
    got = b""
    while not got.endswith(b"\n"):
        got += c.recv(100)
    assert got == b"%d\n" % i, (i, got)
for c in conns:
    c.close()
print("ok")
"#,
        &[],
    );
    echo.assert_ok(&out, 1000);
}

/// A server that accepts one connection, closes its listener, and echoes
/// on that connection until it ends; then exits.
const ACCEPT_ONCE_SERVER: &str = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(1)
c, _ = l.accept()
l.close()
while (data := c.recv(65536)):
    c.sendall(data)
"#;

#[test]
fn a_server_that_stopped_accepting_still_gets_its_rock_back() {
    let echo = Echo::start_with(ACCEPT_ONCE_SERVER);
    let rendezvous = echo.rendezvous;
    let resets = std::thread::spawn(move || {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(300));
            faults::reset_link(rendezvous);
        }
    });
    let out = echo.client(
        r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
for i in range(1, 301):
    s.sendall(b"%d\n" % i)
    assert f.readline() == b"%d\n" % i, i
    time.sleep(0.007)
print("ok")
"#,
        &[],
    );
    resets.join().expect("the reset thread");
    echo.assert_ok(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resumed=true"),
        "no reset hit the rock: {}",
        text(&out)
    );
}

#[test]
fn a_rock_client_reads_an_ordinary_servers_banner_and_the_probe_costs_one_refusal() {
    let sshd = Sshd::start();
    let rendezvous = free_port();
    let config = config_with_rock_port(rendezvous);
    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["-v", "-v", "python3", "-c"])
            .arg(
                r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.makefile("rb").readline().decode().split("_")[0])
"#,
            )
            .arg(sshd.port().to_string())
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SSH-2.0-OpenSSH\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let probed = stderr
        .lines()
        .find(|l| l.contains(&format!("connect 127.0.0.1:{}: direct", sshd.port())))
        .unwrap_or_else(|| panic!("no route in the log: {}", text(&out)));
    assert!(
        probed.contains("ordinary: its rendezvous port refused; probed in "),
        "{probed}"
    );
    eprintln!("the probe: {probed}");
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits for the next line of `lines` that is `want`, within 60 s.
#[track_caller]
fn expect_line(
    lines: &std::sync::mpsc::Receiver<String>,
    want: &str,
    context: &dyn Fn() -> String,
) {
    match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(line) if line == want => {}
        other => panic!("wanted {want:?}, got {other:?}: {}", context()),
    }
}

/// A client under rock, its stdout lines read as they come; ended when
/// dropped.
fn spawn_client(
    echo: &Echo,
    script: &str,
    args: &[&str],
) -> (Server, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(ROCK)
        .args(["python3", "-c", script, &echo.port.to_string()])
        .args(args)
        .env("XDG_CONFIG_HOME", echo.config.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the client under rock");
    let lines = common::live::stdout_lines(&mut child);
    (Server(child), lines)
}

#[test]
fn rocks_opened_and_closed_by_the_hundred_leak_no_descriptor() {
    let echo = Echo::start();
    let go = echo.dir.path().join("go");
    let stop = echo.dir.path().join("stop");
    let (client, lines) = spawn_client(
        &echo,
        r#"
import os, socket, sys, time
port, go, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def cycles(n):
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        s.close()
cycles(200)
print("half", flush=True)
while not os.path.exists(go):
    time.sleep(0.02)
cycles(200)
print("done", flush=True)
while not os.path.exists(stop):
    time.sleep(0.02)
"#,
        &[go.to_str().expect("UTF-8"), stop.to_str().expect("UTF-8")],
    );
    let supervisor = client.0.id();
    let server_supervisor = echo._server.0.id();
    let context = || server_log(echo.dir.path());
    expect_line(&lines, "half", &context);
    // Every rock of the first 200 has ended at both ends.
    std::thread::sleep(Duration::from_secs(2));
    let (mine, theirs) = (descriptors(supervisor), descriptors(server_supervisor));
    std::fs::write(&go, b"").expect("write the go file");
    expect_line(&lines, "done", &context);
    std::thread::sleep(Duration::from_secs(2));
    let (mine_after, theirs_after) = (descriptors(supervisor), descriptors(server_supervisor));
    assert!(
        mine_after <= mine + 2,
        "the client's supervisor went from {mine} to {mine_after} descriptors over 200 rocks"
    );
    assert!(
        theirs_after <= theirs + 2,
        "the server's supervisor went from {theirs} to {theirs_after} descriptors over 200 rocks"
    );
    std::fs::write(&stop, b"").expect("write the stop file");
}

/// A server that accepts one connection, reads nothing until the file GO
/// exists, then reads everything and writes how many bytes to the file
/// OUT (both put in by the test).
const SLOW_READER: &str = r#"
import os, socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(1)
c, _ = l.accept()
while not os.path.exists(GO):
    time.sleep(0.02)
total = 0
while (b := c.recv(1 << 20)):
    total += len(b)
with open(OUT + ".part", "w") as f:
    f.write(str(total))
os.rename(OUT + ".part", OUT)
"#;

#[test]
fn a_reader_that_stops_holds_the_writer_back_and_memory_stays_bounded() {
    let dir = common::temp_dir();
    let go = dir.path().join("go");
    let out = dir.path().join("out");
    let script = SLOW_READER
        .replace("GO", &format!("{:?}", go.display().to_string()))
        .replace("OUT", &format!("{:?}", out.display().to_string()));
    let echo = Echo::start_with(&script);
    let (client, lines) = spawn_client(
        &echo,
        r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
chunk = b"\x42" * (1 << 20)
for _ in range(256):
    s.sendall(chunk)
s.close()
print("sent", flush=True)
"#,
        &[],
    );
    // While the reader reads nothing, the writer is held back: 256 MiB do
    // not fit, and neither supervisor holds more than its bounds.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        lines.try_recv().is_err(),
        "the writer was never held back: {}",
        server_log(echo.dir.path())
    );
    let bound_kib = 64 * 1024;
    for (who, pid) in [
        ("client's", client.0.id()),
        ("server's", echo._server.0.id()),
    ] {
        let rss = rss_kib(pid);
        assert!(
            rss > 0 && rss < bound_kib,
            "the {who} supervisor holds {rss} KiB while its peer reads nothing"
        );
        eprintln!("the {who} supervisor: {rss} KiB resident while held back");
    }
    std::fs::write(&go, b"").expect("write the go file");
    expect_line(&lines, "sent", &|| server_log(echo.dir.path()));
    drop(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never got to the end: {}",
            server_log(echo.dir.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = std::fs::read_to_string(&out).expect("the reader's count");
    assert_eq!(total, (256u64 << 20).to_string(), "bytes read");
}
