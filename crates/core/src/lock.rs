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

impl Flock {
    /// A lock of `kind` over the whole file (from byte 0 to the end and beyond) for lock
    /// owner `owner`, with no pid.
    pub fn whole(kind: LockType, owner: u64) -> Flock {
        Flock {
            kind,
            start: 0,
            len: 0,
            pid: 0,
            owner,
        }
    }
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

/// Which files have fds (of the client a translator serves) that asked for a POSIX lock,
/// as that translator sees `lk` and `release` pass. A close (`flush`) of any fd of such a
/// file must reach the bricks, since there it drops its owner's locks; a close of any
/// other file's fd need not. Bounded by the open fds that asked for a lock (a failed
/// request counts too).
#[derive(Default)]
pub struct LockUse {
    files: parking_lot::Mutex<std::collections::HashMap<crate::Gfid, Vec<u64>>>,
}

impl LockUse {
    /// Notes that `fd` asks for lock `lock` (call it before passing the request down, so
    /// a close racing with it goes down too). Queries and unlocks are not noted.
    pub fn asking(&self, fd: &crate::Fd, cmd: LkCmd, lock: &Flock) {
        if cmd == LkCmd::Get || lock.kind == LockType::Unlock {
            return;
        }
        let mut files = self.files.lock();
        let fds = files.entry(fd.gfid).or_default();
        if !fds.contains(&fd.id) {
            fds.push(fd.id);
        }
    }

    /// Forgets `fd` (it was released: its locks went with it, or with a close before).
    pub fn released(&self, fd: &crate::Fd) {
        let mut files = self.files.lock();
        if let Some(fds) = files.get_mut(&fd.gfid) {
            fds.retain(|&id| id != fd.id);
            if fds.is_empty() {
                files.remove(&fd.gfid);
            }
        }
    }

    /// Whether an open fd of `g` asked for a lock.
    pub fn any(&self, g: &crate::Gfid) -> bool {
        self.files.lock().contains_key(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fd, Gfid};

    #[test]
    fn a_file_counts_as_locked_until_every_locking_fd_is_released() {
        let u = LockUse::default();
        let g = Gfid::random();
        let (a, b) = (Fd::new(g, 0, false), Fd::new(g, 0, false));
        let lock = |kind| Flock {
            kind,
            start: 0,
            len: 0,
            pid: 1,
            owner: 1,
        };
        u.asking(&a, LkCmd::Get, &lock(LockType::Write));
        u.asking(&a, LkCmd::Set, &lock(LockType::Unlock));
        assert!(!u.any(&g), "queries and unlocks lock nothing");
        u.asking(&a, LkCmd::SetWait, &lock(LockType::Read));
        u.asking(&a, LkCmd::Set, &lock(LockType::Write));
        u.asking(&b, LkCmd::Set, &lock(LockType::Write));
        assert!(u.any(&g));
        u.released(&a);
        assert!(u.any(&g));
        u.released(&b);
        assert!(!u.any(&g));
    }
}
