//! Socket.IO packets through the stateful decoder: the input is cut at 0x00 into frames; a
//! frame starting with 0x01 is a binary attachment, any other a text packet. Every sequence
//! yields packets or `CodecError`s, never a panic, and the decoder stays usable after errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::socketio::{Decoder, parse_header};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    for frame in data.split(|&b| b == 0) {
        match frame.split_first() {
            Some((1, attachment)) => {
                let _ = decoder.feed_binary(attachment.to_vec());
            }
            _ => {
                if let Ok(text) = std::str::from_utf8(frame) {
                    let _ = parse_header(text);
                    let _ = decoder.feed_text(text);
                }
            }
        }
    }
});
