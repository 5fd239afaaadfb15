//! Scenarios: resume, backpressure, liveness, close, version skew, and a
//! server that learns of the new link while the old one still delivers.

use std::time::Duration;

use super::util::{Cut, ID, Pair, key, transmit_all};
use crate::{
    CloseCode, CloseReason, Config, Event, LinkError, LinkId, Role, Session, State, VersionRange,
};

fn events_of(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// A client and a server session with link 1 established between them
/// (three rounds of handshake shuttled by hand, at `now`).
fn linked(now: std::time::Instant, config: Config) -> (Session, Session, LinkId, LinkId) {
    let mut client = Session::new(Role::Client, ID, key(), config.clone(), now).unwrap();
    let mut server = Session::new(Role::Server, ID, key(), config, now).unwrap();
    let c1 = client.open_link(now, [1; 32]);
    let s1 = server.accept_link(now, [2; 32]);
    for _ in 0..3 {
        let out = transmit_all(&mut client, c1);
        server.handle_link_input(now, s1, &out);
        let out = transmit_all(&mut server, s1);
        client.handle_link_input(now, c1, &out);
    }
    (client, server, c1, s1)
}

#[test]
fn bytes_flow_both_ways_and_the_session_finishes() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.client.write(100_000);
    pair.server.write(77_777);
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len(), 100_000);
    assert_eq!(pair.client.delivered.len(), 77_777);
    pair.finish_both();
    assert_eq!(
        events_of(&pair.client.events, |e| matches!(
            e,
            Event::LinkUp { resumed: false, .. }
        )),
        1
    );
    assert_eq!(events_of(&pair.server.events, |e| *e == Event::Finished), 1);
}

#[test]
fn a_reset_link_resumes_and_retransmits_only_the_missing_bytes() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.settle();
    pair.client.write(1_000_000);
    pair.plan_cut(300_000, 50, Cut::Reset);
    pair.settle_reading();
    let stats = pair.client.session.stats();
    assert_eq!(stats.state, State::Connected);
    assert_eq!(stats.links_established, 2);
    assert!(
        pair.client
            .events
            .iter()
            .any(|e| matches!(e, Event::LinkUp { resumed: true, .. })),
        "the second link must be reported as a resumption"
    );
    assert_eq!(pair.server.delivered.len(), 1_000_000);
    pair.server.assert_delivered_prefix_of(&pair.client);
}

#[test]
fn a_fin_sent_before_the_cut_is_delivered_once_after_the_resume() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.client.write(5000);
    pair.client.session.finish();
    // The FIN is in the first transport's last bytes; the cut loses them.
    pair.plan_cut(5000, 1000, Cut::Reset);
    pair.settle_reading();
    assert_eq!(pair.server.fins, vec![5000]);
    pair.server.session.finish();
    pair.run_until(Duration::from_secs(5), |p| {
        p.client.session.close_reason().is_some()
    });
    assert_eq!(pair.server.fins, vec![5000]);
    assert_eq!(
        pair.client.session.close_reason(),
        Some(&CloseReason::Finished)
    );
}

/// A linked pair whose client application writes 100 × 10 000 bytes to a
/// server application that reads nothing; and how many the client's
/// engine took.
fn written_unread(config: Config) -> (Pair, usize) {
    let mut pair = Pair::new(config);
    pair.connect();
    let mut taken = 0;
    for _ in 0..100 {
        taken += pair.client.write(10_000);
        pair.settle();
    }
    (pair, taken)
}

#[test]
fn a_full_replay_buffer_pushes_back_and_drops_nothing() {
    // The client must stop taking bytes once its replay buffer is full.
    let (mut pair, taken) = written_unread(Config {
        replay_bound: 64 << 10,
        receive_bound: 32 << 10,
        ..Config::default()
    });
    assert!(taken < 1_000_000, "backpressure never came");
    assert_eq!(pair.client.session.write_capacity(), 0);
    let stats = pair.client.session.stats();
    assert!(stats.replay_buffered <= 64 << 10);
    assert!(pair.server.session.readable() <= (32 << 10) + crate::wire::MAX_DATA);
    // Blocked for a long time: the link stays up (the receiver does not
    // judge a link it is not reading) and nothing is lost.
    for _ in 0..30 {
        pair.advance(Duration::from_secs(1));
        pair.settle();
    }
    assert_eq!(pair.client.session.stats().links_established, 1);
    pair.settle_reading();
    while pair.server.delivered.len() < 1_000_000 {
        pair.client.write(10_000);
        pair.settle_reading();
    }
    pair.server.assert_delivered_prefix_of(&pair.client);
}

