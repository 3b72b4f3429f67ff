//! Engine.IO text frames: any input decodes to a packet or a `CodecError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::engineio;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = engineio::decode_text(text);
    }
});
