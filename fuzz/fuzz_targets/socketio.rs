//! Socket.IO packets through the stateful decoder: the input is cut at 0x00 into frames; a
//! frame starting with 0x01 is a binary attachment, any other a text packet. Every sequence
//! yields packets or `CodecError`s, never a panic, and the decoder stays usable after errors.
//! Every packet of a kind the client also encodes (event, ack, connect, disconnect)
//! round-trips: encoded again and decoded by a fresh decoder, it is the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulselink::codec::{
    engineio,
    socketio::{
        Decoder, Packet, encode_ack, encode_connect, encode_disconnect, encode_event, parse_header,
    },
};

/// `packet` encoded as the client would, then decoded by a fresh decoder.
fn round_trip(packet: &Packet) -> Option<Packet> {
    let mut text = String::new();
    let attachments = match packet {
        Packet::Event(e) => {
            encode_event(&mut text, &e.namespace, &e.name, &e.args, e.id, e.attachments.len());
            &e.attachments
        }
        Packet::Ack {
            namespace,
            id,
            args,
            attachments,
        } => {
            encode_ack(&mut text, namespace, *id, args, attachments.len());
            attachments
        }
        Packet::Connect { namespace, data } => {
            encode_connect(&mut text, namespace, data.as_ref());
            return Decoder::new().feed_text(&text).expect("re-encoded connect");
        }
        Packet::Disconnect { namespace } => {
            encode_disconnect(&mut text, namespace);
            return Decoder::new().feed_text(&text).expect("re-encoded disconnect");
        }
        Packet::ConnectError { .. } => return Some(packet.clone()), // the client never sends one
    };
    let mut decoder = Decoder::new();
    let mut decoded = decoder.feed_text(&text).expect("re-encoded packet decodes");
    for a in attachments {
        decoded = decoder.feed_binary(a.clone()).expect("re-encoded attachment decodes");
    }
    decoded
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    for frame in data.split(|&b| b == 0) {
        let decoded = match frame.split_first() {
            Some((1, attachment)) => decoder.feed_binary(attachment.to_vec()),
            _ => match std::str::from_utf8(frame) {
                Ok(text) => {
                    let _ = parse_header(text);
                    let _ = engineio::decode_text(text);
                    decoder.feed_text(text)
                }
                Err(_) => continue,
            },
        };
        if let Ok(Some(packet)) = decoded {
            assert_eq!(round_trip(&packet).as_ref(), Some(&packet), "round trip");
        }
    }
});
