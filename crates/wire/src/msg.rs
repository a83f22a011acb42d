//! The messages frames carry in their metadata part, encoded with postcard.
//!
//! Open files are named on the wire by the number the server gave them in the reply to
//! `Open`, `Create` or `Opendir` ([`Reply::Opened`] / [`Reply::Created`]); numbers are per
//! connection. A `Writev` request and a `Readv` reply carry their bytes in the frame's
//! data part.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weft_core::{
    Checksum, Ctx, Dirent, EntrylkCmd, EntrylkType, Flock, Gfid, Iatt, LkCmd, Loc, SeekWhat,
    SetAttr, StatVfs, XattrMap, XattropOp, Xdata,
};

use crate::frame::{FrameError, Kind};

/// Largest `Rchecksum` length a server computes: GlusterFS's self-heal checksums 128 KiB
/// blocks, so 1 MiB leaves room while keeping the bytes one request makes the server read
/// and hold small. A longer request is refused with `EINVAL` before it reaches the brick
/// graph (and `protocol/client` refuses it before sending).
pub const MAX_RCHECKSUM_LEN: u32 = 1 << 20;

/// Largest `Readdir`/`Readdirp` size a server honours; a larger size is lowered to this
/// (a directory read may always return fewer entries than asked). Keeps one reply well
/// inside [`crate::frame::MAX_META`] and bounds what one request may make the server build.
pub const MAX_READDIR_SIZE: u32 = 1 << 20;

/// Encodes a message for a frame's metadata part, or says why it cannot be (the caller
/// fails that one request; nothing is sent).
pub fn try_encode<T: Serialize>(msg: &T) -> Result<bytes::Bytes, String> {
    postcard::to_allocvec(msg)
        .map(bytes::Bytes::from)
        .map_err(|e| e.to_string())
}

/// Encodes a message for a frame's metadata part.
pub fn encode<T: Serialize>(msg: &T) -> bytes::Bytes {
    // Serialising into a Vec cannot fail for these types (no maps with non-string keys,
    // no unsized sequences), so an error here is a bug, reported as an empty message that
    // the peer will refuse rather than a panic.
    bytes::Bytes::from(postcard::to_allocvec(msg).unwrap_or_default())
}

/// Decodes a frame's metadata part as the message its `kind` carries.
pub fn decode<T: DeserializeOwned>(kind: Kind, meta: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(meta).map_err(|e| FrameError::BadMessage {
        kind,
        reason: e.to_string(),
    })
}

/// What an `Upcall` frame carries: the invalidations, in the order the brick made them.
pub type UpcallMsg = Vec<weft_core::Invalidation>;

/// The first frame a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// The brick wanted: the name of the volume under `protocol/server` in the server's
    /// volfile (the client's `remote-subvolume`).
    pub brick: String,
    /// A name for the client in the server's logs (host and process).
    pub client_name: String,
}

/// The server's answer to a [`Handshake`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// Connected to the brick.
    Accepted {
        /// The server's protocol version, "major.minor".
        server_version: String,
    },
    /// Refused; the connection is closed after this frame.
    Refused {
        /// Why, for the client's operator (unknown brick, auth.reject, version, TLS).
        reason: String,
        /// What kind of refusal: EACCES for auth or TLS, ENOENT for a missing brick,
        /// EPROTO for a version mismatch. (FOPs of a refused client fail with ENOTCONN.)
        errno: i32,
    },
}

/// One FOP request: who asks, with which xdata, and the FOP with its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The caller (the server replaces `client` with the connection's own id).
    pub ctx: Ctx,
    /// The request's xdata.
    pub xdata: Xdata,
    /// The FOP.
    pub fop: FopRequest,
}

