//! Session resumption: what a client and a brick server add to their handshake so that a
//! client that reconnects within the brick's `grace-timeout` gets back the open files and
//! locks it left (see docs/ARCHITECTURE.md, "Reconnects").
//!
//! Both additions are **trailers**: fixed-size bytes after the postcard message in a
//! handshake frame's metadata. A postcard decoder reads a message and ignores what
//! follows, so a peer that knows nothing of them decodes the handshake as before:
//! - the client appends [`CLIENT_MAGIC`] and its 16-byte [`SessionId`] to its
//!   `Handshake` (24 bytes);
//! - the server appends [`SERVER_MAGIC`] and one byte (1: the session was resumed, 0: a
//!   new session) to its `HandshakeReply::Accepted` (9 bytes).
//!
//! A server that sends no trailer, or a client whose handshake has none, gets a new
//! session every time (and a client without an id has nothing kept for it).

use bytes::{BufMut, Bytes, BytesMut};

/// Marks a client handshake's session trailer.
pub const CLIENT_MAGIC: [u8; 8] = *b"WEFTSID1";
/// Marks a client's request for upcalls (cache invalidations): 8 bytes just before the
/// session trailer, so an older server, which reads only the last 24 bytes, is unaffected.
pub const UPCALL_MAGIC: [u8; 8] = *b"WEFTUPC1";
/// Marks a server handshake reply's session trailer.
pub const SERVER_MAGIC: [u8; 8] = *b"WEFTRSM1";

/// A random identity a `protocol/client` draws when it starts and sends in every
/// handshake, so the brick can tell its reconnection from a new client. A new process
/// (or a new protocol/client in the same process) draws a new one and inherits nothing,
/// whatever its name. It is a bearer secret: whoever presents it (and passes the brick's
/// address, TLS and certificate checks) gets the session back, so it is never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id (from the operating system's random source, as UUID v4).
    pub fn random() -> SessionId {
        SessionId(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the id itself: it lets its holder take the session over.
        f.write_str("SessionId(..)")
    }
}

/// `meta` (an encoded `Handshake`) followed by the session trailer for `id`.
pub fn with_session_id(meta: &[u8], id: SessionId) -> Bytes {
    let mut b = BytesMut::with_capacity(meta.len() + 24);
    b.put_slice(meta);
    b.put_slice(&CLIENT_MAGIC);
    b.put_slice(&id.0);
    b.freeze()
}

/// `meta` (an encoded `Handshake`) followed by the upcall request, then the session
/// trailer for `id`.
pub fn with_upcalls_and_session_id(meta: &[u8], id: SessionId) -> Bytes {
    let mut b = BytesMut::with_capacity(meta.len() + 32);
    b.put_slice(meta);
    b.put_slice(&UPCALL_MAGIC);
    b.put_slice(&CLIENT_MAGIC);
    b.put_slice(&id.0);
    b.freeze()
}

/// Whether a handshake's metadata asks for upcalls (the marker just before a session
/// trailer).
pub fn wants_upcalls(meta: &[u8]) -> bool {
    session_id(meta).is_some()
        && meta
            .len()
            .checked_sub(32)
            .and_then(|at| meta.get(at..at + 8))
            == Some(&UPCALL_MAGIC[..])
}

/// The session id at the end of a handshake's metadata, if it has the trailer.
pub fn session_id(meta: &[u8]) -> Option<SessionId> {
    let at = meta.len().checked_sub(24)?;
    let tail = meta.get(at..)?;
    if tail.get(..8)? != CLIENT_MAGIC {
        return None;
    }
    let id: [u8; 16] = tail.get(8..)?.try_into().ok()?;
    Some(SessionId(id))
}

/// `meta` (an encoded `HandshakeReply::Accepted`) followed by the resumption trailer.
pub fn with_resumed(meta: &[u8], resumed: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(meta.len() + 9);
    b.put_slice(meta);
    b.put_slice(&SERVER_MAGIC);
    b.put_u8(u8::from(resumed));
    b.freeze()
}

/// Whether a handshake reply says the session was resumed (`false` without a trailer).
pub fn resumed(meta: &[u8]) -> bool {
    let Some(at) = meta.len().checked_sub(9) else {
        return false;
    };
    meta.get(at..at + 8) == Some(&SERVER_MAGIC[..]) && meta.get(at + 8) == Some(&1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::msg::{self, Handshake, HandshakeReply};
    use weft_wire::Kind;

    #[test]
    fn trailers_round_trip_and_old_decoders_ignore_them() {
        let hs = Handshake {
            brick: "b".into(),
            client_name: "h:1:c".into(),
        };
        let id = SessionId::random();
        let meta = with_session_id(&msg::encode(&hs), id);
        assert_eq!(session_id(&meta), Some(id));
        assert_eq!(
            msg::decode::<Handshake>(Kind::Handshake, &meta).unwrap(),
            hs
        );
        assert_eq!(session_id(&msg::encode(&hs)), None);
        assert_eq!(session_id(b""), None);
        assert_ne!(SessionId::random(), id);
        assert_eq!(format!("{id:?}"), "SessionId(..)");

        let ok = HandshakeReply::Accepted {
            server_version: "1.0".into(),
        };
        for r in [true, false] {
            let meta = with_resumed(&msg::encode(&ok), r);
            assert_eq!(resumed(&meta), r);
            assert_eq!(
                msg::decode::<HandshakeReply>(Kind::HandshakeReply, &meta).unwrap(),
                ok
            );
        }
        assert!(!resumed(&msg::encode(&ok)));
        assert!(!resumed(b"x"));
    }
}
