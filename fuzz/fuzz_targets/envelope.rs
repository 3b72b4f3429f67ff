//! JSON envelopes: any text is a validated message or a `CodecError`, never a panic; deep
//! nesting is refused by serde_json's recursion limit rather than overflowing the stack. An
//! app event with an id round-trips: encoded as the client encodes messages and decoded again,
//! it is the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::envelope::{self, Inbound};

/// Any valid timestamp: the decoder checks one is there; the event does not carry it.
const TS: &str = "2026-12-03T12:00:00.000Z";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = envelope::data_of(text);
    if let Ok(event @ Inbound::Event { id: Some(_), .. }) = envelope::decode(text) {
        let Inbound::Event {
            id: Some(id),
            kind,
            data,
        } = &event
        else {
            unreachable!()
        };
        let mut again = String::new();
        envelope::encode_message(&mut again, id, kind, TS, data, None);
        assert_eq!(envelope::decode(&again).as_ref(), Ok(&event), "{again}");
    }
});
