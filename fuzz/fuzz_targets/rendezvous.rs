//! Fuzzes the rendezvous port's messages (what a host's rock supervisor
//! reads from the network, and what a rock client reads back): `check`
//! never claims more than it was given, parsing never panics, and whatever
//! parses encodes back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rock_proto::rendezvous::{self, LEN, Question, Reply};

fuzz_target!(|data: &[u8]| {
    match rendezvous::check(data) {
        Ok(Some(end)) => assert!(end == LEN && end <= data.len()),
        Ok(None) => assert!(data.len() < LEN),
        Err(_) => {}
    }
    if let Ok(question) = Question::parse(data) {
        assert_eq!(&question.encode()[..], &data[..LEN]);
    }
    if let Ok(reply) = Reply::parse(data) {
        assert_eq!(&reply.encode()[..], &data[..LEN]);
    }
});