/// Every FOP with its arguments. Field names follow [`weft_core::Xlator`]'s parameters.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FopRequest {
    Lookup {
        loc: Loc,
    },
    Stat {
        loc: Loc,
    },
    Fstat {
        fd: u64,
    },
    Access {
        loc: Loc,
        mask: u32,
    },
    Setattr {
        loc: Loc,
        attr: SetAttr,
    },
    Fsetattr {
        fd: u64,
        attr: SetAttr,
    },
    Truncate {
        loc: Loc,
        size: u64,
    },
    Ftruncate {
        fd: u64,
        size: u64,
    },
    Readlink {
        loc: Loc,
    },
    Statfs {
        loc: Loc,
    },
    Mkdir {
        loc: Loc,
        mode: u32,
        umask: u32,
    },
    Rmdir {
        loc: Loc,
    },
    Unlink {
        loc: Loc,
    },
    Rename {
        old: Loc,
        new: Loc,
        flags: u32,
    },
    Link {
        old: Loc,
        new: Loc,
    },
    Symlink {
        #[serde(with = "weft_core::bytes_path")]
        target: PathBuf,
        loc: Loc,
        umask: u32,
    },
    Mknod {
        loc: Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
    },
    Open {
        loc: Loc,
        gfid: Gfid,
        flags: i32,
    },
    Create {
        loc: Loc,
        gfid: Gfid,
        flags: i32,
        mode: u32,
        umask: u32,
    },
    /// The data to write is the frame's data part.
    Writev {
        fd: u64,
        offset: u64,
    },
    Readv {
        fd: u64,
        size: u32,
        offset: u64,
    },
    Flush {
        fd: u64,
    },
    Fsync {
        fd: u64,
        datasync: bool,
    },
    Release {
        fd: u64,
    },
    Fallocate {
        fd: u64,
        mode: i32,
        offset: u64,
        len: u64,
    },
    Discard {
        fd: u64,
        offset: u64,
        len: u64,
    },
    Zerofill {
        fd: u64,
        offset: u64,
        len: u64,
    },
    Seek {
        fd: u64,
        offset: u64,
        what: SeekWhat,
    },
    Rchecksum {
        fd: u64,
        offset: u64,
        len: u32,
    },
    Opendir {
        loc: Loc,
        gfid: Gfid,
    },
    Readdir {
        fd: u64,
        size: u32,
        offset: u64,
    },
    Readdirp {
        fd: u64,
        size: u32,
        offset: u64,
    },
    Fsyncdir {
        fd: u64,
        datasync: bool,
    },
    Releasedir {
        fd: u64,
    },
    Getxattr {
        loc: Loc,
        name: Option<String>,
    },
    Fgetxattr {
        fd: u64,
        name: Option<String>,
    },
    Setxattr {
        loc: Loc,
        attrs: XattrMap,
        flags: i32,
    },
    Fsetxattr {
        fd: u64,
        attrs: XattrMap,
        flags: i32,
    },
    Removexattr {
        loc: Loc,
        name: String,
    },
    Fremovexattr {
        fd: u64,
        name: String,
    },
    Xattrop {
        loc: Loc,
        op: XattropOp,
        attrs: XattrMap,
    },
    Fxattrop {
        fd: u64,
        op: XattropOp,
        attrs: XattrMap,
    },
    Lk {
        fd: u64,
        cmd: LkCmd,
        lock: Flock,
    },
    Inodelk {
        domain: String,
        loc: Loc,
        cmd: LkCmd,
        lock: Flock,
    },
    Finodelk {
        domain: String,
        fd: u64,
        cmd: LkCmd,
        lock: Flock,
    },
    Entrylk {
        domain: String,
        loc: Loc,
        basename: Option<OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
    },
}

impl FopRequest {
    /// The FOP's name, for logs.
    pub fn name(&self) -> &'static str {
        use FopRequest::*;
        match self {
            Lookup { .. } => "lookup",
            Stat { .. } => "stat",
            Fstat { .. } => "fstat",
            Access { .. } => "access",
            Setattr { .. } => "setattr",
            Fsetattr { .. } => "fsetattr",
            Truncate { .. } => "truncate",
            Ftruncate { .. } => "ftruncate",
            Readlink { .. } => "readlink",
            Statfs { .. } => "statfs",
            Mkdir { .. } => "mkdir",
            Rmdir { .. } => "rmdir",
            Unlink { .. } => "unlink",
            Rename { .. } => "rename",
            Link { .. } => "link",
            Symlink { .. } => "symlink",
            Mknod { .. } => "mknod",
            Open { .. } => "open",
            Create { .. } => "create",
            Writev { .. } => "writev",
            Readv { .. } => "readv",
            Flush { .. } => "flush",
            Fsync { .. } => "fsync",
            Release { .. } => "release",
            Fallocate { .. } => "fallocate",
            Discard { .. } => "discard",
            Zerofill { .. } => "zerofill",
            Seek { .. } => "seek",
            Rchecksum { .. } => "rchecksum",
            Opendir { .. } => "opendir",
            Readdir { .. } => "readdir",
            Readdirp { .. } => "readdirp",
            Fsyncdir { .. } => "fsyncdir",
            Releasedir { .. } => "releasedir",
            Getxattr { .. } => "getxattr",
            Fgetxattr { .. } => "fgetxattr",
            Setxattr { .. } => "setxattr",
            Fsetxattr { .. } => "fsetxattr",
            Removexattr { .. } => "removexattr",
            Fremovexattr { .. } => "fremovexattr",
            Xattrop { .. } => "xattrop",
            Fxattrop { .. } => "fxattrop",
            Lk { .. } => "lk",
            Inodelk { .. } => "inodelk",
            Finodelk { .. } => "finodelk",
            Entrylk { .. } => "entrylk",
        }
    }
}

