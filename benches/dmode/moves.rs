//! Section `moves`: a session whose network changes under it, over network
//! namespaces (the test harness's laptop ↔ router ↔ server, real veth
//! links, the server named through the laptop's hosts file). A line every
//! 10 ms; each figure is how long the stream stood still: for an address
//! change or a server move, the longest wait for a line in the 4 s after
//! it (lines already on their way do not hide the stall behind them); for
//! a link that comes back or a blackhole that lifts, the time from then to
//! the next line:
//!
//! * the laptop's address changes (the old one removed, a new one and its
//!   default route added: a laptop that roamed);
//! * the laptop's link is down 3 s and comes back with its default route
//!   (Wi-Fi lost and found; the address stays);
//! * the server moves to another address and its name follows;
//! * the path between them drops everything for 10–10.8 s (a router's
//!   iptables DROP), timed from when it lifts.
//!
//! Plain OpenSSH meets the blackholes too (TCP's retransmission brings it
//! back) and one address change (after which it stands still for good).
//! Before the changes, one-byte echo round trips between the namespaces
//! (as the `echo` section, without the reference relay: its processes run
//! outside them).

use super::*;
use common::netns::Net;

/// Trials of each change.
const MOVES: usize = 5;
/// How long the laptop's link stays down.
const LINK_DOWN: Duration = Duration::from_secs(3);
/// How long after a change the stream is watched for its longest stall.
const WINDOW: Duration = Duration::from_secs(4);
/// How long plain ssh is watched after its address changed.
const STALL: Duration = Duration::from_secs(10);

/// Waits until the stream flows again after a change (and proves it does).
fn flowing(s: &mut Stream) {
    assert!(
        s.drain_for(Duration::from_millis(1500)) > 20,
        "the stream is not flowing"
    );
}

/// How long the stream stood still because of a change made at `t`: the
/// longest wait for a line from `t` on (to the first line, or between two
/// lines) over the next `window`. Lines already on their way when the
/// change came do not hide the stall that follows them.
/// None when no line came for `give_up`.
fn stall_after(
    s: &mut Stream,
    t: Instant,
    window: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let mut last = t;
    let mut longest = Duration::ZERO;
    while last < t + window {
        let at = s.next(give_up)?;
        if at > last {
            longest = longest.max(at - last);
            last = at;
        }
    }
    Some(longest)
}

/// Blackholes the path for trial `i`'s length; returns the time from
/// lifting it to the next line.
fn through_blackhole(net: &Net, s: &mut Stream, i: usize) -> Option<Duration> {
    let hole = net.blackhole_path();
    thread::sleep(hole_length(i));
    drop(hole);
    s.first_after(Instant::now())
}

fn record(
    figures: &mut BTreeMap<&'static str, Vec<f64>>,
    what: &'static str,
    who: &str,
    i: usize,
    d: Option<Duration>,
) {
    let d = d.unwrap_or_else(|| panic!("{who}'s stream never came back after: {what}"));
    println!("  {who} {what} #{}: next line after {:.0} ms", i + 1, ms(d));
    figures.entry(what).or_default().push(ms(d));
}

