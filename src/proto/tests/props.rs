//! Property: whatever the writes, reads, half-closes and cuts — at any byte,
//! mid-frame or mid-handshake, reset or blackholed, any number of times —
//! each side delivers exactly the bytes the other wrote, in order, once, and
//! each FIN once, after the last byte.

use std::time::Duration;

use proptest::prelude::*;

use super::util::{Cut, Pair};
use crate::Config;

#[derive(Debug, Clone)]
enum Op {
    Write {
        client: bool,
        len: usize,
    },
    Read {
        client: bool,
        max: usize,
    },
    Finish {
        client: bool,
    },
    /// Moves bytes without time passing and without the applications reading.
    Settle,
    /// The current transport carries this many more bytes each way, then dies.
    Cut {
        to_server: usize,
        to_client: usize,
        blackhole: bool,
    },
    /// Virtual time passes: heartbeats, delayed acks, dead-link detection.
    Wait {
        millis: u64,
    },
    /// The client reconnects while the old transport, which the server
    /// still trusts, keeps delivering what it held.
    Abandon,
}

fn budget() -> impl Strategy<Value = usize> {
    // Small budgets land inside the handshake (57 + 41 bytes one way,
    // 79 the other) and frame headers; large ones inside data.
    prop_oneof![0usize..200, 0usize..300_000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 1usize..100_000).prop_map(|(client, len)| Op::Write { client, len }),
        3 => (any::<bool>(), 1usize..100_000).prop_map(|(client, max)| Op::Read { client, max }),
        1 => any::<bool>().prop_map(|client| Op::Finish { client }),
        3 => Just(Op::Settle),
        2 => (budget(), budget(), any::<bool>()).prop_map(|(to_server, to_client, blackhole)| {
            Op::Cut { to_server, to_client, blackhole }
        }),
        1 => (0u64..15_000).prop_map(|millis| Op::Wait { millis }),
        1 => Just(Op::Abandon),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (1usize..200_000, 1usize..200_000, 1u64..100_000).prop_map(|(replay, receive, ack)| Config {
        replay_bound: replay,
        receive_bound: receive,
        ack_threshold: ack,
        ..Config::default()
    })
}

fn run(config: Config, ops: Vec<Op>) {
    let mut pair = Pair::new(config);
    pair.connect();
    for op in ops {
        match op {
            Op::Write { client: true, len } => {
                pair.client.write(len);
            }
            Op::Write { client: false, len } => {
                pair.server.write(len);
            }
            Op::Read { client: true, max } => {
                pair.client.read(max);
            }
            Op::Read { client: false, max } => {
                pair.server.read(max);
            }
            Op::Finish { client: true } => pair.client.session.finish(),
            Op::Finish { client: false } => pair.server.session.finish(),
            Op::Settle => pair.settle(),
            Op::Cut {
                to_server,
                to_client,
                blackhole,
            } => {
                let cut = if blackhole {
                    Cut::Blackhole
                } else {
                    Cut::Reset
                };
                pair.plan_cut(to_server, to_client, cut);
            }
            Op::Abandon => pair.abandon(),
            Op::Wait { millis } => {
                pair.settle();
                pair.advance(Duration::from_millis(millis));
            }
        }
        pair.client.assert_delivered_prefix_of(&pair.server);
        pair.server.assert_delivered_prefix_of(&pair.client);
    }

    // Heal: a fresh transport with no cut planned, then both ends finish.
    pair.connect();
    pair.finish_both();

    for (me, peer, name) in [
        (&pair.client, &pair.server, "client"),
        (&pair.server, &pair.client, "server"),
    ] {
        me.assert_delivered_prefix_of(peer);
        assert_eq!(
            me.delivered.len() as u64,
            peer.written,
            "{name} did not receive everything"
        );
        assert_eq!(
            me.fins,
            vec![peer.written],
            "{name} must see one FIN, after the last byte"
        );
    }
    for side in [&pair.client, &pair.server] {
        let finished = side
            .events
            .iter()
            .filter(|e| **e == crate::Event::Finished)
            .count();
        assert_eq!(finished, 1, "one Finished event per side");
        assert!(side.session.is_finished());
    }
    assert_eq!(
        pair.client.session.close_reason(),
        Some(&crate::CloseReason::Finished)
    );
    assert_eq!(
        pair.server.session.close_reason(),
        Some(&crate::CloseReason::Finished)
    );
}

proptest! {
    // Failures are kept inside this crate (tests run in its directory),
    // not beside it, where proptest's default would put them.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/tests/props.txt"
            )
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn exactly_once_in_order_across_any_cuts(
        config in config(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(config, ops);
    }
}

/// Cuts at every byte offset of the first 400 bytes each way, so every
/// position in the handshake and the first frames is hit deterministically.
#[test]
fn cut_at_every_early_offset() {
    for at in 0..400 {
        for (to_server, to_client) in [(at, usize::MAX >> 1), (usize::MAX >> 1, at), (at, at)] {
            run(
                Config::default(),
                vec![
                    Op::Write {
                        client: true,
                        len: 300,
                    },
                    Op::Write {
                        client: false,
                        len: 300,
                    },
                    Op::Cut {
                        to_server,
                        to_client,
                        blackhole: at % 2 == 0,
                    },
                    Op::Settle,
                    Op::Wait { millis: 7_000 },
                    Op::Finish { client: true },
                    Op::Settle,
                ],
            );
        }
    }
}
