//! Conversions between Weft's FOP types and fuser's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_core::{Errno, FileType, Iatt, SetTime, Timespec};

/// fuser's errno for a Weft errno.
pub fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

/// A Weft timestamp as a `SystemTime` (before the epoch too).
pub fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        let back = Duration::new(t.sec.unsigned_abs(), 0);
        UNIX_EPOCH - back + Duration::from_nanos(t.nsec as u64)
    }
}

/// A `SystemTime` as a Weft timestamp.
pub fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let mut sec = -(d.as_secs() as i64);
            let mut nsec = d.subsec_nanos();
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Timespec { sec, nsec }
        }
    }
}

/// A setattr time from fuser's.
pub fn set_time(t: Option<fuser::TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        fuser::TimeOrNow::Now => SetTime::Now,
        fuser::TimeOrNow::SpecificTime(s) => SetTime::At(timespec(s)),
    })
}

/// fuser's file type for a Weft one.
pub fn kind(k: FileType) -> fuser::FileType {
    match k {
        FileType::Regular => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Socket => fuser::FileType::Socket,
    }
}

/// The attributes the kernel gets for `ia`.
pub fn attr(ia: &Iatt) -> fuser::FileAttr {
    fuser::FileAttr {
        ino: fuser::INodeNo(ia.ino),
        size: ia.size,
        blocks: ia.blocks,
        atime: system_time(ia.atime),
        mtime: system_time(ia.mtime),
        ctime: system_time(ia.ctime),
        crtime: system_time(ia.ctime),
        kind: kind(ia.file_type().unwrap_or(FileType::Regular)),
        perm: (ia.mode & 0o7777) as u16,
        nlink: ia.nlink,
        uid: ia.uid,
        gid: ia.gid,
        rdev: ia.rdev as u32,
        blksize: ia.blksize,
        flags: 0,
    }
}

/// A FUSE lock request (inclusive `start..=end`, `end` = OFFSET_MAX for "to the end",
/// fcntl type) as a [`weft_core::Flock`]; `None` for an unknown type or an inverted range.
pub(crate) fn flock(
    start: u64,
    end: u64,
    typ: i32,
    pid: u32,
    owner: u64,
) -> Option<weft_core::Flock> {
    use weft_core::LockType;
    let kind = match typ {
        libc::F_RDLCK => LockType::Read,
        libc::F_WRLCK => LockType::Write,
        libc::F_UNLCK => LockType::Unlock,
        _ => return None,
    };
    if end < start {
        return None;
    }
    let len = if end >= i64::MAX as u64 {
        0
    } else {
        end - start + 1
    };
    Some(weft_core::Flock {
        kind,
        start,
        len,
        pid,
        owner,
    })
}

/// A [`weft_core::Flock`] as FUSE's (start, inclusive end, fcntl type).
pub(crate) fn flock_range(l: &weft_core::Flock) -> (u64, u64, i32) {
    use weft_core::LockType;
    let typ = match l.kind {
        LockType::Read => libc::F_RDLCK,
        LockType::Write => libc::F_WRLCK,
        LockType::Unlock => libc::F_UNLCK,
    };
    let end = if l.len == 0 {
        i64::MAX as u64
    } else {
        l.start.saturating_add(l.len - 1)
    };
    (l.start, end, typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_both_sides_of_the_epoch() {
        for t in [
            Timespec {
                sec: 1_600_000_000,
                nsec: 123_456_789,
            },
            Timespec { sec: -5, nsec: 250 },
            Timespec { sec: 0, nsec: 0 },
        ] {
            assert_eq!(timespec(system_time(t)), t);
        }
    }
}
