//! Feeds arbitrary bytes to the frame decoder as a server would receive them (in pieces),
//! and decodes every frame's metadata as the message its kind says. Nothing may panic,
//! and the buffer never grows past a few MiB more than the bytes received, whatever
//! length a header claims.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_wire::msg::{
    self, ControlReply, ControlRequest, Handshake, HandshakeReply, Request, Response, UpcallMsg,
};
use weft_wire::{Frame, Kind};

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let mut buf = BytesMut::new();
    for piece in [&data[..split.min(data.len())], &data[split.min(data.len())..]] {
        buf.extend_from_slice(piece);
        loop {
            match Frame::decode(&mut buf) {
                Ok(Some(f)) => {
                    let m = &f.meta[..];
                    let _ = match f.header.kind {
                        Kind::Handshake => msg::decode::<Handshake>(f.header.kind, m).map(|_| ()),
                        Kind::HandshakeReply => msg::decode::<HandshakeReply>(f.header.kind, m).map(|_| ()),
                        Kind::Request => msg::decode::<Request>(f.header.kind, m).map(|_| ()),
                        Kind::Reply => msg::decode::<Response>(f.header.kind, m).map(|_| ()),
                        Kind::Control => msg::decode::<ControlRequest>(f.header.kind, m).map(|_| ()),
                        Kind::ControlReply => msg::decode::<ControlReply>(f.header.kind, m).map(|_| ()),
                        Kind::Upcall => msg::decode::<UpcallMsg>(f.header.kind, m).map(|_| ()),
                        Kind::Ping | Kind::Pong | Kind::UpcallAck => Ok(()),
                    };
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 2 * data.len() + (4 << 20));
    }
});
