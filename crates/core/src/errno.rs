//! POSIX error numbers as they travel through a translator graph.
//!
//! Every FOP fails with an [`Errno`]: ENOENT raised by a brick's posix translator reaches the
//! application as ENOENT. Translators never invent other error shapes at the FOP boundary.

use std::fmt;

/// A POSIX errno value (always positive), the only error a FOP returns.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// Input/output error: the catch-all for failures that have no better errno.
    pub const EIO: Errno = Errno(libc::EIO);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Operation not supported by this translator or graph.
    pub const ENOTSUP: Errno = Errno(libc::EOPNOTSUPP);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    /// File exists.
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    /// Permission denied.
    pub const EACCES: Errno = Errno(libc::EACCES);
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// No data available (a missing xattr).
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    /// Bad file descriptor.
    pub const EBADF: Errno = Errno(libc::EBADF);
    /// Transport endpoint is not connected: a brick is unreachable.
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    /// Read-only file system.
    pub const EROFS: Errno = Errno(libc::EROFS);
    /// Result too large for the caller's buffer.
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    /// Resource temporarily unavailable (a non-blocking lock conflict).
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    /// File name too long.
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    /// Directory not empty.
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    /// No such device or address (also: SEEK_DATA past the end).
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    /// Stale file handle: the inode a gfid named is gone (the kernel then looks the name up again).
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    /// Too many levels of symbolic links (a symlink met where none may be followed).
    pub const ELOOP: Errno = Errno(libc::ELOOP);
    /// Object is remote: the file this fd or gfid named was moved to another subvolume
    /// by a rebalance (`features/migrate`); the caller finds it again and retries.
    pub const EREMOTE: Errno = Errno(libc::EREMOTE);
    /// Busy: the inode is already being moved.
    pub const EBUSY: Errno = Errno(libc::EBUSY);

    /// The errno of an `std::io::Error`, EIO when it carries none.
    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The errno left by the last failed libc call on this thread.
    pub fn last() -> Errno {
        Errno::from_io(&std::io::Error::last_os_error())
    }

    /// Its symbolic name, e.g. `ENOENT`.
    pub fn name(self) -> String {
        format!("{:?}", nix::errno::Errno::from_raw(self.0))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.name(),
            nix::errno::Errno::from_raw(self.0).desc()
        )
    }
}

impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno::from_io(&e)
    }
}

impl From<nix::errno::Errno> for Errno {
    fn from(e: nix::errno::Errno) -> Errno {
        Errno(e as i32)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_io_round_trip() {
        assert_eq!(Errno::ENOENT.name(), "ENOENT");
        let io: std::io::Error = Errno::ENOTEMPTY.into();
        assert_eq!(Errno::from(io), Errno::ENOTEMPTY);
    }
}
