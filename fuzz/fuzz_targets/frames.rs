//! Fuzzes the frame decoder of an established link: decodes frame after
//! frame from arbitrary bytes, and checks that each decoded frame encodes
//! back to exactly the bytes it came from and that `check` agrees with
//! `decode` about its length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rock_proto::wire::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let mut out = Vec::new();
    loop {
        match wire::decode(buf) {
            Ok(Some((frame, used))) => {
                assert!((wire::HEADER_LEN..=wire::MAX_FRAME).contains(&used));
                assert!(used <= buf.len());
                assert_eq!(wire::check(buf), Ok(Some(used)));
                // A frame's strict prefixes are incomplete, never errors.
                for cut in (0..=wire::HEADER_LEN).chain([used - 1]) {
                    if cut < used {
                        assert_eq!(wire::check(&buf[..cut]), Ok(None), "prefix {cut}");
                    }
                }
                if let Frame::Data(payload) = frame {
                    assert!(!payload.is_empty() && payload.len() <= wire::MAX_DATA);
                }
                out.clear();
                wire::encode(&frame, &mut out);
                assert_eq!(out.as_slice(), &buf[..used], "re-encoding {frame:?}");
                buf = &buf[used..];
            }
            // Waiting for more is only allowed while a whole frame could
            // still fit: no declared length escapes its limit.
            Ok(None) => {
                assert!(buf.len() < wire::MAX_FRAME);
                break;
            }
            Err(_) => break,
        }
    }
});
