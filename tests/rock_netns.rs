//! `rock COMMAND` between two machines (network namespaces joined by a
//! router: tests/common/netns.rs) through what a laptop goes through: its
//! address changes, its link goes down for 20 s, the path blackholes, and
//! it sleeps (every process on it stopped). Three ordinary client programs
//! under rock on the laptop talk to three ordinary servers under rock on
//! the server the whole time — a blocking python client counting with
//! redis-server (epoll), another sending numbered lines to a python
//! asyncio echo server, a third to a forking socat — and at the end each
//! checks that every request was carried once and every line arrived once
//! and in order; their exit statuses are their own.
//!
//! The three servers run under three supervisors of one user: one holds
//! the rendezvous port and hands the others' rocks over (their links are
//! piped through it), so resumes through the hand-over are under test too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::netns::{Net, in_netns, pids, signal};
use common::rocked::{
    ASYNCIO_ECHO_SERVER, NUMBERED_ECHO, REDIS_COUNTER, config_with_rock_port, library,
};
use common::{ROCK, require_root};

/// The rendezvous port in the server namespace.
const ROCK_PORT: u16 = 4747;
const REDIS_PORT: u16 = 6379;
const ASYNCIO_PORT: u16 = 7001;
const SOCAT_PORT: u16 = 7002;
/// How long the programs have to show progress after a fault ends.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// Asks the rendezvous port on this host whether each port in argv[2:] is
/// a rock listener (docs/PROTOCOL.md §13); exits 0 when all are.
const ALL_ANNOUNCED: &str = r#"
import socket, sys
rendezvous = int(sys.argv[1])
for port in map(int, sys.argv[2:]):
    try:
        s = socket.create_connection(("127.0.0.1", rendezvous), timeout=1)
        s.sendall(b"RKRV\x02\x01" + port.to_bytes(2, "big"))
        if s.recv(8) != b"RKRV\x02\x81\x01\x00":
            sys.exit(1)
    except OSError:
        sys.exit(1)
"#;

/// `rock -v -v ARGS` in namespace `ns`, with the test's configuration and
/// runtime directory, stderr to `log`.
fn rock_in(ns: &str, args: &[&str], config: &Path, runtime: &Path, log: &Path) -> Command {
    let mut command = Command::new(ROCK);
    command
        .args(["-v", "-v"])
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("XDG_RUNTIME_DIR", runtime)
        .env_remove("RUST_LOG");
    let mut wrapped = in_netns(ns, &command);
    wrapped.stdout(Stdio::null()).stderr(
        std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display())),
    );
    wrapped
}

/// A client program under rock on the laptop.
struct Client {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
}

