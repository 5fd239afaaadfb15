//! Programs under `rock COMMAND` for the tests: the preload library, a
//! configuration with a rendezvous port of the test's own, rock servers
//! announced at it, the rendezvous question written out byte by byte, and
//! the python programs several tests run under rock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ROCK, TempDir};

/// An asyncio echo server (python): `python3 -c ASYNCIO_ECHO_SERVER PORT
/// [HOST]`, on HOST (127.0.0.1 unless given), with a backlog of 1024.
pub const ASYNCIO_ECHO_SERVER: &str = r#"
import asyncio, sys
host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
async def echo(r, w):
    while (data := await r.read(65536)):
        w.write(data)
        await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(echo, host, int(sys.argv[1]), backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

/// A client (python, blocking sockets): `python3 -c NUMBERED_ECHO HOST PORT
/// STOP` sends numbered lines to an echo server until the file STOP
/// exists, half-closes, and checks that the echo was every line once and
/// in order, then the end of the stream; prints `echo N` every 25 lines
/// echoed, and `ok N` at the end (exit 1 and `errors: …` otherwise).
pub const NUMBERED_ECHO: &str = r#"
import os, socket, sys, threading, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
sent = [0]
errors = []
def line(i):
    return b"%06d %s\n" % (i, b"y" * 57)
def reader():
    f = s.makefile("rb")
    i = 0
    while (got := f.readline()):
        i += 1
        if got != line(i):
            errors.append("line %d: got %r" % (i, got[:20]))
            return
        if i % 25 == 0:
            print("echo", i, flush=True)
    if i != sent[0]:
        errors.append("%d lines echoed of %d" % (i, sent[0]))
t = threading.Thread(target=reader)
t.start()
while not os.path.exists(stop):
    sent[0] += 1
    s.sendall(line(sent[0]))
    time.sleep(0.003)
s.shutdown(socket.SHUT_WR)
t.join()
if errors:
    print("errors:", errors, flush=True)
    sys.exit(1)
print("ok", sent[0], flush=True)
"#;

/// A redis client (python, blocking sockets): `python3 -c REDIS_COUNTER HOST
/// PORT STOP` sends `INCR rock-counter` every few milliseconds until the
/// file STOP exists, each reply checked to be the next number (a request
/// lost or carried twice breaks the count); prints `count N` every 25, and
/// `ok N` at the end once GET agrees.
pub const REDIS_COUNTER: &str = r#"
import os, socket, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
f = s.makefile("rb")
s.sendall(b"DEL rock-counter\r\n")
f.readline()
n = 0
while not os.path.exists(stop):
    n += 1
    s.sendall(b"INCR rock-counter\r\n")
    got = f.readline()
    if got != b":%d\r\n" % n:
        print("INCR number", n, "answered", got, flush=True)
        sys.exit(1)
    if n % 25 == 0:
        print("count", n, flush=True)
    time.sleep(0.004)
s.sendall(b"GET rock-counter\r\n")
f.readline()
got = f.readline()
if got != b"%d\r\n" % n:
    print("GET answered", got, "after", n, flush=True)
    sys.exit(1)
print("ok", n, flush=True)
"#;

/// Where [`rocked_server`] writes its rock's log, in the server's directory.
pub const SERVER_LOG: &str = "rock-server.log";

/// A file in `dir` for a rock's log ([`SERVER_LOG`]).
fn log_file(dir: &Path) -> std::fs::File {
    std::fs::File::create(dir.join(SERVER_LOG)).expect("create the rock server's log")
}

/// The runtime directory (XDG_RUNTIME_DIR) of the rock server in `dir`:
/// its own, so that `rock status` there lists its rocks only.
pub fn server_runtime(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("create the server's runtime directory");
    run
}

/// What the rock server in `dir` logged so far.
pub fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(SERVER_LOG)).unwrap_or_default()
}

/// The library cargo builds beside the rock binary.
pub fn library() -> PathBuf {
    let lib = Path::new(ROCK).with_file_name("librocks.so");
    assert!(
        lib.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace; \
         scripts/test does)",
        lib.display()
    );
    lib
}

/// A port nothing listens on now.
///
/// Chosen outside the kernel's ephemeral range (`ip_local_port_range`):
/// a port the kernel handed out for `:0` may be handed out again, as the
/// source port of any connection on the machine, before the test's
/// program binds it — and a rendezvous port taken that way is never
/// announced. Outside the range, only another test's choice can collide,
/// and the bind below checks that it is free now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static TURN: AtomicU32 = AtomicU32::new(0);
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // Below the range if there is room there, else above it.
    let (first, span) = if low > 11_000 {
        (10_000, low - 10_000)
    } else {
        (high + 1, 65_535 - high)
    };
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..1000 {
        let turn = TURN.fetch_add(1, Ordering::Relaxed);
        let pick = seed.wrapping_add(turn.wrapping_mul(7_919)) % span;
        let Ok(port) = u16::try_from(first + pick) else {
            continue;
        };
        let free = |addr: &str| std::net::TcpListener::bind((addr, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port between {first} and {}", first + span)
}

/// Waits until something accepts on `port`, or panics naming `what`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process of the test, ended when dropped: SIGTERM (which a
/// rock passes on to its command), then SIGKILL if it is still there.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill has no memory effects; the pid is our child's.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A configuration directory (for XDG_CONFIG_HOME) whose rock/config.toml
/// sets `rock_port`.
pub fn config_with_rock_port(port: u16) -> TempDir {
    let dir = super::temp_dir();
    std::fs::create_dir_all(dir.path().join("rock")).expect("mkdir");
    std::fs::write(
        dir.path().join("rock").join("config.toml"),
        format!("[defaults]\nrock_port = {port}\n"),
    )
    .expect("write the config");
    dir
}

/// Asks the rendezvous port on loopback about `port` (the bytes of
/// docs/PROTOCOL.md §13, written out here): `Some(is a rock listener)`, or
/// `None` when nothing listens there.
pub fn ask_rendezvous(rendezvous: u16, port: u16) -> Option<bool> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rendezvous)).ok()?;
    let [hi, lo] = port.to_be_bytes();
    s.write_all(&[b'R', b'K', b'R', b'V', 2, 0x01, hi, lo])
        .expect("write the question");
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).expect("read the reply");
    assert_eq!(&reply[..6], b"RKRV\x02\x81", "{reply:?}");
    assert_eq!(reply[7], 0, "{reply:?}");
    match reply[6] {
        0 => Some(false),
        1 => Some(true),
        other => panic!("answer byte {other}"),
    }
}

/// Starts `args` under `rock -v -v` with rock's configuration under
/// `config`, in `dir` (rock's log goes to `dir`/[`SERVER_LOG`], its runtime
/// directory is [`server_runtime`]), and waits
/// until the rendezvous port calls `port` a rock listener (which it does
/// once the program's listen succeeded).
pub fn rocked_server(
    args: &[&str],
    config: &Path,
    port: u16,
    rendezvous: u16,
    dir: &Path,
) -> Server {
    library();
    let server = Server(
        Command::new(ROCK)
            .args(["-v", "-v"])
            .args(args)
            .env("XDG_CONFIG_HOME", config)
            .env("XDG_RUNTIME_DIR", server_runtime(dir))
            .env_remove("RUST_LOG")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir))
            .spawn()
            .unwrap_or_else(|e| panic!("start rock {args:?}: {e}")),
    );
    // Only the rendezvous port is asked: a test's connection to the port
    // itself would use up a server that accepts once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ask_rendezvous(rendezvous, port) != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "{args:?} under rock is not announced at the rendezvous port {rendezvous}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}