#[test]
fn an_application_behind_leaves_the_rest_in_the_transport() {
    // Room for everything in both buffers: only the policy keeps the
    // receiver from reading it all into its own.
    let (mut pair, taken) = written_unread(Config {
        replay_bound: 4 << 20,
        receive_bound: 4 << 20,
        ..Config::default()
    });
    assert_eq!(taken, 1_000_000);
    // The server's application took part of the first read and then no
    // more: the link is left unread, so the bytes wait unacknowledged in
    // the client's replay buffer and in the transport, not in the
    // server's receive buffer.
    let held = pair.server.session.readable();
    assert!(
        held > 0,
        "the application took everything; nothing was tested"
    );
    assert!(
        held <= crate::link::INPUT_CAP,
        "the receive buffer took {held} bytes past one read"
    );
    let unacked = pair.client.session.stats().replay_buffered;
    assert!(
        unacked as u64 >= 1_000_000 - pair.server.delivered.len() as u64 - held as u64,
        "only {unacked} bytes wait for acknowledgement"
    );
    // The link is not judged while it is left unread.
    for _ in 0..30 {
        pair.advance(Duration::from_secs(1));
        pair.settle();
    }
    assert_eq!(pair.client.session.stats().links_established, 1);
    assert_eq!(pair.server.session.stats().links_established, 1);
    // Once the application reads, the rest follows, exactly once.
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len(), 1_000_000);
    pair.server.assert_delivered_prefix_of(&pair.client);
    assert_eq!(pair.client.session.stats().replay_buffered, 0);
}

