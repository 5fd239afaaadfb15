//! Section `idle`: what an idle `rock -d` session costs — a session whose
//! remote command sleeps, nothing typed. rock and rockd still exchange a
//! heartbeat each way every second. Their CPU time over 30 s is read from
//! `/proc/PID/schedstat` (nanoseconds on the CPU), for every `rock` and
//! `rockd` process of this benchmark's tree.

use super::*;

/// How long the idle session is watched.
const WATCHED: Duration = Duration::from_secs(30);

/// Nanoseconds `pid` has spent on a CPU.
fn on_cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// This benchmark's `rock` and `rockd` processes: pid and name.
fn rock_processes() -> Vec<(u32, String)> {
    let all = processes();
    our_tree(&all)
        .iter()
        .filter(|p| p.comm == "rock" || p.comm == "rockd")
        .map(|p| (p.pid, p.comm.clone()))
        .collect()
}

pub(crate) fn bench_idle(sshd: &Sshd, report: &mut Report) {
    println!(
        "\n== idle: a rock session with nothing to carry, watched for {} s ==",
        WATCHED.as_secs()
    );
    report.quiet.settle("idle");
    let mut cmd = client(sshd, Client::Rock, "ssh");
    cmd.args(["rocktest", &format!("sleep {}", WATCHED.as_secs() + 15)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut session = Guard(cmd.spawn().expect("start the idle session"));
    // Until rockd runs and the login is over.
    let end = Instant::now() + Duration::from_secs(30);
    while !rock_processes().iter().any(|(_, name)| name == "rockd") {
        assert!(Instant::now() < end, "rockd never started");
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(5));
    let pids: Vec<u32> = rock_processes().into_iter().map(|(pid, _)| pid).collect();
    let before: u64 = pids.iter().map(|&p| on_cpu_ns(p)).sum();
    thread::sleep(WATCHED);
    let after: u64 = pids.iter().map(|&p| on_cpu_ns(p)).sum();
    let share = (after - before) as f64 / WATCHED.as_nanos() as f64 * 100.0;
    println!(
        "  rock and rockd ({} processes): {:.1} ms on the CPU in {} s = {share:.4} % of a core",
        pids.len(),
        (after - before) as f64 / 1e6,
        WATCHED.as_secs()
    );
    // The session ends by itself, and leaves nothing behind at sshd.
    let status = session.0.wait().expect("wait for the idle session");
    assert!(status.success(), "the idle session ended with {status}");
    quiesce(sshd);
    report.row(
        "CPU of an idle session (rock + rockd), % of a core",
        "-".into(),
        format!("{share:.3} %"),
        "-".into(),
        "< 0.1 %",
    );
}
