//! Hostile links against a live session: each is refused with its own error,
//! and the live link keeps carrying the stream without loss or duplication.

use std::time::Duration;

use super::util::{ID, Pair, key};
use crate::handshake::{
    CLIENT_HELLO_LEN, ClientAuth, ClientHello, RejectReason, ServerHello, ServerReply,
};
use crate::{
    Config, Event, HandshakeError, LinkError, LinkId, Role, Session, SessionId, SessionKey,
    VersionRange,
};

/// A live pair with some traffic already delivered.
fn live_pair() -> Pair {
    let mut pair = Pair::new(Config::default());
    pair.connect();
    pair.client.write(50_000);
    pair.server.write(50_000);
    pair.settle_reading();
    pair
}

/// Opens an attacker link on the pair's server and feeds it `bytes`;
/// returns the link and what the server answered.
fn attack(pair: &mut Pair, bytes: &[u8]) -> (LinkId, Vec<u8>) {
    let nonce = pair.nonce();
    let link = pair.server.session.accept_link(pair.now, nonce);
    pair.server.session.handle_link_input(pair.now, link, bytes);
    let reply = pair.server.session.poll_transmit(link).to_vec();
    pair.server.session.advance_transmit(link, reply.len());
    (link, reply)
}

/// The error the server reported for `link`, if it went down.
fn down_reason(pair: &mut Pair, link: LinkId) -> Option<LinkError> {
    pair.step();
    pair.server.events.iter().find_map(|e| match e {
        Event::LinkDown { link: l, error } if *l == link => Some(error.clone()),
        _ => None,
    })
}

/// The live session is untouched: same link, and more traffic still flows
/// exactly once.
fn assert_unharmed(pair: &mut Pair) {
    let current = pair.server.session.current_link();
    assert!(current.is_some());
    assert_eq!(current, pair.server.link, "the live link was displaced");
    pair.client.write(100_000);
    pair.server.write(100_000);
    pair.settle_reading();
    assert_eq!(pair.server.session.current_link(), current);
    assert_eq!(pair.server.delivered.len() as u64, pair.client.written);
    assert_eq!(pair.client.delivered.len() as u64, pair.server.written);
    pair.server.assert_delivered_prefix_of(&pair.client);
    pair.client.assert_delivered_prefix_of(&pair.server);
}

fn hello_with(session: SessionId, versions: VersionRange, nonce: [u8; 32]) -> ClientHello {
    ClientHello {
        versions,
        session,
        nonce,
    }
}

fn server_hello(reply: &[u8]) -> ServerHello {
    match ServerReply::decode(reply) {
        Ok(Some((ServerReply::Hello(sh), _))) => sh,
        other => panic!("expected a server hello, got {other:?}"),
    }
}

