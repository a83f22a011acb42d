//! Frames: the unit a connection carries.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "WEFT" (0x57454654, big-endian)
//!      4     1  protocol major version
//!      5     1  protocol minor version
//!      6     1  message kind (see [`Kind`])
//!      7     1  flags (reserved, sent as 0, ignored on receipt)
//!      8     8  request id (big-endian; the reply carries the request's id)
//!     16     4  metadata length (big-endian, at most [`MAX_META`])
//!     20     4  data length (big-endian, at most [`MAX_DATA`])
//!     24     …  metadata (postcard), then data (raw bytes)
//! ```
//!
//! [`Frame::decode`] takes frames off the front of a receive buffer, refusing a bad magic,
//! an unknown kind or an absurd length as soon as the header is in, before any of the body
//! is buffered, so a peer cannot make a receiver allocate more than one maximal frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The first four bytes of every frame: "WEFT".
pub const MAGIC: u32 = 0x5745_4654;
/// The protocol's major version; peers of different majors cannot talk.
pub const VERSION_MAJOR: u8 = 1;
/// The protocol's minor version; newer minors only add what older peers may ignore.
pub const VERSION_MINOR: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;
/// Largest metadata part accepted (a readdirp reply or a big xattr map fits easily).
pub const MAX_META: u32 = 4 << 20;
/// Largest data part accepted (the largest read or write is 16 MiB).
pub const MAX_DATA: u32 = 16 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first frame: protocol version and the brick wanted.
    Handshake = 1,
    /// Server → client: accepted, or refused with a reason.
    HandshakeReply = 2,
    /// Client → server: one FOP.
    Request = 3,
    /// Server → client: the answer to the request with the same id.
    Reply = 4,
    /// Either way: are you there? Answered at once with `Pong`.
    Ping = 5,
    /// The answer to `Ping`.
    Pong = 6,
    /// Operator → server control socket: attach or detach a brick, list bricks.
    Control = 7,
    /// The answer to `Control`.
    ControlReply = 8,
    /// Server → client (minor 1): drop what is cached (`Vec<Invalidation>`); sent only to
    /// clients that asked for it in their handshake. Answered with `UpcallAck`, same id.
    Upcall = 9,
    /// Client → server (minor 1): the upcall with this id has been handled.
    UpcallAck = 10,
}

impl Kind {
    /// The kind with wire value `v`.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Handshake,
            2 => Kind::HandshakeReply,
            3 => Kind::Request,
            4 => Kind::Reply,
            5 => Kind::Ping,
            6 => Kind::Pong,
            7 => Kind::Control,
            8 => Kind::ControlReply,
            9 => Kind::Upcall,
            10 => Kind::UpcallAck,
            _ => return None,
        })
    }
}

/// Why bytes received are not a frame. Every variant ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first bytes are not "WEFT": not a Weft peer, or the stream lost its place.
    #[error("bad magic {0:#010x} (not a Weft peer, or a corrupt stream)")]
    BadMagic(u32),
    /// The message kind is not one this version knows.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The metadata part is longer than [`MAX_META`].
    #[error("metadata length {0} exceeds the limit of {MAX_META} bytes")]
    MetaTooLong(u32),
    /// The data part is longer than [`MAX_DATA`].
    #[error("data length {0} exceeds the limit of {MAX_DATA} bytes")]
    DataTooLong(u32),
    /// The metadata part does not decode as the message its kind says.
    #[error("malformed {kind:?} message: {reason}")]
    BadMessage {
        /// The frame's kind.
        kind: Kind,
        /// What the decoder said.
        reason: String,
    },
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Sender's major protocol version.
    pub major: u8,
    /// Sender's minor protocol version.
    pub minor: u8,
    /// What the frame carries.
    pub kind: Kind,
    /// Reserved.
    pub flags: u8,
    /// The request this frame is or answers.
    pub id: u64,
    /// Length of the metadata part.
    pub meta_len: u32,
    /// Length of the data part.
    pub data_len: u32,
}

