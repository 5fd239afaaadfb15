//! Fuzzes the rendezvous port's messages (what a host's rock supervisor
//! reads from the network, and what a rock client reads back): `check`
//! never claims more than it was given, parsing never panics, and whatever
//! parses encodes back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rock_proto::rendezvous::{self, MAX_LEN, Question, Reply};

fuzz_target!(|data: &[u8]| {
    match rendezvous::check(data) {
        Ok(Some(end)) => assert!(end <= data.len() && end <= MAX_LEN),
        Ok(None) => assert!(data.len() < MAX_LEN),
        Err(_) => {}
    }
    if let Ok(question) = Question::parse(data) {
        let encoded = question.encode();
        assert_eq!(&encoded[..], &data[..encoded.len()]);
    }
    if let Ok(reply) = Reply::parse(data) {
        let encoded = reply.encode();
        assert_eq!(&encoded[..], &data[..encoded.len()]);
    }
});
