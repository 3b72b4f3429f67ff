//! Engine.IO long-polling payloads (packets joined with 0x1e, binary as base64): any body
//! parses or fails cleanly; what parses re-encodes to a payload that parses to the same pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::polling;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pieces) = polling::decode_payload(body) else {
        return;
    };
    let mut again = String::new();
    for p in &pieces {
        polling::push_packet(&mut again, p);
    }
    let reparsed = polling::decode_payload(&again).expect("an encoded payload parses");
    assert_eq!(reparsed, pieces);
});
