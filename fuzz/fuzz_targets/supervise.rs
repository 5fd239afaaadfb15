//! Fuzzes the lines `librocks.so` and its supervisor exchange: each line
//! `check` finds must parse as a request or an answer or be refused, and
//! whatever parses must encode back to a line that parses to the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rock_proto::supervise::{self, Answer, MAX_LINE, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match supervise::check(buf) {
            Ok(Some(end)) => {
                assert!(end <= MAX_LINE && end <= buf.len());
                let line = &buf[..end];
                if let Ok(request) = Request::parse(line) {
                    let again = request.encode();
                    assert!(again.len() <= MAX_LINE);
                    assert_eq!(Request::parse(again.as_bytes()), Ok(request));
                }
                if let Ok(answer) = Answer::parse(line) {
                    assert_eq!(Answer::parse(answer.encode().as_bytes()), Ok(answer));
                }
                buf = &buf[end..];
            }
            Ok(None) => {
                assert!(buf.len() < MAX_LINE);
                break;
            }
            Err(_) => break,
        }
    }
});