pub(crate) fn bench_moves(report: &mut Report) {
    println!(
        "\n== moves: a line every 10 ms between namespaces laptop ↔ router ↔ server, \
         {MOVES} of each change =="
    );
    report.quiet.settle("moves");
    let mut net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let mut rock: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut plain: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();

    // First the echo between the namespaces, nothing changing.
    let mut echo: BTreeMap<Client, Vec<f64>> = BTreeMap::new();
    for round in 0..ECHO_ROUNDS {
        for who in Client::order(&[Client::Plain, Client::Rock], round) {
            let trips = echo_session_via(&sshd, who, |c| net.on_laptop(&c));
            println!(
                "  echo between namespaces #{}: {} median {:.0} µs",
                round + 1,
                who.name(),
                median(&trips)
            );
            echo.entry(who).or_default().extend(trips);
        }
    }
    let (pe, re) = (&echo[&Client::Plain], &echo[&Client::Rock]);
    let (pm, rm) = (median(pe), median(re));
    let (p99, r99) = (quantile(pe, 0.99), quantile(re, 0.99));
    report.row(
        "echo RTT median between namespaces, µs",
        format!("{pm:.0}"),
        format!("{rm:.0}"),
        format!("+{:.0} µs", rm - pm),
        "≤ +50 µs",
    );
    report.row(
        "echo RTT p99 between namespaces, µs",
        format!("{p99:.0}"),
        format!("{r99:.0}"),
        format!("{:.2} ×", r99 / p99),
        "≤ 2 ×",
    );

    let stop = sshd.dir().join("stop-moves-rock");
    let mut s = Stream::start_via(&sshd, Client::Rock, &stop, |c| net.on_laptop(&c));
    for i in 0..MOVES {
        flowing(&mut s);
        let t = Instant::now();
        net.move_laptop();
        record(
            &mut rock,
            "address",
            "rock",
            i,
            stall_after(&mut s, t, WINDOW, Duration::from_secs(60)),
        );

        flowing(&mut s);
        net.laptop_link_down();
        thread::sleep(LINK_DOWN);
        let t = Instant::now();
        net.laptop_link_up();
        record(&mut rock, "link", "rock", i, s.first_after(t));

        flowing(&mut s);
        let t = Instant::now();
        net.move_server();
        record(
            &mut rock,
            "server",
            "rock",
            i,
            stall_after(&mut s, t, WINDOW, Duration::from_secs(60)),
        );

        flowing(&mut s);
        record(
            &mut rock,
            "hole",
            "rock",
            i,
            through_blackhole(&net, &mut s, i),
        );
    }
    flowing(&mut s);
    std::fs::write(&stop, "").expect("write the stop file");
    while s.next(Duration::from_secs(30)).is_some() {}
    let status = s.child.0.wait().expect("wait for rock");
    let rock_intact = if s.broken.is_empty() && status.success() {
        format!("{} lines, all once and in order, exit 0", s.last)
    } else {
        format!("BROKEN: {:?}, exit {status:?}", s.broken)
    };

    let stop = sshd.dir().join("stop-moves-plain");
    let mut p = Stream::start_via(&sshd, Client::Plain, &stop, |c| net.on_laptop(&c));
    for i in 0..MOVES {
        flowing(&mut p);
        record(
            &mut plain,
            "hole",
            "ssh",
            i,
            through_blackhole(&net, &mut p, i),
        );
    }
    flowing(&mut p);
    let t = Instant::now();
    net.move_laptop();
    let plain_move = match stall_after(&mut p, t, WINDOW, STALL) {
        Some(d) => format!("{:.0}", ms(d)),
        None => format!("stalls (no line in {} s)", STALL.as_secs()),
    };
    println!("  ssh address: {plain_move}");
    drop(p);

    let rows: [(&str, &str, String, &str); 4] = [
        (
            "address",
            "stream stands still when the laptop's address changes, ms",
            plain_move,
            "≤ 100 ms",
        ),
        (
            "link",
            "next line after a 3 s link-down, from the route's return, ms",
            "-".into(),
            "≤ 100 ms",
        ),
        (
            "server",
            "stream stands still when the server moves, ms",
            "dies".into(),
            "≤ 2000 ms",
        ),
        (
            "hole",
            "next line after a 10–10.8 s path blackhole lifts, ms",
            spread(&plain["hole"], 0),
            "≤ 2000 ms",
        ),
    ];
    for (key, what, plain_cell, target) in rows {
        let ratio = match key {
            "hole" => format!("{:.2} ×", median(&rock[key]) / median(&plain[key])),
            _ => "-".into(),
        };
        report.row(what, plain_cell, spread(&rock[key], 0), ratio, target);
    }
    report
        .notes
        .push(format!("moves: rock stream {rock_intact}"));
}
