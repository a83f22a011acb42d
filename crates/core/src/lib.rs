//! Weft's translator core.
//!
//! Everything a translator, a front end or a graph needs and nothing that touches storage or
//! the network: the FOP vocabulary ([`Iatt`], [`Dirent`], [`Loc`], [`Fd`], [`Flock`],
//! [`Xdata`], [`Errno`]), the [`Xlator`] trait, typed [`options`], the [`volfile`] text
//! form, the [`graph`] builder and the client-side [`inode`] table.
//!
//! ```
//! use weft_core::volfile::Volfile;
//! let vf = Volfile::parse("volume a\n type debug/trace\nend-volume\n").unwrap();
//! assert_eq!(vf.top().unwrap().type_name, "debug/trace");
//! ```

pub mod blocking;
pub mod bytes_path;
pub mod entry_xattrs;
pub mod errno;
pub mod fd;
pub mod gfid;
pub mod graph;
pub mod iatt;
pub mod inode;
pub mod loc;
pub mod lock;
pub mod options;
pub mod upcall;
pub mod volfile;
pub mod xdata;
pub mod xlator;

pub use entry_xattrs::{EntryXattrs, READDIRP_XATTRS_KEY};
pub use errno::Errno;
pub use fd::{Fd, FdRef};
pub use gfid::Gfid;
pub use graph::{Graph, ReconfigureError, Reconfigured, Registry, XlatorInit, XlatorType};
pub use iatt::{Dirent, FileType, Iatt, SetAttr, SetTime, StatVfs, Timespec};
pub use loc::{Ctx, Loc, HEAL_PID};
pub use lock::{
    Checksum, EntrylkCmd, EntrylkType, Flock, LkCmd, LockType, LockUse, SeekWhat, XattropOp,
};
pub use upcall::{Ack, Invalidation, Upcall};
pub use xdata::Xdata;
pub use xlator::{Event, EventReceiver, EventSender, Fop, Xlator, XlatorRef};

/// Extended attributes by name.
pub type XattrMap = std::collections::BTreeMap<String, Vec<u8>>;

/// The xattr holding an inode's gfid on a brick.
pub const GFID_XATTR: &str = "trusted.weft.gfid";

/// Reply xdata key of an entry change (create, mkdir, mknod, symlink, link, unlink,
/// rmdir, and rename for the new name's directory): the directory's attributes right
/// after the change ([`Iatt::to_bytes`]), so a client's cache need not ask for them again.
/// Absent when a translator below does not pass it on.
pub const POSTPARENT_KEY: &str = "weft.postparent";

/// Reply xdata key of a rename between two directories: the old name's directory's
/// attributes right after the change, as [`POSTPARENT_KEY`] gives the new one's.
pub const POSTOLDPARENT_KEY: &str = "weft.postoldparent";

/// Xdata key (presence only) on a `flush`, `fsync` or `writev`: a brick that honours it
/// answers, in the reply's xdata under the same key, the file's attributes once the call
/// is done ([`Iatt::to_bytes`]), so a client's cache knows them after its own writes
/// without asking again. Absent from the reply when a translator below does not pass it
/// on (a replica set, whose copies may differ, or distribute, whose file may be moving,
/// never does).
pub const POSTSTAT_KEY: &str = "weft.poststat";

/// The xdata key in which a client proposes the gfid of an inode it creates (mkdir, create,
/// mknod, symlink), so every replica gives the new inode the same identity. 16 bytes.
pub const GFID_REQ_KEY: &str = "gfid-req";

/// A new inode's gfid ([`Gfid::for_new_inode`]) and the xdata proposing it
/// ([`GFID_REQ_KEY`]), for a create, mkdir, mknod or symlink.
pub fn gfid_req_xdata() -> (Gfid, Xdata) {
    let g = Gfid::for_new_inode();
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, g.0.to_vec());
    (g, xd)
}

/// Xdata key (presence only) on an `lk` call: the lock is a flock(2) lock (whole file,
/// owned by an open file description), kept apart from POSIX locks as Linux keeps them.
pub const LK_FLOCK_KEY: &str = "lk.flock";

/// Xdata key (presence only) on a `writev`: append the data at the end of the file as it
/// is on the brick, atomically, whatever the offset says. Set by a front end for an
/// O_APPEND write whose offset is the end of file it knew; the brick never applies a
/// file's O_APPEND flag by itself (explicit offsets, as from mmap or RWF_NOAPPEND, stand).
pub const WRITE_APPEND_KEY: &str = "write.append";

