//! Feeds arbitrary bytes straight to every message decoder (the first byte picks which),
//! bypassing the frame header so the fuzzer reaches the postcard decoding of every request
//! and reply kind. Nothing may panic; a message that decodes must encode and decode again to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weft_wire::msg::{
    self, ControlReply, ControlRequest, Handshake, HandshakeReply, Request, Response, UpcallMsg,
};
use weft_wire::Kind;

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(kind: Kind, meta: &[u8]) {
    if let Ok(m) = msg::decode::<T>(kind, meta) {
        let again = msg::encode(&m);
        let back = msg::decode::<T>(kind, &again).expect("a decoded message re-decodes");
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, meta)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => round_trip::<Handshake>(Kind::Handshake, meta),
        1 => round_trip::<HandshakeReply>(Kind::HandshakeReply, meta),
        2 => round_trip::<Request>(Kind::Request, meta),
        3 => round_trip::<Response>(Kind::Reply, meta),
        4 => round_trip::<ControlRequest>(Kind::Control, meta),
        5 => round_trip::<UpcallMsg>(Kind::Upcall, meta),
        _ => round_trip::<ControlReply>(Kind::ControlReply, meta),
    }
});
