//! Engine.IO text frames: any input decodes to a packet or a `CodecError`, never a panic; and
//! what the client encodes round-trips: a message decodes to the same message after
//! re-encoding, and a ping's data comes back in the pong the client answers with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::engineio::{self, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match engineio::decode_text(text) {
        Ok(Packet::Message(m)) => {
            let again = engineio::encode_message(m.len(), |out| out.push_str(m));
            assert_eq!(engineio::decode_text(&again), Ok(Packet::Message(m)));
        }
        Ok(Packet::Ping(d)) => {
            let pong = engineio::encode_pong(d);
            assert_eq!(engineio::decode_text(&pong), Ok(Packet::Pong(d)));
        }
        _ => {}
    }
});
