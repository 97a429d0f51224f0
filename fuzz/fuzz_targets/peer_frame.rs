//! The peer protocol's frame decoder on arbitrary bytes: an error or
//! messages, never a panic, and whatever decodes encodes back to a frame
//! that decodes to the same messages.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_net::peer::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = decode_frame("fuzz", Bytes::copy_from_slice(data)) {
        let again = decode_frame("fuzz", encode_frame("fuzz", &messages)).expect("re-encoded");
        assert_eq!(again, messages);
    }
});
