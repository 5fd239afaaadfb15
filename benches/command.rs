//! `rock COMMAND` at both ends against the same programs over plain TCP,
//! between two network namespaces (a laptop and a server joined through a
//! router: tests/common/netns.rs), in the same run. Every figure is printed
//! beside the plain figure and as a ratio: the machines this runs on are
//! shared and noisy, and an absolute figure alone means little.
//!
//! Run it as root (namespaces) with
//!
//! ```sh
//! cargo build --release --workspace && cargo bench --bench command
//! ```
//!
//! (`librocks.so` is built by the workspace build; `cargo bench` builds
//! `rock` itself.) What is measured:
//!
//! * `bulk`: a python sender pushes `ROCK_BENCH_MIB` MiB (default 512) to a
//!   python sink, which reports the bytes and the time from the first byte
//!   to the last; once over the bare veth path (where this machine's CPU is
//!   the limit) and once with the router shaping both ways to 1 Gbit/s. The
//!   CPU time of the two rock supervisors during the unshaped transfers is
//!   read from `/proc` and given per GiB carried;
//! * `redis`: `redis-benchmark -t set,get -c 20` against `redis-server`,
//!   requests per second;
//! * `echo`: 2,000 round trips of one byte on one connection to an echo
//!   server, the mean, and what rock adds;
//! * `connect`: time to the first byte back of a new connection (connect,
//!   one byte out, one byte back), to a rock server and, from a client
//!   under rock, to an ordinary server, against plain; the first connection
//!   to a destination (which pays for the probe) apart from the rest.
//!
//! `redis`, `echo` and `connect` to a rock server also run a reference:
//! the plain programs through two bare relay processes laid out like the
//! two supervisors (loopback to a relay on the laptop, TCP to a relay on
//! the server, loopback to the server; tokio copies on one thread, no
//! protocol): what two extra processes on the path cost by themselves.
//!
//! Plain and rock (and the reference) take turns (AB, BA, … or ABC, BCA,
//! …) `ROCK_BENCH_REPS` times (default 3), and the medians are printed.
//! Arguments select sections:
//! `cargo bench --bench command -- bulk echo`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ROCK;
use common::netns::{Net, in_netns};

const ROCK_PORT: u16 = 4747;
const SINK_PORT: u16 = 7100;
const ECHO_PORT: u16 = 7101;
const REDIS_PORT: u16 = 7102;
/// The bare relays' port, in both namespaces.
const RELAY_PORT: u16 = 7103;
/// The first argument that makes this program a bare relay.
const BARE_RELAY: &str = "--bare-relay";

/// A sink on every address, port argv[1]: for each connection, prints the
/// bytes read and the seconds from the first byte to the end.
const SINK: &str = r#"
import socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1])))
l.listen(8)
while True:
    c, _ = l.accept()
    buf = bytearray(1 << 20)
    n = c.recv_into(buf)
    start = time.monotonic()
    total = n
    while n:
        n = c.recv_into(buf)
        total += n
    print(total, time.monotonic() - start, flush=True)
    c.close()
"#;

/// Sends argv[3] MiB to argv[1]:argv[2] and closes.
const SENDER: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
chunk = b"\x5a" * (1 << 20)
for _ in range(int(sys.argv[3])):
    s.sendall(chunk)
s.close()
"#;

/// A threaded echo server on every address, port argv[1].
const ECHO: &str = r#"
import socket, sys, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1])))
l.listen(64)
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(65536)):
        c.sendall(b)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"#;

/// argv[3] round trips of one byte to argv[1]:argv[2] after 100 untimed
/// ones; prints the mean in microseconds.
const PING: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def trip():
    s.sendall(b"x")
    assert s.recv(1) == b"x"
for _ in range(100):
    trip()
n = int(sys.argv[3])
start = time.monotonic()
for _ in range(n):
    trip()
print((time.monotonic() - start) / n * 1e6)
"#;

/// argv[3] new connections to argv[1]:argv[2], each: connect, one byte out,
/// one byte back, close. Prints the first one's time, then the median of
/// the rest, in microseconds.
const CONNECTS: &str = r#"
import socket, statistics, sys, time
times = []
for _ in range(int(sys.argv[3])):
    start = time.monotonic()
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    times.append((time.monotonic() - start) * 1e6)
    s.close()
