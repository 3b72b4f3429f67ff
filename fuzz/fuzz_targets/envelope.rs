//! JSON envelopes: any text is a validated message or a `CodecError`, never a panic; deep
//! nesting is refused by serde_json's recursion limit rather than overflowing the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = envelope::decode(text);
        let _ = envelope::data_of(text);
    }
});