impl Header {
    /// Parses and checks a header: magic, kind and both lengths. The version is not
    /// checked here: the handshake answers a foreign major with a reason.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let mut b = &b[..];
        let magic = b.get_u32();
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let major = b.get_u8();
        let minor = b.get_u8();
        let k = b.get_u8();
        let kind = Kind::from_u8(k).ok_or(FrameError::UnknownKind(k))?;
        let flags = b.get_u8();
        let id = b.get_u64();
        let meta_len = b.get_u32();
        let data_len = b.get_u32();
        if meta_len > MAX_META {
            return Err(FrameError::MetaTooLong(meta_len));
        }
        if data_len > MAX_DATA {
            return Err(FrameError::DataTooLong(data_len));
        }
        Ok(Header {
            major,
            minor,
            kind,
            flags,
            id,
            meta_len,
            data_len,
        })
    }

    /// The header's wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut w = &mut out[..];
        w.put_u32(MAGIC);
        w.put_u8(self.major);
        w.put_u8(self.minor);
        w.put_u8(self.kind as u8);
        w.put_u8(self.flags);
        w.put_u64(self.id);
        w.put_u32(self.meta_len);
        w.put_u32(self.data_len);
        out
    }
}

/// One frame: header, metadata part and data part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header (lengths match `meta` and `data`).
    pub header: Header,
    /// The postcard-encoded message.
    pub meta: Bytes,
    /// Raw payload (read or write data), often empty.
    pub data: Bytes,
}

impl Frame {
    /// A frame of this protocol version. Senders must keep the parts within [`MAX_META`]
    /// and [`MAX_DATA`] (check with [`Frame::fits`]); a larger part would be refused by
    /// the peer.
    pub fn new(kind: Kind, id: u64, meta: Bytes, data: Bytes) -> Frame {
        debug_assert!(Frame::fits(meta.len(), data.len()));
        Frame {
            header: Header {
                major: VERSION_MAJOR,
                minor: VERSION_MINOR,
                kind,
                flags: 0,
                id,
                meta_len: meta.len() as u32,
                data_len: data.len() as u32,
            },
            meta,
            data,
        }
    }

    /// True when parts of these lengths fit in one frame.
    pub fn fits(meta_len: usize, data_len: usize) -> bool {
        meta_len <= MAX_META as usize && data_len <= MAX_DATA as usize
    }

    /// Takes one whole frame off the front of `buf`. `Ok(None)` means more bytes are
    /// needed (and `buf` has been given room for up to 1 MiB more of them);
    /// an error means the stream is not a valid Weft stream and must be closed.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&buf[..HEADER_LEN]);
        let header = Header::parse(&hb)?;
        let total = HEADER_LEN + header.meta_len as usize + header.data_len as usize;
        if buf.len() < total {
            // Grow as the bytes arrive, not by what the header claims: a peer that
            // announces 16 MiB and sends nothing costs at most 1 MiB.
            buf.reserve((total - buf.len()).min(1 << 20));
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let meta = buf.split_to(header.meta_len as usize).freeze();
        let data = buf.split_to(header.data_len as usize).freeze();
        Ok(Some(Frame { header, meta, data }))
    }