/// Xdata key on an `unlink`: the gfid (16 bytes) of the inode the caller means to unlink.
/// A brick that honours it removes the name only if it still names that inode, and answers
/// `ESTALE` otherwise (another client replaced it), changing nothing.
pub const UNLINK_GFID_KEY: &str = "unlink.gfid";

/// A virtual xattr `features/locks` answers on `getxattr`/`fgetxattr` of an inode: `1`
/// when any lock (POSIX, flock or inodelk) is held or awaited on it, else `0`. A rebalance
/// asks it before moving a file, since locks do not move with the data.
pub const LOCKS_HELD_XATTR: &str = "weft.locks.held";

/// Xdata key on a `lookup`: an xattr name prefix (UTF-8). A brick that honours it answers,
/// in the reply's xdata, every xattr of the found inode whose name starts with it (key: the
/// xattr's name, value: its bytes), so a replica set learns its changelogs in the lookup
/// round trip. Internal (`trusted.weft.`) names need the internal xdata key as well.
pub const LOOKUP_XATTRS_KEY: &str = "lookup.xattrs";

/// Xdata key on a `lookup`: the largest file size (8 bytes, big-endian u64) whose content
/// the caller wants with the answer. A brick that honours it (at most 1 MiB, whatever is
/// asked) puts the whole content of a regular file no larger than that in the reply's
/// xdata under [`QUICK_READ_CONTENT_KEY`], with the returned iatt describing exactly that
/// content; it leaves the key out when the file is larger, not regular, or changed while
/// being read. Used by `performance/quick-read`.
pub const QUICK_READ_KEY: &str = "quick-read.max-file-size";

/// Reply xdata key of a `lookup` asked with [`QUICK_READ_KEY`]: the file's whole content.
pub const QUICK_READ_CONTENT_KEY: &str = "quick-read.content";

/// Xdata key on an `open`, and on a `lookup` by gfid: a name the caller knows the inode by
/// ([`name_hint`]: the parent's gfid, then the name). Only a hint: a brick may reach the
/// inode through it (cheaper than the gfid's handle when its caches are cold) and must
/// check that the name still holds that gfid, falling back to the gfid otherwise.
pub const NAME_HINT_KEY: &str = "weft.name-hint";

/// Xdata key on an `xattrop`: xattr names separated by NUL bytes. A brick applies the
/// counters of those names first, in that order, then the others (in name order). Each
/// name is its own `setxattr`, so a brick process killed in the middle leaves a prefix of
/// that order applied: `cluster/replicate` orders its changelogs so that such a torn
/// update never makes one copy accuse another.
pub const XATTROP_ORDER_KEY: &str = "weft.xattrop-order";

/// Xdata key (presence only) on a `mkdir`: the caller asks for a lease on the new
/// directory, and the reply carries the key when a brick granted it. While a client holds
/// a directory's lease no other client knows anything cached about it: the brick recalls
/// the lease ([`Invalidation::Recall`]) and waits for the holder before any other client's
/// FOP touches the directory or learns its gfid. A holder may therefore make and remove
/// names in it without waiting for the brick (`performance/entry-behind`). A brick grants
/// a lease only on a new directory without a default ACL or the setgid bit, and only when
/// it tells clients about changes (`features/upcall` with `cache-invalidation`).
pub const LEASE_KEY: &str = "weft.lease";

/// Reply xdata key (presence only) of a `create` answered by `performance/entry-behind`
/// before the brick saw it: the new file is known to no other client until the lease of
/// its directory is recalled ([`Invalidation::Recall`]), so closing it need not wait for
/// its writes either.
pub const PRIVATE_KEY: &str = "weft.private";

/// Xdata key (presence only) on a change of names (`create`, `mkdir`, `unlink`, `rmdir`,
/// `symlink`, `rename` within one directory) sent by `performance/entry-behind` from a
/// directory whose lease this client holds: no other client acts in that directory now.
/// Only a hint, never needed for correctness: `cluster/replicate` then lets the changes in
/// flight there share one transaction on the directory (one lock and one pre-op for a
/// burst), which would make another client's changes there wait.
pub const LEASED_DIR_KEY: &str = "weft.leased-dir";