#[test]
fn wrong_key_is_refused_by_the_server() {
    let mut pair = live_pair();
    let ch = hello_with(ID, crate::handshake::SUPPORTED_VERSIONS, [9; 32]);
    let (link, reply) = attack(&mut pair, &ch.encode());
    let sh = server_hello(&reply);
    let wrong = SessionKey([0x13; 32]);
    let ca = ClientAuth::new(&wrong, &ch, &sh, 0);
    pair.server
        .session
        .handle_link_input(pair.now, link, &ca.encode());
    assert_eq!(
        down_reason(&mut pair, link),
        Some(LinkError::Handshake(HandshakeError::BadProof))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn wrong_key_is_refused_by_the_client() {
    let mut pair = live_pair();
    // An impostor server, with another key, answers a real client.
    let now = pair.now;
    let mut client = Session::new(Role::Client, ID, key(), Config::default(), now).unwrap();
    let mut impostor = Session::new(
        Role::Server,
        ID,
        SessionKey([0x13; 32]),
        Config::default(),
        now,
    )
    .unwrap();
    let c = client.open_link(now, [1; 32]);
    let s = impostor.accept_link(now, [2; 32]);
    let ch = client.poll_transmit(c).to_vec();
    impostor.handle_link_input(now, s, &ch);
    let sh = impostor.poll_transmit(s).to_vec();
    client.handle_link_input(now, c, &sh);
    assert_eq!(
        client.poll_event(),
        Some(Event::LinkDown {
            link: c,
            error: LinkError::Handshake(HandshakeError::BadProof)
        })
    );
    assert_unharmed(&mut pair);
}

#[test]
fn a_recorded_handshake_replayed_byte_for_byte_is_refused() {
    let mut pair = live_pair();
    // Record a real resumption, then replay the client's bytes.
    pair.drop_transport(true);
    pair.settle_reading();
    let (recorded, _) = pair.recordings.last().cloned().unwrap();
    let (link, reply) = attack(&mut pair, &recorded);
    assert!(reply.is_empty(), "a replayed hello must get no answer");
    assert_eq!(
        down_reason(&mut pair, link),
        Some(LinkError::Handshake(HandshakeError::ReplayedHello))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn a_recorded_proof_under_a_fresh_hello_is_refused() {
    let mut pair = live_pair();
    let (recorded, _) = {
        pair.drop_transport(true);
        pair.settle_reading();
        pair.recordings.last().cloned().unwrap()
    };
    let old_auth =
        &recorded[CLIENT_HELLO_LEN..CLIENT_HELLO_LEN + crate::handshake::CLIENT_AUTH_LEN];
    let fresh = hello_with(ID, crate::handshake::SUPPORTED_VERSIONS, [0xaa; 32]);
    let (link, reply) = attack(&mut pair, &fresh.encode());
    assert!(!reply.is_empty());
    pair.server
        .session
        .handle_link_input(pair.now, link, old_auth);
    assert_eq!(
        down_reason(&mut pair, link),
        Some(LinkError::Handshake(HandshakeError::BadProof))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn a_reflected_proof_is_refused() {
    let mut pair = live_pair();
    let ch = hello_with(ID, crate::handshake::SUPPORTED_VERSIONS, [0xbb; 32]);
    let (link, reply) = attack(&mut pair, &ch.encode());
    let sh = server_hello(&reply);
    let reflected = ClientAuth::reflected_for_tests(&key(), &ch, &sh, 0);
    pair.server
        .session
        .handle_link_input(pair.now, link, &reflected.encode());
    assert_eq!(
        down_reason(&mut pair, link),
        Some(LinkError::Handshake(HandshakeError::ReflectedProof))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn a_hello_for_another_session_is_rejected() {
    let mut pair = live_pair();
    let ch = hello_with(
        SessionId([0x77; 16]),
        crate::handshake::SUPPORTED_VERSIONS,
        [0xcc; 32],
    );
    let (link, reply) = attack(&mut pair, &ch.encode());
    match ServerReply::decode(&reply) {
        Ok(Some((ServerReply::Reject(r), _))) => {
            assert_eq!(r.reason, RejectReason::UnknownSession)
        }
        other => panic!("expected a reject, got {other:?}"),
    }
    assert_eq!(
        down_reason(&mut pair, link),
        Some(LinkError::Handshake(HandshakeError::UnknownSession))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn an_unsupported_version_is_rejected_on_both_sides() {
    let client = Config {
        versions: VersionRange { min: 2, max: 2 },
        ..Config::default()
    };
    let mut pair = Pair::with_configs(client, Config::default());
    pair.auto_reconnect = false;
    pair.connect();
    pair.settle();
    let expected = HandshakeError::UnsupportedVersion {
        ours: VersionRange { min: 2, max: 2 },
        theirs: VersionRange { min: 1, max: 1 },
    };
    assert!(pair.client.events.iter().any(|e| matches!(
        e,
        Event::LinkDown { error: LinkError::Handshake(h), .. } if *h == expected
    )));
    assert!(pair.server.events.iter().any(|e| matches!(
        e,
        Event::LinkDown {
            error: LinkError::Handshake(HandshakeError::UnsupportedVersion { .. }),
            ..
        }
    )));
    assert_eq!(pair.server.session.stats().links_established, 0);
}

#[test]
fn garbage_and_silence_are_refused_promptly() {
    let mut pair = live_pair();
    let (garbage, reply) = attack(&mut pair, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.is_empty());
    assert!(matches!(
        down_reason(&mut pair, garbage),
        Some(LinkError::Handshake(HandshakeError::Decode(_)))
    ));
    let (silent, _) = attack(&mut pair, b"");
    // Time passes with the live link's heartbeats flowing.
    pair.run_until(Config::default().handshake_timeout, |_| false);
    assert_eq!(
        down_reason(&mut pair, silent),
        Some(LinkError::Handshake(HandshakeError::Timeout))
    );
    assert_unharmed(&mut pair);
}

#[test]
fn a_flood_of_half_open_links_cannot_starve_the_session() {
    let mut pair = live_pair();
    let max = Config::default().max_pending_links;
    let flood: Vec<LinkId> = (0..max + 20)
        .map(|_| attack(&mut pair, b"ROCK").0)
        .collect();
    pair.step();
    let dropped = pair
        .server
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::LinkDown {
                    error: LinkError::TooManyPending,
                    ..
                }
            )
        })
        .count();
    assert_eq!(dropped, 20);
    assert_eq!(pair.server.session.links().count(), max + 1);
    assert!(
        flood
            .iter()
            .rev()
            .take(max)
            .all(|l| pair.server.session.links().any(|x| x == *l))
    );
    assert_unharmed(&mut pair);
    // A legitimate reconnection still gets through the flood.
    pair.drop_transport(true);
    pair.settle_reading();
    assert_eq!(pair.server.session.stats().links_established, 2);
    pair.advance(Duration::from_secs(1));
}

#[test]
fn garbage_from_an_authenticated_peer_costs_a_link_not_the_session() {
    let mut pair = live_pair();
    let link = pair.server.link.unwrap();
    pair.server
        .session
        .handle_link_input(pair.now, link, &[0x99, 0, 0, 0, 0]);
    assert!(matches!(
        down_reason(&mut pair, link),
        Some(LinkError::Decode(_))
    ));
    pair.settle_reading();
    pair.client.write(10_000);
    pair.settle_reading();
    assert_eq!(pair.server.delivered.len() as u64, pair.client.written);
    pair.server.assert_delivered_prefix_of(&pair.client);
    assert_eq!(pair.server.session.stats().links_established, 2);
}
