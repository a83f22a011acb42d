//! Lock requests carried by `lk` (POSIX locks), `inodelk` and `entrylk` (cluster locks).

/// The kind of a byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LockType {
    /// Shared (F_RDLCK).
    Read,
    /// Exclusive (F_WRLCK).
    Write,
    /// Release (F_UNLCK); also the answer of a GETLK that found no conflict.
    Unlock,
}

/// A byte-range lock, as `struct flock` describes it but with an explicit owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flock {
    /// Read, write or unlock.
    pub kind: LockType,
    /// First byte covered.
    pub start: u64,
    /// Bytes covered; 0 means to the end of the file and beyond.
    pub len: u64,
    /// Process id of the owner, reported back by GETLK.
    pub pid: u32,
    /// Lock owner; two requests conflict only when their owners differ.
    pub owner: u64,
}

/// What an `lk` or `inodelk` call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LkCmd {
    /// Report a conflicting lock, or `Unlock` if none (F_GETLK).
    Get,
    /// Take or release without waiting; EAGAIN on conflict (F_SETLK).
    Set,
    /// Take, waiting for conflicts to clear (F_SETLKW).
    SetWait,
}

/// What an `entrylk` call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntrylkCmd {
    /// Take, waiting for conflicts to clear.
    Lock,
    /// Take without waiting; EAGAIN on conflict.
    LockNonBlocking,
    /// Release.
    Unlock,
}

/// The mode of an entry lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntrylkType {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
}

/// How `xattrop` combines the values it is given with the values on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum XattropOp {
    /// Add big-endian 32-bit counters element-wise (replication changelogs).
    AddArray32,
    /// Add big-endian 64-bit counters element-wise.
    AddArray64,
}

/// Which region `seek` looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeekWhat {
    /// The next offset holding data (SEEK_DATA).
    Data,
    /// The next hole (SEEK_HOLE).
    Hole,
}

/// The answer of `rchecksum` over a byte range.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checksum {
    /// A cheap rolling checksum (Adler-32 style) to find candidates.
    pub weak: u32,
    /// A cryptographic digest of the range to confirm them.
    pub strong: Vec<u8>,
}