print(times[0], statistics.median(times[1:]))
"#;

fn fail(why: &str) -> ! {
    eprintln!("bench command: {why}");
    std::process::exit(1);
}

/// How a program runs: plainly, under rock, or plainly through two bare
/// relay processes laid out like the two supervisors (the reference).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Rock,
    Relay,
}

impl Mode {
    /// Where this mode's figures are kept in a `[_; 3]`.
    fn index(self) -> usize {
        self as usize
    }
}

/// The two namespaces and what runs in them.
struct Bench {
    net: Net,
    config: common::TempDir,
    runtime: common::TempDir,
    servers: Vec<Child>,
}

impl Bench {
    fn new() -> Bench {
        let config = common::temp_dir();
        std::fs::create_dir_all(config.path().join("rock")).expect("mkdir");
        std::fs::write(
            config.path().join("rock").join("config.toml"),
            format!("[defaults]\nrock_port = {ROCK_PORT}\n"),
        )
        .expect("write the config");
        Bench {
            net: Net::new(),
            config,
            runtime: common::temp_dir(),
            servers: Vec::new(),
        }
    }

    /// `args` in namespace `ns`, under rock or not.
    fn command(&self, ns: &str, mode: Mode, args: &[&str]) -> Command {
        let mut command = match mode {
            Mode::Plain | Mode::Relay => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
            Mode::Rock => {
                let mut c = Command::new(ROCK);
                c.args(args);
                c
            }
        };
        command
            .env("XDG_CONFIG_HOME", self.config.path())
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .env_remove("RUST_LOG");
        in_netns(ns, &command)
    }

