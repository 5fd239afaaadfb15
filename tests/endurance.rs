//! Endurance: a `rock -d ssh` session through a thousand link resets, and
//! an idle session's CPU cost. Real rock, rockd, sshd and ssh; real resets
//! (`ss -K`); figures read from `/proc`.

mod common;

use std::time::{Duration, Instant};

use common::faults::{link_port_of, listener_pid, reset_link};
use common::live::{LiveSession, spawn_rock_script, wait_new_link};
use common::procstat::{Usage, cpu_time, run_time_of_threads, ticks_per_second};
use common::{Sshd, require_root};

/// Resets in the reconnect loop.
const RECONNECTS: usize = 1000;
/// Descriptors rock or rockd may differ by between samples.
const FD_SLACK: usize = 2;
/// Resident memory rock or rockd may gain over the whole loop.
const RSS_BOUND_KIB: u64 = 8 * 1024;

/// Samples rock and rockd.
fn sample(live: &LiveSession) -> (Usage, Usage) {
    (Usage::of(live.rock_pid), Usage::of(live.rockd_pid))
}

#[track_caller]
fn assert_stable(who: &str, start: &Usage, later: &Usage, when: &str) {
    assert!(
        start.fd_distance(later) <= FD_SLACK,
        "{who}'s descriptors went from {} at the start to {} {when}",
        start.fds,
        later.fds
    );
    assert!(
        start.rss_growth_kib(later) < RSS_BOUND_KIB,
        "{who}'s memory grew from {start} at the start to {later} {when}"
    );
}

#[test]
fn a_thousand_reconnects_lose_no_line_and_leak_nothing() {
    require_root("ss -K on the rock link");
    // About 400 lines a second, so that most resets cut bytes in flight.
    let mut live = LiveSession::start_with("0.02", 10);
    let port = live.port;
    let mut link = wait_new_link(port, &[], Duration::from_secs(30));
    live.wait_lines(5, Duration::from_secs(60));
    let start = sample(&live);
    let began = Instant::now();
    let mut after_100 = None;
    let mut longest = Duration::ZERO;
    for i in 1..=RECONNECTS {
        let cut = Instant::now();
        reset_link(port);
        // Established means rockd sends frames on it, so the next reset
        // always hits a link that carries the stream.
        link = wait_new_link(port, &[link], Duration::from_secs(30));
        longest = longest.max(cut.elapsed());
        live.drain();
        if i == 100 {
            after_100 = Some(sample(&live));
        }
    }
    let took = began.elapsed();
    let lines_in_loop = live.received();
    live.wait_lines(10, Duration::from_secs(60));
    let end = sample(&live);
    let after_100 = after_100.expect("sampled after 100 reconnects");
    eprintln!(
        "{RECONNECTS} reconnects in {took:?} ({:?} each on average, longest {longest:?}); \
         {lines_in_loop} lines so far",
        took / RECONNECTS as u32
    );
    for (who, s, h, e) in [
        ("rock", start.0, after_100.0, end.0),
        ("rockd", start.1, after_100.1, end.1),
    ] {
        eprintln!("{who}: start {s}; after 100 {h}; end {e}");
    }
    for (who, s, h, e) in [
        ("rock", &start.0, &after_100.0, &end.0),
        ("rockd", &start.1, &after_100.1, &end.1),
    ] {
        assert_stable(who, s, h, "after 100 reconnects");
        assert_stable(who, s, e, &format!("after {RECONNECTS} reconnects"));
    }
    let lines = live.finish();
    eprintln!("all {lines} lines arrived exactly once, in order");
}

/// The most CPU time rock or rockd may use in the measured minute: 0.1 %
/// of one CPU.
const IDLE_CPU_BOUND: Duration = Duration::from_millis(60);
/// How long the idle session is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(60);

#[test]
fn an_idle_session_costs_under_a_thousandth_of_a_cpu() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    // Heartbeats only: the remote prints one line, then sleeps past the
    // measured minute and ends the session by itself.
    let (child, lines, stderr) = spawn_rock_script(&sshd, "echo ready; sleep 75; echo done");
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| {
            panic!(
                "no first line ({e}); rock's stderr:\n{}",
                stderr_of(&stderr)
            )
        });
    assert_eq!(first, "ready");
    // The worker carries the session; the front only stands for it.
    let rock = common::rock_worker(child.id());
    let port = link_port_of(rock)
        .filter(|&p| p != sshd.port())
        .expect("rock's link to rockd is up");
    let rockd = listener_pid(port).expect("rockd listens on the link port");
    // Let the start-up settle (the helper's hand-over, ssh's session).
    std::thread::sleep(Duration::from_secs(2));
    let (rock0, rockd0) = (cpu_time(rock), cpu_time(rockd));
    let (rock_run0, rockd_run0) = (run_time_of_threads(rock), run_time_of_threads(rockd));
    let began = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let (rock1, rockd1) = (cpu_time(rock), cpu_time(rockd));
    let (rock_run1, rockd_run1) = (run_time_of_threads(rock), run_time_of_threads(rockd));
    let window = began.elapsed();
    let (rock_used, rockd_used) = (rock1 - rock0, rockd1 - rockd0);
    let share = |d: Duration| 100.0 * d.as_secs_f64() / window.as_secs_f64();
    eprintln!(
        "idle for {window:?}: utime+stime (ticks of {} ms): rock {rock_used:?} ({:.4} % of a CPU), \
         rockd {rockd_used:?} ({:.4} %); time on a CPU by schedstat: rock {:?}, rockd {:?}",
        1000 / ticks_per_second(),
        share(rock_used),
        share(rockd_used),
        rock_run1.saturating_sub(rock_run0),
        rockd_run1.saturating_sub(rockd_run0),
    );
    assert!(
        rock_used < IDLE_CPU_BOUND,
        "rock used {rock_used:?} of CPU in {window:?} of idling"
    );
    assert!(
        rockd_used < IDLE_CPU_BOUND,
        "rockd used {rockd_used:?} of CPU in {window:?} of idling"
    );

    let done = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the remote's last line");
    assert_eq!(done, "done");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rock") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("rock did not exit; stderr:\n{}", stderr_of(&stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "rock: {status:?}\n{}", stderr_of(&stderr));
    let end = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{rockd}")).exists() {
        assert!(
            Instant::now() < end,
            "rockd still runs after the session ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills rock if the test fails before it exited.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn stderr_of(buf: &std::sync::Mutex<String>) -> String {
    buf.lock().expect("stderr buffer").clone()
}