#[test]
fn applications_that_write_before_they_read_still_get_their_acknowledgements() {
    // Each side's application writes and never reads. Once a send window
    // is full, its acknowledgements must be read even though the
    // application is behind: each direction then holds its replay buffer
    // and the peer's whole receive buffer, as before the link was left
    // unread for a slow application.
    let (replay, receive) = (64 << 10, 256 << 10);
    let config = Config {
        replay_bound: replay,
        receive_bound: receive,
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    pair.connect();
    let (mut client, mut server) = (0, 0);
    for _ in 0..200 {
        client += pair.client.write(10_000);
        server += pair.server.write(10_000);
        pair.settle();
    }
    assert!(
        client >= replay + receive && server >= replay + receive,
        "took {client} and {server} bytes before pushing back; \
         the replay and receive buffers hold {}",
        replay + receive
    );
    assert_eq!(pair.client.session.write_capacity(), 0);
    assert_eq!(pair.server.session.write_capacity(), 0);
    pair.settle_reading();
    pair.client.assert_delivered_prefix_of(&pair.server);
    pair.server.assert_delivered_prefix_of(&pair.client);
    assert_eq!(pair.client.delivered.len(), server);
    assert_eq!(pair.server.delivered.len(), client);
}

#[test]
fn heartbeats_measure_rtt_and_a_silent_link_is_declared_dead_in_time() {
    let config = Config::default();
    let mut pair = Pair::new(config.clone());
    pair.connect();
    pair.settle();
    pair.advance(config.heartbeat_interval);
    pair.settle();
    assert!(pair.client.session.stats().rtt.is_some());

    // Idle but alive: heartbeats keep the link up for a long time.
    for _ in 0..60 {
        pair.advance(Duration::from_secs(1));
        pair.settle();
    }
    assert_eq!(pair.client.session.stats().links_established, 1);

    // Blackhole: nothing tells the engines; they must notice.
    pair.auto_reconnect = false;
    pair.plan_cut(0, 0, Cut::Blackhole);
    let start = pair.now;
    pair.run_until(Duration::from_secs(60), |p| p.client.link.is_none());
    let detected = pair.now - start;
    assert!(
        detected <= config.link_timeout + config.heartbeat_interval,
        "dead link noticed after {detected:?}"
    );
    assert!(pair.client.events.iter().any(|e| matches!(
        e,
        Event::LinkDown {
            error: LinkError::Timeout(_),
            ..
        }
    )));
    // The suspension says when the silence began, not only when it was
    // declared a failure (the title's "link down N s" counts from there).
    let State::Suspended { since, heard } = pair.client.session.stats().state else {
        panic!("the client is not suspended");
    };
    assert!(
        heard <= start,
        "last heard {heard:?} after the cut at {start:?}"
    );
    assert!(
        since.duration_since(heard) >= config.link_timeout,
        "declared dead {:?} after it was last heard",
        since.duration_since(heard)
    );
}

#[test]
fn suspension_timeout_closes_both_sides() {
    let config = Config {
        suspend_timeout: Duration::from_secs(120),
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    pair.connect();
    pair.settle();
    pair.auto_reconnect = false;
    pair.drop_transport(true);
    pair.settle();
    assert!(matches!(
        pair.client.session.stats().state,
        State::Suspended { .. }
    ));
    pair.advance(Duration::from_secs(119));
    assert_eq!(pair.client.session.close_reason(), None);
    pair.advance(Duration::from_secs(1));
    assert_eq!(
        pair.client.session.close_reason(),
        Some(&CloseReason::SuspendTimeout)
    );
    assert_eq!(
        pair.server.session.close_reason(),
        Some(&CloseReason::SuspendTimeout)
    );
}

#[test]
fn a_deliberate_close_reaches_the_peer_with_its_reason() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.client.write(1000);
    pair.settle_reading();
    pair.close_client(CloseCode::Aborted);
    pair.settle_reading();
    assert_eq!(
        pair.server.session.close_reason(),
        Some(&CloseReason::Peer {
            code: CloseCode::Aborted,
            message: "test".into()
        })
    );
    assert_eq!(pair.client.session.links().count(), 0);
    assert_eq!(pair.server.session.links().count(), 0);
}

#[test]
fn every_link_is_reported_down_exactly_once() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    for _ in 0..5 {
        pair.client.write(10_000);
        pair.plan_cut(3000, 3000, Cut::Reset);
        pair.settle_reading();
    }
    pair.finish_both();
    pair.settle();
    for side in [&pair.client, &pair.server] {
        let mut up = Vec::new();
        let mut down = Vec::new();
        for e in &side.events {
            match e {
                Event::LinkUp { link, .. } => up.push(*link),
                Event::LinkDown { link, .. } => down.push(*link),
                _ => {}
            }
        }
        for l in &up {
            assert_eq!(down.iter().filter(|d| *d == l).count(), 1, "{l}");
        }
        assert_eq!(side.session.links().count(), 0);
    }
}

#[test]
fn a_newer_client_talks_to_an_older_server() {
    let client = Config {
        versions: VersionRange { min: 1, max: 3 },
        ..Config::default()
    };
    let mut pair = Pair::with_configs(client, Config::default());
    pair.connect();
    pair.client.write(1000);
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len(), 1000);
}

/// The client abandons a link the server still thinks alive and opens a new
/// one; the old link goes on delivering after the server has answered the
/// new hello, so the server's advertised resume point is stale. Nothing may
/// be delivered twice.
#[test]
fn late_bytes_on_the_old_link_are_not_delivered_twice() {
    let now = std::time::Instant::now();
    let mut client = Session::new(Role::Client, ID, key(), Config::default(), now).unwrap();
    let mut server = Session::new(Role::Server, ID, key(), Config::default(), now).unwrap();
    let c1 = client.open_link(now, [1; 32]);
    let s1 = server.accept_link(now, [2; 32]);
    let shuttle = |from: &mut Session, fl, to: &mut Session, tl| {
        let out = transmit_all(from, fl);
        to.handle_link_input(now, tl, &out);
        out.len()
    };
    shuttle(&mut client, c1, &mut server, s1);
    shuttle(&mut server, s1, &mut client, c1);
    shuttle(&mut client, c1, &mut server, s1);
    assert_eq!(server.current_link(), Some(s1));

    // Client data goes out on link 1 but is held in the network.
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    assert_eq!(client.write(&data), data.len());
    let held = transmit_all(&mut client, c1);

    // The client gives up on link 1 and opens link 2.
    let c2 = client.open_link(now, [3; 32]);
    let s2 = server.accept_link(now, [4; 32]);
    shuttle(&mut client, c2, &mut server, s2); // hello
    shuttle(&mut server, s2, &mut client, c2); // server hello: resume at 0
    // Now the held bytes arrive on the old link.
    server.handle_link_input(now, s1, &held);
    assert_eq!(server.readable(), data.len());
    // The client's proof installs link 2; the client resends from 0.
    for _ in 0..10 {
        shuttle(&mut client, c2, &mut server, s2);
        shuttle(&mut server, s2, &mut client, c2);
    }
    assert_eq!(server.current_link(), Some(s2));
    let mut got = vec![0u8; 200_000];
    let n = server.read(&mut got);
    assert_eq!(&got[..n], &data[..], "delivered twice or lost");
}

