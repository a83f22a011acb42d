//! Weft's wire protocol, shared by the brick server and `protocol/client`.
//!
//! A connection carries [`frame`]s: a fixed 24-byte header (magic, protocol version,
//! message kind, flags, request id, the lengths of the two parts that follow) then a
//! metadata part encoded with postcard and a raw data part. Read and write payloads travel
//! in the data part as they are, never re-encoded. The [`msg`] module defines what the
//! metadata part holds for each kind: the handshake, FOP requests and replies, control
//! requests.
//!
//! Everything here is pure (no I/O), so the decoder can be fuzzed on its own
//! (`crates/wire/fuzz`).

pub mod frame;
pub mod msg;

pub use frame::{Frame, FrameError, Header, Kind, HEADER_LEN, MAGIC, VERSION_MAJOR, VERSION_MINOR};