    /// The whole frame as one buffer (header, metadata, data).
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.meta.len() + self.data.len());
        out.put_slice(&self.header.to_bytes());
        out.put_slice(&self.meta);
        out.put_slice(&self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_in_pieces() {
        let f = Frame::new(
            Kind::Request,
            42,
            Bytes::from_static(b"meta"),
            Bytes::from_static(b"data!"),
        );
        let wire = f.encode();
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.put_u8(*b);
            let got = Frame::decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert!(got.is_none());
            } else {
                assert_eq!(got.unwrap(), f);
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_bad_headers_before_the_body() {
        let mut h = Frame::new(Kind::Ping, 1, Bytes::new(), Bytes::new()).header;
        h.data_len = u32::MAX;
        let mut buf = BytesMut::from(&h.to_bytes()[..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(FrameError::DataTooLong(u32::MAX))
        );
        let mut bytes = h.to_bytes();
        bytes[6] = 99;
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&bytes[..])),
            Err(FrameError::UnknownKind(99))
        );
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(FrameError::BadMagic(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }

        /// Frames that reach the decoder's every branch: a valid frame of any kind, then
        /// one header byte overwritten (magic, version, kind, flags, id or a length), a
        /// length set near or past its limit, or the stream cut short; the decoder must
        /// answer as an independent reading of the header says: the right error, `None`
        /// (nothing consumed) until the whole frame is there, or exactly that frame.
        #[test]
        fn mutated_valid_frames_decode_as_their_header_says(
            kind in 1u8..=8, id: u64, flags: u8,
            meta in proptest::collection::vec(any::<u8>(), 0..48),
            data in proptest::collection::vec(any::<u8>(), 0..48),
            mutation in 0u8..4, pos in 0usize..HEADER_LEN, byte: u8,
            len_pick in prop_oneof![
                Just(0u32), 0u32..96, Just(MAX_META), Just(MAX_META + 1),
                Just(MAX_DATA), Just(MAX_DATA + 1), any::<u32>()
            ],
            cut in 0usize..200, trailing in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut f = Frame::new(Kind::from_u8(kind).unwrap(), id, Bytes::from(meta), Bytes::from(data));
            f.header.flags = flags;
            let mut wire = f.encode().to_vec();
            match mutation {
                0 => wire[pos] = byte,
                1 => wire[16..20].copy_from_slice(&len_pick.to_be_bytes()),
                2 => wire[20..24].copy_from_slice(&len_pick.to_be_bytes()),
                _ => wire.truncate(cut.min(wire.len())),
            }
            wire.extend_from_slice(&trailing);
            let mut buf = BytesMut::from(&wire[..]);
            let got = Frame::decode(&mut buf);
            if wire.len() < HEADER_LEN {
                prop_assert_eq!(got, Ok(None));
                prop_assert_eq!(buf.len(), wire.len());
                return Ok(());
            }
            let be32 = |at: usize| u32::from_be_bytes(wire[at..at + 4].try_into().unwrap());
            let (magic, k, meta_len, data_len) = (be32(0), wire[6], be32(16), be32(20));
            if magic != MAGIC {
                prop_assert_eq!(got, Err(FrameError::BadMagic(magic)));
            } else if Kind::from_u8(k).is_none() {
                prop_assert_eq!(got, Err(FrameError::UnknownKind(k)));
            } else if meta_len > MAX_META {
                prop_assert_eq!(got, Err(FrameError::MetaTooLong(meta_len)));
            } else if data_len > MAX_DATA {
                prop_assert_eq!(got, Err(FrameError::DataTooLong(data_len)));
            } else {
                let total = HEADER_LEN + meta_len as usize + data_len as usize;
                if wire.len() < total {
                    prop_assert_eq!(got, Ok(None));
                    prop_assert_eq!(buf.len(), wire.len());
                } else {
                    let fr = got.unwrap().unwrap();
                    prop_assert_eq!(fr.header.kind as u8, k);
                    prop_assert_eq!((fr.header.major, fr.header.minor, fr.header.flags), (wire[4], wire[5], wire[7]));
                    prop_assert_eq!(fr.header.id, u64::from_be_bytes(wire[8..16].try_into().unwrap()));
                    let m_end = HEADER_LEN + meta_len as usize;
                    prop_assert_eq!(&fr.meta[..], &wire[HEADER_LEN..m_end]);
                    prop_assert_eq!(&fr.data[..], &wire[m_end..total]);
                    prop_assert_eq!(&buf[..], &wire[total..]);
                }
            }
        }

        #[test]
        fn any_frame_round_trips(id: u64, meta in proptest::collection::vec(any::<u8>(), 0..64),
                                 data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let f = Frame::new(Kind::Reply, id, Bytes::from(meta), Bytes::from(data));
            let mut buf = f.encode();
            prop_assert_eq!(Frame::decode(&mut buf).unwrap().unwrap(), f);
        }
    }
}
