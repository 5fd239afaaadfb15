//! Attacks at a rock server's rendezvous port while a rock streams through
//! it: garbage, old and wrong versions, forged and replayed resumes of the
//! live rock, hellos for rocks that do not exist, OPENs for ports that are
//! no rock listeners, and a flood of connections that say nothing. Each is
//! refused as docs/PROTOCOL.md §13 says; the live rock never notices (its
//! link is never lost, every line arrives once and in order), and the
//! server program and its supervisor go on serving new clients.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rocked::{
    ASYNCIO_ECHO_SERVER, NUMBERED_ECHO, Server, config_with_rock_port, free_port, rocked_server,
    server_log,
};
use common::{ROCK, TempDir, assert_exit};
use rock_proto::SessionId;
use rock_proto::handshake::{
    CLIENT_AUTH_LEN, ClientHello, REJECT_LEN, SERVER_HELLO_LEN, SUPPORTED_VERSIONS,
};

/// A live rock between a client and an echo server, both under rock.
struct Target {
    rendezvous: u16,
    port: u16,
    config: TempDir,
    dir: TempDir,
    _server: Server,
    client: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    client_log: std::path::PathBuf,
}

impl Target {
    fn start() -> Target {
        let rendezvous = free_port();
        let config = config_with_rock_port(rendezvous);
        let dir = common::temp_dir();
        let port = free_port();
        let server = rocked_server(
            &["python3", "-c", ASYNCIO_ECHO_SERVER, &port.to_string()],
            config.path(),
            port,
            rendezvous,
            dir.path(),
        );
        let client_log = dir.path().join("client.log");
        let mut client = Command::new(ROCK)
            .args([
                "-v",
                "-v",
                "python3",
                "-c",
                NUMBERED_ECHO,
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg(dir.path().join("stop"))
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&client_log).expect("create the client's log"))
            .spawn()
            .expect("start the client under rock");
        let lines = common::live::stdout_lines(&mut client);
        let target = Target {
            rendezvous,
            port,
            config,
            dir,
            _server: server,
            client,
            lines,
            client_log,
        };
        target.progress("the start");
        target
    }

    fn client_log(&self) -> String {
        std::fs::read_to_string(&self.client_log).unwrap_or_default()
    }

    fn context(&self) -> String {
        format!(
            "--- client ---\n{}\n--- server ---\n{}",
            self.client_log(),
            server_log(self.dir.path())
        )
    }

    /// Waits for the client's next progress line.
    fn progress(&self, what: &str) {
        while self.lines.try_recv().is_ok() {}
        if self.lines.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("no progress after {what}: {}", self.context());
        }
    }

    /// The live rock's session id, from the client's log.
    fn session(&self) -> SessionId {
        let log = self.client_log();
        let hex = log
            .lines()
            .find_map(|l| l.split(": rock ").nth(1))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no rock in the client's log: {log}"));
        assert_eq!(hex.len(), 32, "{hex}");
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        SessionId(id)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.rendezvous)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s
    }

    /// Stops the client and checks that the rock never lost its link and
    /// carried every line once and in order; then a new client is served.
    fn finish(mut self) {
        std::fs::write(self.dir.path().join("stop"), b"").expect("write the stop file");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = self.client.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not end: {}",
                self.context()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut last = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            last = line;
        }
        let context = self.context();
        assert!(status.success(), "client: {status}, {last}: {context}");
        assert!(last.starts_with("ok "), "{last}: {context}");
        let log = self.client_log();
        // The only link down is the one the rock's own end brings.
        let lost = match (log.find("link down"), log.find("session finished")) {
            (None, _) => false,
            (Some(down), Some(finished)) => down < finished,
            (Some(_), None) => true,
        };
        assert!(!lost, "the live rock lost its link: {context}");
        assert!(
            !log.contains("resumed=true"),
            "the live rock resumed: {context}"
        );

        let again = common::run_with_timeout(
            Command::new(ROCK)
                .args([
                    "-v",
                    "-v",
                    "python3",
                    "-c",
                    NUMBERED_ECHO,
                    "127.0.0.1",
                    &self.port.to_string(),
                ])
                .arg(self.dir.path().join("stop"))
                .env("XDG_CONFIG_HOME", self.config.path())
                .env_remove("RUST_LOG")
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert_exit(&again, 0, &format!("a new client: {again:?}"));
        assert!(
            String::from_utf8_lossy(&again.stderr).contains(": rock "),
            "the new client got no rock: {again:?}"
        );
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // A test that failed leaves no client behind.
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}