#[test]
fn the_servers_finish_note_reaches_the_client_with_the_end() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.client.write(1000);
    pair.server.write(1000);
    pair.settle_reading();
    pair.server.session.set_finish_note("no login completed");
    pair.finish_both();
    assert_eq!(
        pair.client.session.close_reason(),
        Some(&CloseReason::Finished)
    );
    assert_eq!(pair.client.session.finish_note(), "no login completed");
}

#[test]
fn a_finish_note_lost_with_its_link_comes_again_on_the_next() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.settle();
    pair.server.session.set_finish_note("note");
    pair.client.session.finish();
    pair.server.session.finish();
    // Everything up to the server's CLOSE gets through; the CLOSE does not.
    pair.auto_reconnect = false;
    // A step delivers input after it writes output: the server closes
    // while delivering, and its CLOSE waits for the next step's write.
    while pair.server.session.close_reason().is_none() {
        assert!(pair.step(), "the session stopped short of finishing");
    }
    pair.drop_transport(true);
    pair.settle();
    assert_eq!(pair.client.session.close_reason(), None);
    assert_eq!(pair.client.session.finish_note(), "");
    pair.connect();
    pair.settle();
    assert_eq!(
        pair.client.session.close_reason(),
        Some(&CloseReason::Finished)
    );
    assert_eq!(pair.client.session.finish_note(), "note");
}

#[test]
fn a_close_made_while_suspended_reaches_the_peer_on_the_next_link() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.settle();
    pair.auto_reconnect = false;
    pair.drop_transport(true);
    pair.settle();
    pair.close_client(CloseCode::Aborted);
    assert!(pair.client.session.has_farewell());
    assert_eq!(pair.server.session.close_reason(), None);
    // The shell dials once more to deliver it.
    pair.connect();
    pair.settle();
    assert_eq!(
        pair.server.session.close_reason(),
        Some(&CloseReason::Peer {
            code: CloseCode::Aborted,
            message: "test".into()
        })
    );
    assert!(!pair.client.session.has_farewell());
    assert_eq!(pair.client.session.stats().links_established, 1);
}

/// An on-path attacker forges an ack for bytes the server never got; the
/// client frees them. On the next link the server's authenticated resume
/// point is below that ack: the stream cannot be made whole, so both ends
/// close with an error instead of resuming wrongly or redialling forever.
#[test]
fn a_forged_ack_ends_the_session_instead_of_corrupting_it() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.settle();
    pair.plan_cut(0, usize::MAX >> 1, Cut::Blackhole);
    pair.client.write(1000);
    pair.settle();
    let link = pair.client.link.expect("client link");
    let mut forged = Vec::new();
    crate::wire::encode(&crate::wire::Frame::Ack(1000), &mut forged);
    pair.client
        .session
        .handle_link_input(pair.now, link, &forged);
    assert_eq!(pair.client.session.stats().acked, 1000);
    pair.connect();
    pair.settle();
    for side in [&pair.client, &pair.server] {
        match side.session.close_reason() {
            Some(CloseReason::Local { code, message } | CloseReason::Peer { code, message }) => {
                assert_eq!(*code, CloseCode::Error);
                assert!(message.contains("diverged"), "{message}");
            }
            other => panic!("expected an error close, got {other:?}"),
        }
    }
    assert_eq!(
        pair.server.delivered.len(),
        0,
        "nothing wrong was delivered"
    );
}