    /// Starts a server in the server namespace, its stdout piped; waits
    /// until `port` listens (and, under rock, is announced).
    fn server(&mut self, mode: Mode, args: &[&str], port: u16) -> usize {
        let child = self
            .command(&self.net.server, mode, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("start {args:?}: {e}")));
        self.servers.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let check = match mode {
            Mode::Plain | Mode::Relay => format!("sport = :{port}"),
            Mode::Rock => format!("sport = :{ROCK_PORT}"),
        };
        loop {
            let out = in_netns(&self.net.server, Command::new("ss").args(["-Hltn", &check]))
                .output()
                .expect("run ss");
            let listening = !out.stdout.is_empty();
            let out = in_netns(
                &self.net.server,
                Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]),
            )
            .output()
            .expect("run ss");
            if listening && !out.stdout.is_empty() {
                // The rendezvous port is bound at the first listen; give
                // the registration a moment.
                thread::sleep(Duration::from_millis(200));
                let index = self.servers.len() - 1;
                if mode == Mode::Relay {
                    self.bare_relays(port);
                }
                return index;
            }
            if Instant::now() > deadline {
                fail(&format!("{args:?} did not listen on {port}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The reference: a relay process in the server namespace that
    /// carries each connection on its port [`RELAY_PORT`] to the server's
    /// `port` on loopback, and one on the laptop that carries each
    /// connection on its loopback port [`RELAY_PORT`] to the first —
    /// rock's layout (program, loopback, supervisor, link, supervisor,
    /// loopback, program) with bare copies for supervisors.
    fn bare_relays(&mut self, port: u16) {
        let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own path: {e}")));
        let hops = [
            (
                &self.net.server,
                format!("0.0.0.0:{RELAY_PORT}"),
                format!("127.0.0.1:{port}"),
            ),
            (
                &self.net.laptop,
                format!("127.0.0.1:{RELAY_PORT}"),
                format!("{}:{RELAY_PORT}", self.net.server_addr()),
            ),
        ];
        for (ns, listen, target) in hops {
            let mut relay = Command::new(&exe);
            relay.args([BARE_RELAY, &listen, &target]);
            let child = in_netns(ns, &relay)
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| fail(&format!("start a bare relay: {e}")));
            self.servers.push(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while in_netns(
                ns,
                Command::new("ss").args(["-Hltn", &format!("sport = :{RELAY_PORT}")]),
            )
            .output()
            .is_ok_and(|out| out.stdout.is_empty())
            {
                if Instant::now() > deadline {
                    fail("a bare relay did not listen");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Where a client in `mode` connects to reach the server's `port`.
    fn target(&self, mode: Mode, port: u16) -> (String, String) {
        match mode {
            Mode::Plain | Mode::Rock => (self.net.server_addr().to_string(), port.to_string()),
            Mode::Relay => ("127.0.0.1".to_owned(), RELAY_PORT.to_string()),
        }
    }

    /// Stops every server.
    fn stop_servers(&mut self) {
        for mut child in self.servers.drain(..) {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill has no memory effects; the pid is our child's.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `args` on the laptop, under rock or not; its stdout.
    fn client(&self, mode: Mode, args: &[&str]) -> String {
        let out = self
            .command(&self.net.laptop, mode, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(&format!("run {args:?}: {e}")));
        if !out.status.success() {
            fail(&format!(
                "{args:?} ({mode:?}) failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop_servers();
    }
}

/// CPU seconds (user and system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// The rock supervisors in namespace `ns` (processes running the rock
/// binary).
fn supervisors(ns: &str) -> Vec<u32> {
    let rock = std::fs::canonicalize(ROCK).unwrap_or_else(|_| PathBuf::from(ROCK));
    common::netns::pids(ns)
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == rock))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The modes in round `round`'s order: each goes first as often.
fn order(round: usize) -> [Mode; 2] {
    if round.is_multiple_of(2) {
        [Mode::Plain, Mode::Rock]
    } else {
        [Mode::Rock, Mode::Plain]
    }
}

/// The three modes in round `round`'s order, the reference among them.
fn order3(round: usize) -> [Mode; 3] {
    let mut modes = [Mode::Plain, Mode::Rock, Mode::Relay];
    modes.rotate_left(round % 3);
    modes
}

/// A row of the reference beside plain.
fn reference_row(plain: f64, relay: f64, unit: &str, higher_is_better: bool) {
    let ratio = if higher_is_better {
        relay / plain
    } else {
        plain / relay
    };
    println!(
        "{:<44} {:<17} {:<5} {relay:>10.1} {unit:<6} ratio {ratio:.2}",
        "  reference: two bare relay processes", "", ""
    );
}

fn row(what: &str, plain: f64, rock: f64, unit: &str, higher_is_better: bool) {
    let ratio = if higher_is_better {
        rock / plain
    } else {
        plain / rock
    };
    println!(
        "{what:<44} plain {plain:>10.1} {unit:<6} rock {rock:>10.1} {unit:<6} ratio {ratio:.2}"
    );
}

/// Bulk transfers, over the bare path and shaped to 1 Gbit/s.
fn bulk(bench: &mut Bench, reps: usize, mib: u64) {
    let server = bench.net.server_addr().to_string();
    let port = SINK_PORT.to_string();
    let size = mib.to_string();
    for shaped in [false, true] {
        if shaped {
            bench.net.shape("1gbit", "20ms");
        }
        let mut rates = [Vec::new(), Vec::new()];
        let mut cpu_per_gib = Vec::new();
        for round in 0..reps {
            for mode in order(round) {
                let index = bench.server(mode, &["python3", "-c", SINK, &port], SINK_PORT);
                let server_sups = supervisors(&bench.net.server);
                let server_before = cpu_total(&server_sups);
                let mut sender = bench
                    .command(
                        &bench.net.laptop,
                        mode,
                        &["python3", "-c", SENDER, &server, &port, &size],
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| fail(&format!("start the sender: {e}")));
                // The laptop's supervisor exists once the sender runs.
                thread::sleep(Duration::from_millis(100));
                let laptop_sups = supervisors(&bench.net.laptop);
                let laptop_before = cpu_total(&laptop_sups);
                let line = read_line(&mut bench.servers[index], Duration::from_secs(600));
                let laptop_after = cpu_total(&laptop_sups);
                let server_after = cpu_total(&server_sups);
                let _ = sender.wait();
                let (bytes, secs) = parse_sink(&line);
                if bytes != mib << 20 {
                    fail(&format!("the sink got {bytes} bytes of {}", mib << 20));
                }
                let mib_s = bytes as f64 / (1 << 20) as f64 / secs;
                rates[(mode == Mode::Rock) as usize].push(mib_s);
                if mode == Mode::Rock && !shaped {
                    let cpu = (laptop_after - laptop_before) + (server_after - server_before);
                    cpu_per_gib.push(cpu / (bytes as f64 / (1u64 << 30) as f64));
                }
                bench.stop_servers();
            }
        }
        let what = if shaped {
            format!("bulk {mib} MiB, shaped to 1 Gbit/s")
        } else {
            format!("bulk {mib} MiB, bare veth (CPU-bound)")
        };
        row(
            &what,
            median(rates[0].clone()),
            median(rates[1].clone()),
            "MiB/s",
            true,
        );
        if !shaped {
            println!(
                "{:<44} {:.2} CPU s per GiB carried (client's and server's rock together; \
                 the laptop's supervisor is timed from 0.1 s after the start)",
                "  the two supervisors",
                median(cpu_per_gib)
            );
        }
    }
}

fn cpu_total(pids: &[u32]) -> f64 {
    pids.iter().copied().map(cpu_seconds).sum()
}

/// Reads one line of the child's stdout within `limit`.
fn read_line(child: &mut Child, limit: Duration) -> String {
    use std::io::Read;
    let Some(stdout) = child.stdout.as_mut() else {
        fail("no stdout to read");
    };
    let deadline = Instant::now() + limit;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while Instant::now() < deadline {
        match stdout.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return String::from_utf8_lossy(&line).into_owned(),
            Ok(1) => line.push(byte[0]),
            _ => fail("the server ended before it reported"),
        }
    }
    fail("no report from the server in time")
}

fn parse_sink(line: &str) -> (u64, f64) {
    let mut words = line.split_whitespace();
    let bytes = words.next().and_then(|w| w.parse().ok());
    let secs = words.next().and_then(|w| w.parse().ok());
    match (bytes, secs) {
        (Some(b), Some(s)) => (b, s),
        _ => fail(&format!("the sink said {line:?}")),
    }
}

/// redis-benchmark SET and GET with 20 clients.
fn redis(bench: &mut Bench, reps: usize) {
    let mut rps: [[Vec<f64>; 3]; 2] = Default::default();
    for round in 0..reps {
        for mode in order3(round) {
            let (host, port) = bench.target(mode, REDIS_PORT);
            bench.server(
                mode,
                &[
                    "redis-server",
                    "--port",
                    &REDIS_PORT.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                ],
                REDIS_PORT,
            );
            let out = bench.client(
                mode,
                &[
                    "redis-benchmark",
                    "-h",
                    &host,
                    "-p",
                    &port,
                    "-c",
                    "20",
                    "-n",
                    "100000",
                    "-t",
                    "set,get",
                    "-q",
                ],
            );
            for (i, test) in ["SET", "GET"].iter().enumerate() {
                let value = out
                    .split(['\r', '\n'])
                    .filter_map(|l| l.strip_prefix(&format!("{test}: ")))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter_map(|n| n.parse::<f64>().ok())
                    .next_back()
                    .unwrap_or_else(|| fail(&format!("no {test} figure in {out:?}")));
                rps[i][mode.index()].push(value);
            }
            bench.stop_servers();
        }
    }
    for (i, test) in ["SET", "GET"].iter().enumerate() {
        let [plain, rock, relay] = rps[i].clone().map(median);
        row(
            &format!("redis-benchmark {test}, 20 clients"),
            plain,
            rock,
            "req/s",
            true,
        );
        reference_row(plain, relay, "req/s", true);
    }
}

/// One-byte round trips, and new connections.
fn echo_and_connect(bench: &mut Bench, reps: usize, sections: &[String]) {
    let server = bench.net.server_addr().to_string();
    let port = ECHO_PORT.to_string();
    let mut trips: [Vec<f64>; 3] = Default::default();
    let mut first: [Vec<f64>; 3] = Default::default();
    let mut then: [Vec<f64>; 3] = Default::default();
    for round in 0..reps {
        for mode in order3(round) {
            bench.server(mode, &["python3", "-c", ECHO, &port], ECHO_PORT);
            let (host, to) = bench.target(mode, ECHO_PORT);
            let m = mode.index();
            if wants(sections, "echo") {
                let out = bench.client(mode, &["python3", "-c", PING, &host, &to, "2000"]);
                trips[m].push(out.trim().parse().unwrap_or(f64::NAN));
            }
            if wants(sections, "connect") {
                let out = bench.client(mode, &["python3", "-c", CONNECTS, &host, &to, "101"]);
                let mut words = out
                    .split_whitespace()
                    .map(|w| w.parse().unwrap_or(f64::NAN));
                first[m].push(words.next().unwrap_or(f64::NAN));
                then[m].push(words.next().unwrap_or(f64::NAN));
            }
            bench.stop_servers();
        }
    }
    if wants(sections, "echo") {
        let [plain, rock, relay] = trips.map(median);
        row("echo, 1 byte round trip (mean)", plain, rock, "µs", false);
        println!("{:<44} {:.1} µs", "  added by rock", rock - plain);
        reference_row(plain, relay, "µs", false);
        println!(
            "{:<44} {:.1} µs",
            "  added by the bare relays",
            relay - plain
        );
    }
    if wants(sections, "connect") {
        let [plain, rock, relay] = first.map(median);
        row(
            "new connection to a rock server, first",
            plain,
            rock,
            "µs",
            false,
        );
        reference_row(plain, relay, "µs", false);
        let [plain, rock, relay] = then.map(median);
        row(
            "new connection to a rock server, then",
            plain,
            rock,
            "µs",
            false,
        );
        reference_row(plain, relay, "µs", false);
        // A client under rock to an ordinary server: the probe is refused
        // once, then the finding is cached.
        let mut ordinary_first = [Vec::new(), Vec::new()];
        let mut ordinary_then = [Vec::new(), Vec::new()];
        for round in 0..reps {
            bench.server(Mode::Plain, &["python3", "-c", ECHO, &port], ECHO_PORT);
            for mode in order(round) {
                let m = mode.index();
                let out = bench.client(mode, &["python3", "-c", CONNECTS, &server, &port, "101"]);
                let mut words = out
                    .split_whitespace()
                    .map(|w| w.parse().unwrap_or(f64::NAN));
                ordinary_first[m].push(words.next().unwrap_or(f64::NAN));
                ordinary_then[m].push(words.next().unwrap_or(f64::NAN));
            }
            bench.stop_servers();
        }
        row(
            "new connection to an ordinary server, first",
            median(ordinary_first[0].clone()),
            median(ordinary_first[1].clone()),
            "µs",
            false,
        );
        row(
            "new connection to an ordinary server, then",
            median(ordinary_then[0].clone()),
            median(ordinary_then[1].clone()),
            "µs",
            false,
        );
    }
}

fn wants(sections: &[String], name: &str) -> bool {
    sections.is_empty() || sections.iter().any(|s| s == name)
}

/// `--bare-relay LISTEN TARGET`: carries each connection to LISTEN to
/// TARGET with bare tokio copies on one thread, as a supervisor would
/// without the protocol; runs until killed.
fn bare_relay(listen: &str, target: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("a runtime: {e}")));
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (mut conn, _) = listener.accept().await?;
            let target = target.to_owned();
            tokio::spawn(async move {
                let Ok(mut onward) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = (conn.set_nodelay(true), onward.set_nodelay(true));
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut onward).await;
            });
        }
    });
    fail(&format!("bare relay {listen} -> {target}: {result:?}"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, listen, target] = &args[..]
        && flag == BARE_RELAY
    {
        bare_relay(listen, target);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        fail("run as root: the benchmark makes network namespaces");
    }
    let library = Path::new(ROCK).with_file_name("librocks.so");
    if !library.is_file() {
        fail(&format!(
            "{} is missing: cargo build --release --workspace first",
            library.display()
        ));
    }
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps = std::env::var("ROCK_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mib = std::env::var("ROCK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mut bench = Bench::new();
    println!(
        "rock COMMAND against plain TCP, laptop and server namespaces through a router; \
         medians of {reps} runs each, taking turns"
    );
    if wants(&sections, "echo") || wants(&sections, "connect") {
        echo_and_connect(&mut bench, reps, &sections);
    }
    if wants(&sections, "redis") {
        redis(&mut bench, reps);
    }
    if wants(&sections, "bulk") {
        bulk(&mut bench, reps, mib);
    }
}