/// Reads until the peer closes (or resets): what it sent first.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("no close within the read timeout: {e}; read {got:?}"),
        }
    }
}

#[test]
fn garbage_and_other_versions_are_closed_without_an_answer() {
    let target = Target::start();
    let mut random = vec![0u8; 4096];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .expect("random bytes");
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
        b"RKRV\x01\x01\x18\xeb".to_vec(),
        b"RKRV\x02\x7f\x00\x01".to_vec(),
        b"RKRV\x02\x01\x00\x00".to_vec(),
        b"RKRV\x02\x81\x01\x00".to_vec(),
        b"ROCK\x04\x00\x00".to_vec(),
        b"RO\xff\xff".to_vec(),
        random.clone(),
        random[..1].to_vec(),
    ];
    for bytes in &garbage {
        let mut s = target.connect();
        // A refusal may come before everything is written.
        let _ = s.write_all(bytes);
        assert_eq!(read_to_close(&mut s), b"", "answered {bytes:?}");
    }
    target.progress("the garbage");
    target.finish();
}

#[test]
fn forged_and_replayed_resumes_of_the_live_rock_are_refused() {
    let target = Target::start();
    let id = target.session();
    let hello = ClientHello {
        versions: SUPPORTED_VERSIONS,
        session: id,
        nonce: [0x42; 32],
    }
    .encode();
    // A hello for the live rock is answered (anyone may know the id: it
    // travels in clear), but the link goes no further without the key.
    let mut s = target.connect();
    s.write_all(&hello).expect("write the hello");
    let mut server_hello = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut server_hello)
        .unwrap_or_else(|e| panic!("no ServerHello: {e}: {}", target.context()));
    assert_eq!(&server_hello[..5], b"ROCK\x02");
    let mut forged = vec![0x04];
    forged.extend_from_slice(&[0u8; CLIENT_AUTH_LEN - 1]);
    s.write_all(&forged).expect("write the forged ClientAuth");
    assert_eq!(read_to_close(&mut s), b"", "a forged proof was answered");
    target.progress("a forged ClientAuth");

    // The same hello again: a replay, refused without an answer.
    let mut s = target.connect();
    s.write_all(&hello).expect("write the replayed hello");
    assert_eq!(read_to_close(&mut s), b"", "a replayed hello was answered");
    target.progress("a replayed hello");

    // A hello for a rock that does not exist: the engine's Reject.
    let mut unknown = hello;
    unknown[9..25].copy_from_slice(&[0x17; 16]);
    let mut s = target.connect();
    s.write_all(&unknown).expect("write the hello");
    let reject = read_to_close(&mut s);
    assert_eq!(reject.len(), REJECT_LEN, "{reject:?}");
    assert_eq!(&reject[..6], b"ROCK\x03\x02", "{reject:?}");
    target.progress("a hello for no rock");
    target.finish();
}

#[test]
fn a_flood_of_silent_callers_and_refused_opens_leaves_the_live_rock_alone() {
    let target = Target::start();
    let mut silent = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(("127.0.0.1", target.rendezvous)) {
            Ok(s) => silent.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // OPENs for a port nothing listens on, with any key: refused.
    let nowhere = free_port();
    let mut open = b"RKRV\x02\x02".to_vec();
    open.extend_from_slice(&nowhere.to_be_bytes());
    open.extend_from_slice(&[9u8; 32]);
    let mut refused = 0;
    for _ in 0..50 {
        let mut s = target.connect();
        s.write_all(&open).expect("write the OPEN");
        let reply = read_to_close(&mut s);
        // Refused, or (while the silent callers hold every place) dropped
        // unanswered when the question timed out.
        assert!(
            reply.is_empty() || reply == b"RKRV\x02\x82\x00\x00",
            "{reply:?}"
        );
        refused += usize::from(!reply.is_empty());
        target.progress("an OPEN for a port that is no rock listener");
    }
    drop(silent);
    // Once the flood is gone, questions are answered again.
    let mut s = target.connect();
    s.write_all(&open).expect("write the OPEN");
    assert_eq!(read_to_close(&mut s), b"RKRV\x02\x82\x00\x00");
    eprintln!("{refused} of 50 OPENs answered during the flood");
    target.finish();
}