impl Client {
    fn start(
        ns: &str,
        name: &'static str,
        args: &[&str],
        config: &Path,
        runtime: &Path,
        dir: &Path,
    ) -> Client {
        let log = dir.join(format!("{name}.log"));
        let mut child = rock_in(ns, args, config, runtime, &log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines = common::live::stdout_lines(&mut child);
        Client {
            name,
            child,
            lines,
            seen: Vec::new(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a new progress line; panics after `limit` with `what`.
    fn progress(&mut self, what: &str, limit: Duration) {
        match self.lines.recv_timeout(limit) {
            Ok(line) => {
                // Whatever queued up while it was stopped is old news.
                self.seen.push(line);
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push(line);
                }
            }
            Err(_) => panic!(
                "{}: no progress within {limit:?} after {what}; said {:?}\n--- rock's log ---\n{}",
                self.name,
                self.seen.last(),
                self.log()
            ),
        }
    }

    /// Waits for the program's end: its last line and status.
    fn finish(mut self) -> (String, std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not end: {}",
                self.name,
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        let last = self.seen.last().cloned().unwrap_or_default();
        (last, status, self.log())
    }
}

/// Processes of the test in the server namespace, killed at the end by
/// the namespace's own teardown; this only names them for messages.
struct Servers {
    logs: Vec<PathBuf>,
    _children: Vec<Child>,
}

impl Servers {
    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|log| {
                format!(
                    "--- {} ---\n{}\n",
                    log.display(),
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }
}

fn start_servers(net: &Net, config: &Path, runtime: &Path, dir: &Path) -> Servers {
    let redis = REDIS_PORT.to_string();
    let asyncio = ASYNCIO_PORT.to_string();
    let socat = format!("TCP-LISTEN:{SOCAT_PORT},fork,reuseaddr");
    let programs: [(&str, Vec<&str>); 3] = [
        (
            "redis",
            vec![
                "redis-server",
                "--port",
                &redis,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
        ),
        (
            "asyncio",
            vec!["python3", "-c", ASYNCIO_ECHO_SERVER, &asyncio, "0.0.0.0"],
        ),
        ("socat", vec!["socat", &socat, "EXEC:cat"]),
    ];
    let mut servers = Servers {
        logs: Vec::new(),
        _children: Vec::new(),
    };
    for (name, args) in programs {
        let log = dir.join(format!("server-{name}.log"));
        let child = rock_in(&net.server, &args, config, runtime, &log)
            .current_dir(dir)
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} server: {e}"));
        servers._children.push(child);
        servers.logs.push(log);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ports = [REDIS_PORT, ASYNCIO_PORT, SOCAT_PORT].map(|p| p.to_string());
        let mut ask = Command::new("python3");
        ask.args(["-c", ALL_ANNOUNCED, &ROCK_PORT.to_string()])
            .args(&ports);
        let announced = in_netns(&net.server, &ask)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if announced {
            return servers;
        }
        assert!(
            Instant::now() < deadline,
            "the servers were not all announced at the rendezvous port within 30 s\n{}",
            servers.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `iptables ARGS` in namespace `ns`.
fn iptables(ns: &str, args: &[&str]) {
    let out = in_netns(ns, Command::new("iptables").args(args))
        .output()
        .expect("run iptables");
    assert!(
        out.status.success(),
        "iptables {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rocks_between_two_machines_survive_a_new_address_an_outage_a_blackhole_and_sleep() {
    require_root("network namespaces");
    library();
    let mut net = Net::new();
    let dir = common::temp_dir();
    let config = config_with_rock_port(ROCK_PORT);
    let server_runtime = common::temp_dir();
    let laptop_runtime = common::temp_dir();
    let servers = start_servers(&net, config.path(), server_runtime.path(), dir.path());
    let stop = dir.path().join("stop");
    let stop_arg = stop.to_str().expect("a UTF-8 path");
    let server = net.server_addr().to_string();
    let clients: Vec<(&'static str, u16, &str)> = vec![
        ("counter", REDIS_PORT, REDIS_COUNTER),
        ("asyncio-echo", ASYNCIO_PORT, NUMBERED_ECHO),
        ("socat-echo", SOCAT_PORT, NUMBERED_ECHO),
    ];
    let mut running: Vec<Client> = clients
        .iter()
        .map(|&(name, port, script)| {
            let port = port.to_string();
            Client::start(
                &net.laptop,
                name,
                &["python3", "-c", script, &server, &port, stop_arg],
                config.path(),
                laptop_runtime.path(),
                dir.path(),
            )
        })
        .collect();
    let all_progress = |running: &mut Vec<Client>, what: &str| {
        for client in running.iter_mut() {
            client.progress(what, RECOVERY_LIMIT);
        }
    };
    all_progress(&mut running, "the start");
    let context = Arc::new(Mutex::new(String::new()));

    // 1. A new address: the old one is gone, so is every route through it.
    let new = net.move_laptop();
    context
        .lock()
        .expect("context")
        .push_str(&format!("laptop moved to {new}\n"));
    all_progress(&mut running, "the address change");

    // 2. The link down for 20 s.
    net.laptop_link_down();
    thread::sleep(Duration::from_secs(20));
    net.laptop_link_up();
    all_progress(&mut running, "20 s with the link down");

    // 3. A blackhole on the path for 10 s: the router drops everything.
    let rule = ["FORWARD", "-j", "DROP"];
    iptables(&net.router, &[&["-I"][..], &rule[..]].concat());
    thread::sleep(Duration::from_secs(10));
    iptables(&net.router, &[&["-D"][..], &rule[..]].concat());
    all_progress(&mut running, "a 10 s blackhole");

    // 4. The laptop sleeps for 10 s: every process on it is stopped.
    let sleepers = pids(&net.laptop);
    assert!(sleepers.len() >= 6, "rock and the clients: {sleepers:?}");
    for &pid in &sleepers {
        signal(pid, libc::SIGSTOP);
    }
    thread::sleep(Duration::from_secs(10));
    for &pid in &sleepers {
        signal(pid, libc::SIGCONT);
    }
    all_progress(&mut running, "10 s of sleep");

    std::fs::write(&stop, b"").expect("write the stop file");
    let mut resumed = 0;
    for client in running {
        let name = client.name;
        let (last, status, log) = client.finish();
        let context = format!(
            "{name}: {last}\n--- rock's log ---\n{log}\n{}",
            servers.logs()
        );
        assert!(status.success(), "{name} exited with {status}: {context}");
        let count: u64 = last
            .strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} did not say ok: {context}"));
        assert!(count > 100, "{name} did too little: {context}");
        let own = log.matches("resumed=true").count();
        assert!(own >= 1, "{name}'s rock never resumed: {context}");
        resumed += own;
    }
    eprintln!(
        "{resumed} resumes in the three rocks; {}",
        context.lock().expect("context")
    );
}

/// Resets every established connection to or from `port` in namespace
/// `ns`.
fn reset_in(ns: &str, port: u16) {
    let filter = format!("( dport = :{port} or sport = :{port} )");
    let out = in_netns(
        ns,
        Command::new("ss").args(["-K", "state", "established", &filter]),
    )
    .output()
    .expect("run ss");
    assert!(out.status.success(), "ss -K in {ns}: {out:?}");
}

/// `rock -l`, for a program that has moved next to its server: the
/// server's own address stops answering at the rendezvous port (an
/// iptables DROP), the rock's link is reset, and the rock comes back at
/// once through 127.0.0.1. The same without `-l` waits for the address.
#[test]
fn with_dash_l_a_suspended_rock_redials_localhost() {
    require_root("network namespaces");
    library();
    let net = Net::new();
    let dir = common::temp_dir();
    let config = config_with_rock_port(ROCK_PORT);
    let runtime = common::temp_dir();
    let servers = start_servers(&net, config.path(), runtime.path(), dir.path());
    let server = net.server_addr().to_string();
    let port = ASYNCIO_PORT.to_string();
    let rule = [
        "INPUT", "-d", &server, "-p", "tcp", "--dport", "4747", "-j", "DROP",
    ];
    let mut clients = Vec::new();
    for (name, dash_l) in [("with -l", true), ("without -l", false)] {
        let stop = dir.path().join(format!("stop {name}"));
        let stop_arg = stop.to_str().expect("a UTF-8 path").to_owned();
        let mut args = vec!["python3", "-c", NUMBERED_ECHO, &server, &port, &stop_arg];
        if dash_l {
            args.insert(0, "-l");
        }
        let mut client = Client::start(
            &net.server,
            name,
            &args,
            config.path(),
            runtime.path(),
            dir.path(),
        );
        client.progress("the start", RECOVERY_LIMIT);
        iptables(&net.server, &[&["-I"][..], &rule[..]].concat());
        reset_in(&net.server, ROCK_PORT);
        let lines = client.seen.len();
        if dash_l {
            client.progress("the reset, through 127.0.0.1", RECOVERY_LIMIT);
        } else {
            // Nothing for 5 s: it redials the blackholed address.
            while client.lines.try_recv().is_ok() {}
            assert!(
                client.lines.recv_timeout(Duration::from_secs(5)).is_err(),
                "without -l, the rock came back while its server's address was dropped: {}",
                client.log()
            );
        }
        iptables(&net.server, &[&["-D"][..], &rule[..]].concat());
        client.progress("the address answering again", RECOVERY_LIMIT);
        assert!(client.seen.len() > lines);
        std::fs::write(&stop, b"").expect("write the stop file");
        clients.push(client);
    }
    for client in clients {
        let name = client.name;
        let (last, status, log) = client.finish();
        let context = format!(
            "{name}: {last}\n--- rock's log ---\n{log}\n{}",
            servers.logs()
        );
        assert!(status.success(), "{context}");
        assert!(last.starts_with("ok "), "{context}");
        assert!(log.contains("resumed=true"), "{context}");
    }
}
