//! Fuzzes the handshake decoders: arbitrary bytes as a client hello, a
//! server reply and a client proof, and as a whole transcript. What decodes
//! must encode back to the same bytes; "incomplete" is only allowed below
//! the message's size; verifying hostile proofs fails without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rock_proto::SessionKey;
use rock_proto::handshake::{
    CLIENT_AUTH_LEN, CLIENT_HELLO_LEN, ClientAuth, ClientHello, REJECT_LEN, SERVER_HELLO_LEN,
    SUPPORTED_VERSIONS, ServerReply,
};

fuzz_target!(|data: &[u8]| {
    let key = SessionKey([0x42; 32]);

    match ClientHello::decode(data) {
        Ok(Some(h)) => {
            assert_eq!(&h.encode()[..], &data[..CLIENT_HELLO_LEN]);
            if let Some(v) = SUPPORTED_VERSIONS.negotiate(h.versions) {
                assert!(h.versions.contains(v) && SUPPORTED_VERSIONS.contains(v));
            }
        }
        Ok(None) => assert!(data.len() < CLIENT_HELLO_LEN),
        Err(_) => {}
    }

    match ServerReply::decode(data) {
        Ok(Some((ServerReply::Hello(sh), used))) => {
            assert_eq!(used, SERVER_HELLO_LEN);
            assert_eq!(&sh.encode()[..], &data[..used]);
        }
        Ok(Some((ServerReply::Reject(r), used))) => {
            assert_eq!(used, REJECT_LEN);
            assert_eq!(&r.encode()[..], &data[..used]);
        }
        Ok(None) => assert!(data.len() < SERVER_HELLO_LEN),
        Err(_) => {}
    }

    match ClientAuth::decode(data) {
        Ok(Some(a)) => assert_eq!(&a.encode()[..], &data[..CLIENT_AUTH_LEN]),
        Ok(None) => assert!(data.len() < CLIENT_AUTH_LEN),
        Err(_) => {}
    }

    // The input read as a whole transcript, hello, reply and proof back to
    // back: verifying hostile proofs fails cleanly (the fuzzer does not
    // hold the key).
    if let Ok(Some(h)) = ClientHello::decode(data) {
        let rest = &data[CLIENT_HELLO_LEN..];
        if let Ok(Some((ServerReply::Hello(sh), used))) = ServerReply::decode(rest) {
            assert!(sh.verify(&key, &h).is_err());
            if let Ok(Some(a)) = ClientAuth::decode(&rest[used..]) {
                assert!(a.verify(&key, &h, &sh).is_err());
            }
        }
    }
});