#[test]
fn a_probe_keeps_a_healthy_link_and_condemns_a_silent_one_fast() {
    let config = Config::default();
    let mut pair = Pair::new(config.clone());
    pair.connect();
    pair.settle();
    // Healthy: the pong answers the probe, the link stays.
    pair.client.session.probe_link(pair.now);
    pair.settle();
    pair.advance(config.probe_timeout * 2);
    pair.settle();
    assert_eq!(pair.client.session.stats().links_established, 1);
    assert!(pair.client.link.is_some());

    // Silent (the address it used is gone): dead within the probe
    // timeout, long before the link timeout.
    pair.auto_reconnect = false;
    pair.plan_cut(0, 0, Cut::Blackhole);
    let start = pair.now;
    pair.client.session.probe_link(pair.now);
    pair.run_until(config.link_timeout, |p| p.client.link.is_none());
    assert!(
        pair.now - start <= config.probe_timeout,
        "took {:?}",
        pair.now - start
    );
    assert!(pair.client.events.iter().any(|e| matches!(
        e,
        Event::LinkDown {
            error: LinkError::Unanswered(_),
            ..
        }
    )));
}

/// A frame whose header went out must be completed from the replay buffer
/// even when an ack for its bytes arrives meanwhile (the peer got them on
/// an older link): acknowledged bytes stay until no link needs them.
#[test]
fn an_ack_arriving_mid_frame_does_not_cut_the_frame() {
    let now = std::time::Instant::now();
    let (mut client, mut server, c1, s1) = linked(now, Config::default());
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(client.write(&data), data.len());
    let held = transmit_all(&mut client, c1);

    // Link 2: the server's hello says it holds nothing yet.
    let c2 = client.open_link(now, [3; 32]);
    let s2 = server.accept_link(now, [4; 32]);
    let hello = transmit_all(&mut client, c2);
    server.handle_link_input(now, s2, &hello);
    let reply = transmit_all(&mut server, s2);
    client.handle_link_input(now, c2, &reply);
    assert_eq!(client.current_link(), Some(c2));

    // The client's proof and the start of its resend: cut 100 bytes into
    // the first data frame's payload.
    let mut partial = Vec::new();
    let mut pending = Vec::new();
    while partial.len() < 300 {
        let out = client.poll_transmit(c2);
        assert!(!out.is_empty(), "the resend is queued");
        let (n, whole) = (out.len().min(300 - partial.len()), out.len());
        partial.extend_from_slice(&out[..n]);
        client.advance_transmit(c2, n);
        if n < whole {
            break;
        }
    }
    // The held bytes reach the server on link 1, then link 2's proof and
    // partial frame: the server acks all 50,000 on link 2.
    server.handle_link_input(now, s1, &held);
    server.handle_link_input(now, s2, &partial);
    assert_eq!(server.current_link(), Some(s2));
    let acks = transmit_all(&mut server, s2);
    client.handle_link_input(now, c2, &acks);
    assert_eq!(client.stats().acked, data.len() as u64);

    // The rest of the frame still comes from the replay buffer, intact.
    pending.extend_from_slice(&transmit_all(&mut client, c2));
    server.handle_link_input(now, s2, &pending);
    assert_eq!(server.current_link(), Some(s2), "the frame arrived whole");
    let mut got = vec![0u8; 200_000];
    let n = server.read(&mut got);
    assert_eq!(&got[..n], &data[..], "delivered once, intact");
    // Nothing needs the bytes any more: the replay buffer is empty.
    let out = transmit_all(&mut client, c2);
    server.handle_link_input(now, s2, &out);
    assert_eq!(client.stats().replay_buffered, 0);
}