/// The answer to one [`Request`]: its value and xdata, or an errno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The reply's xdata (empty on error).
    pub xdata: Xdata,
    /// The value, or the errno the FOP failed with.
    pub result: Result<Reply, i32>,
}

/// The value of a successful FOP, by shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// FOPs that return nothing.
    Unit,
    /// Attributes (lookup, stat, setattr, mkdir, link, ...).
    Iatt(Iatt),
    /// A symlink's target.
    Path(#[serde(with = "weft_core::bytes_path")] PathBuf),
    /// Filesystem statistics.
    StatVfs(StatVfs),
    /// An open or opendir succeeded; later requests name the file by `fd`.
    Opened {
        /// The server's number for the open file on this connection.
        fd: u64,
    },
    /// A create succeeded.
    Created {
        /// The server's number for the open file on this connection.
        fd: u64,
        /// The new file's attributes.
        iatt: Iatt,
    },
    /// Read data: the bytes are the frame's data part.
    Data,
    /// Bytes written, or an offset (seek).
    Count(u64),
    /// Directory entries.
    Dirents(Vec<Dirent>),
    /// Extended attributes.
    Xattrs(XattrMap),
    /// A lock (the answer of `lk`).
    Flock(Flock),
    /// A range checksum.
    Checksum(Checksum),
}

/// A request on the brick server's control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Serve every `protocol/server` graph in this server volfile text.
    Attach {
        /// The volfile text.
        volfile: String,
    },
    /// Stop serving a brick: its clients are disconnected and its graph torn down.
    Detach {
        /// The brick's name (the volume under `protocol/server`).
        brick: String,
    },
    /// List the bricks served, with their client counts.
    Status,
    /// Every brick graph's statedump (each translator's state: locks held and waiting,
    /// open files, counters).
    Statedump,
    /// Apply the options of this server volfile to bricks already served, in place: every
    /// `protocol/server` graph in it must be served here with the same shape (translator
    /// names, types, subvolumes). Clients stay connected unless the new access policy
    /// refuses them. All or nothing: a refusal changes nothing. (Appended last so the
    /// encodings of the other variants do not change; an older server refuses it as a
    /// message it cannot decode.)
    Reconfigure {
        /// The volfile text.
        volfile: String,
    },
}

/// The answer on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// Done; the text says what was done (or lists bricks for `Status`).
    Ok(String),
    /// Refused; nothing changed (except a `Reconfigure` that a translator refused part
    /// of: the text then says what was applied). The text says why.
    Err(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let r = Request {
            ctx: Ctx {
                uid: 1,
                gid: 2,
                pid: 3,
                lk_owner: 4,
                client: 0,
            },
            xdata: Xdata::default(),
            fop: FopRequest::Mkdir {
                loc: Loc::entry(Gfid::ROOT, "d").with_path("/d"),
                mode: 0o755,
                umask: 0o22,
            },
        };
        let b = encode(&r);
        assert_eq!(decode::<Request>(Kind::Request, &b).unwrap(), r);
        assert!(decode::<Request>(Kind::Request, &b[..b.len() - 1]).is_err());
        assert!(decode::<Response>(Kind::Reply, &[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn control_variants_keep_their_encodings() {
        // Older peers decode these by their index: new variants go last.
        assert_eq!(encode(&ControlRequest::Status), vec![2]);
        assert_eq!(encode(&ControlRequest::Statedump), vec![3]);
        let r = ControlRequest::Reconfigure {
            volfile: "v".into(),
        };
        let b = encode(&r);
        assert_eq!(b, vec![4, 1, b'v']);
        assert_eq!(decode::<ControlRequest>(Kind::Control, &b).unwrap(), r);
    }
}