/// Xdata key on a `create` or a `release`, value [`with_inodelk_value`]: on a create,
/// `features/locks` on the brick takes a whole-file write inode lock on the new inode
/// right after it is made, for this client and that lock owner and domain; on a release,
/// it gives that lock back before the fd closes. The reply carries the key when it did.
/// `cluster/replicate` so begins a new file's data transaction with its create, and ends
/// one with the release of its fd.
pub const WITH_INODELK_KEY: &str = "weft.with-inodelk";

/// Prefix of xdata keys on a `create` or a `release`: `features/index` on the brick
/// applies an `xattrop` (add arrays of 32-bit counters) of the replication counters named
/// after the prefix, with those values, to the new inode right after a create, or to the
/// fd's inode before a release, in the order [`WITH_XATTROP_ORDER_KEY`] gives (see
/// [`XATTROP_ORDER_KEY`]); the reply carries [`WITH_XATTROP_DONE_KEY`] when it did (a
/// transaction's pre-op, or its post-op).
pub const WITH_XATTROP_PREFIX: &str = "weft.with-xattrop.";

/// Xdata key on a `create` or a `release`: the order of [`WITH_XATTROP_PREFIX`]'s
/// counters (as [`XATTROP_ORDER_KEY`]'s value).
pub const WITH_XATTROP_ORDER_KEY: &str = "weft.with-xattrop-order";

/// Reply xdata key (presence only) of a `create` or `release` whose
/// [`WITH_XATTROP_PREFIX`] counters were applied.
pub const WITH_XATTROP_DONE_KEY: &str = "weft.with-xattrop-done";

/// Xdata key on a `create`: the new file's first bytes (at most
/// [`MAX_CREATE_CONTENT`]), to be written at offset 0 before the create is answered, so a
/// small file made from under a directory lease costs the brick one request less (sent by
/// `performance/entry-behind` when the file's first write comes while its create is still
/// behind). A brick that wrote them all into the file it made answers the key (empty) in
/// the reply, and the iatt it answers describes the file with them; with
/// [`POSTSTAT_KEY`] also asked, it answers that key too, as a write's. Without the key in
/// the reply the caller must write the bytes itself (an older brick, a name that existed,
/// a write that failed). `cluster/replicate` answers the key only when every brick that
/// made the file did.
pub const CREATE_CONTENT_KEY: &str = "weft.create-content";

/// The most bytes [`CREATE_CONTENT_KEY`] carries.
pub const MAX_CREATE_CONTENT: usize = 64 << 10;

/// The value of [`WITH_INODELK_KEY`]: the lock owner (8 bytes, big-endian), then the
/// domain.
pub fn with_inodelk_value(owner: u64, domain: &str) -> Vec<u8> {
    let mut v = owner.to_be_bytes().to_vec();
    v.extend_from_slice(domain.as_bytes());
    v
}

/// Reads a [`WITH_INODELK_KEY`] value: the owner and a non-empty UTF-8 domain.
pub fn parse_with_inodelk(v: &[u8]) -> Option<(u64, String)> {
    let (owner, domain) = (v.get(..8)?, v.get(8..)?);
    let domain = std::str::from_utf8(domain).ok().filter(|d| !d.is_empty())?;
    Some((
        u64::from_be_bytes(owner.try_into().ok()?),
        domain.to_string(),
    ))
}

/// The value of [`NAME_HINT_KEY`] for `name` in directory `parent`.
pub fn name_hint(parent: Gfid, name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = parent.0.to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

/// Reads a [`NAME_HINT_KEY`] value: `None` unless it holds a gfid and a non-empty name.
pub fn parse_name_hint(v: &[u8]) -> Option<(Gfid, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    if v.len() <= 16 {
        return None;
    }
    let g = Gfid(v[..16].try_into().ok()?);
    Some((g, std::ffi::OsStr::from_bytes(&v[16..]).to_os_string()))
}

/// The prefix of Weft's internal xattrs, never shown to clients.
pub const INTERNAL_XATTR_PREFIX: &str = "trusted.weft.";

/// The TCP port a management daemon (`weft mgmtd`) listens on when its address names no
/// port; also where `weft mount HOST:/VOL` fetches volfiles. It clashes neither with
/// GlusterFS's glusterd (24007) nor with its brick ports (49152 and up).
pub const MGMT_PORT: u16 = 24100;