#[test]
fn an_answer_carries_the_ack_of_what_it_answers() {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.settle_reading();
    let before = pair.client.session.stats().acked;
    // A keystroke: below the ACK threshold, so no ACK of its own yet (its
    // timer runs, and no time passes here).
    pair.client.write(1);
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len(), 1);
    assert_eq!(pair.client.session.stats().acked, before);
    // The echo goes back with the ACK in front of it.
    pair.server.write(1);
    pair.settle_reading();
    assert_eq!(pair.client.delivered.len(), 1);
    assert_eq!(pair.client.session.stats().acked, before + 1);
    // Nothing was left for the ACK timer to send.
    assert!(
        pair.server
            .session
            .poll_timeout()
            .is_none_or(|t| t > pair.now + Config::default().ack_delay),
        "the server's ACK timer was cleared"
    );
}

/// A link that falls silent is stalled after one and a half heartbeat
/// intervals (no sooner), and the engine says when to look; a spare link
/// opened beside it leaves it carrying the stream until the spare is
/// established, then supersedes it — with the old link's held data
/// arriving in the middle of the switch, nothing is lost or delivered
/// twice.
#[test]
fn a_spare_link_takes_over_from_a_silent_one() {
    let now = std::time::Instant::now();
    let config = Config::default();
    let beat = config.heartbeat_interval;
    let (mut client, mut server, c1, s1) = linked(now, config);
    assert_eq!(client.current_link(), Some(c1));
    assert!(!client.is_stalled(now));
    assert!(!server.is_stalled(now + beat * 10), "only a client dials");

    // Data goes out on link 1 and is held in the network: silence.
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13) as u8).collect();
    assert_eq!(client.write(&data), data.len());
    let held = transmit_all(&mut client, c1);
    let stall = now + beat * 3 / 2;
    assert!(!client.is_stalled(stall - Duration::from_millis(1)));
    assert!(
        client.poll_timeout().is_some_and(|t| t <= stall),
        "the engine asks to be looked at when the stall begins"
    );
    assert!(client.is_stalled(stall));

    let c2 = client.open_spare_link(stall, [3; 32]);
    assert_eq!(
        client.current_link(),
        Some(c1),
        "the old link still carries"
    );
    let s2 = server.accept_link(stall, [4; 32]);
    let hello = transmit_all(&mut client, c2);
    server.handle_link_input(stall, s2, &hello);
    // Half the held data reaches the server on the old link now.
    server.handle_link_input(stall, s1, &held[..held.len() / 2]);
    for _ in 0..10 {
        let out = transmit_all(&mut server, s2);
        client.handle_link_input(stall, c2, &out);
        let out = transmit_all(&mut client, c2);
        server.handle_link_input(stall, s2, &out);
    }
    assert_eq!(client.current_link(), Some(c2));
    assert_eq!(server.current_link(), Some(s2));
    let mut superseded = false;
    while let Some(e) = client.poll_event() {
        superseded |= e
            == Event::LinkDown {
                link: c1,
                error: LinkError::Superseded,
            };
    }
    assert!(superseded, "the silent link is let go once the spare is up");
    assert!(
        !client.is_stalled(stall + beat),
        "the new link heard lately"
    );
    let mut got = vec![0u8; 200_000];
    let n = server.read(&mut got);
    assert_eq!(&got[..n], &data[..], "delivered twice or lost");
}

/// The send window limits what the application may have unacknowledged,
/// within the replay bound and no lower than MIN_SEND_WINDOW; lowering it
/// below what is held drops nothing, it only holds the application back.
#[test]
fn the_send_window_bounds_the_replay_buffer_and_drops_nothing() {
    use crate::MIN_SEND_WINDOW;
    let mut pair = Pair::new(Config::default());
    let bound = Config::default().replay_bound;
    let s = &mut pair.client.session;
    assert_eq!(s.send_window(), bound, "the whole bound by default");
    s.set_send_window(1);
    assert_eq!(s.send_window(), MIN_SEND_WINDOW, "never below the minimum");
    s.set_send_window(usize::MAX);
    assert_eq!(s.send_window(), bound, "never above the bound");
    let data = vec![5u8; bound];
    assert_eq!(s.write(&data), bound);
    s.set_send_window(MIN_SEND_WINDOW);
    assert_eq!(s.write_capacity(), 0);
    assert_eq!(s.stats().replay_buffered, bound, "nothing dropped");
    pair.connect();
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len(), bound, "every byte arrives");
    assert_eq!(pair.client.session.write_capacity(), MIN_SEND_WINDOW);
}
