//! rockd on its own, started as rock would start it but with no rock ever
//! coming: it must not wait out its 72-hour suspension timeout for a client
//! that gave up before its first link.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ROCKD, temp_dir};
use rock::boot::{BootReady, BootRequest};
use rock::proto::{SessionId, SessionKey};

#[test]
fn rockd_gives_up_a_session_whose_first_link_never_comes() {
    // The "sshd" rockd bridges to: any listener will do, nothing is sent.
    let sshd = TcpListener::bind("127.0.0.1:0").expect("binding a stand-in sshd");
    let target = sshd.local_addr().expect("its address").to_string();
    let dir = temp_dir();
    let log = dir.path().join("rockd.log");
    let mut rockd = Command::new(ROCKD)
        .args([
            "--foreground",
            "--first-link-timeout",
            "2",
            "--target",
            &target,
        ])
        .arg("--log")
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rockd");
    let request = BootRequest {
        id: SessionId([3; 16]),
        key: SessionKey([5; 32]),
    };
    rockd
        .stdin
        .take()
        .expect("rockd's stdin")
        .write_all(request.encode().as_bytes())
        .expect("sending the boot request");
    let mut ready = String::new();
    BufReader::new(rockd.stdout.take().expect("rockd's stdout"))
        .read_line(&mut ready)
        .expect("reading the ready line");
    let ready = BootReady::parse(ready.trim_end()).expect("rockd reports ready");
    assert!(ready.port > 0, "rockd listens: {ready:?}");
    let started = Instant::now();

    let status = loop {
        if let Some(status) = rockd.try_wait().expect("polling rockd") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = rockd.kill();
            panic!("rockd still waits for its first link after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "rockd gave up after {waited:?}, before its 2 s first-link timeout"
    );
    assert!(status.success(), "rockd ends cleanly: {status}");
    let logged = std::fs::read_to_string(&log).expect("rockd's log");
    assert!(
        logged.contains("no link came within"),
        "the log says why the session ended:\n{logged}"
    );
    println!("rockd gave up {waited:?} after reporting ready");
}
