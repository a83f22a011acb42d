//! Extended attributes of a directory entry, read without opening it and without
//! following it if it is a symlink: `getxattrat(2)` and `listxattrat(2)` (Linux 6.13) on
//! the directory descriptor and the entry's name, or, on older kernels, `lgetxattr` and
//! `llistxattr` through the directory's `/proc/self/fd` link.
//!
//! A listing's readdirp reads each entry's gfid and xattrs this way: one system call each
//! instead of an `openat2`, a `/proc` walk per call and a `close` (see
//! [`super::Brick::readdir`]). `name` must be one component (a name read from the
//! directory), so the call never leaves `dir`.
//!
//! Written by hand: rustix 1.1 and libc 0.2 wrap neither system call yet.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs as rfs;
use rustix::io::Errno;

use super::sys::proc_path;

/// Set once the kernel answered `ENOSYS`: the `/proc` way from then on.
static NO_AT_CALLS: AtomicBool = AtomicBool::new(false);

/// The system call numbers (the same on every architecture that has them).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod nr {
    pub const GETXATTRAT: libc::c_long = 464;
    pub const LISTXATTRAT: libc::c_long = 465;
}

/// `struct xattr_args` of the kernel's uapi.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// The value of xattr `attr` of entry `name` of `dir` into `buf`: its length.
pub fn get(dir: BorrowedFd<'_>, name: &OsStr, attr: &str, buf: &mut [u8]) -> Result<usize, Errno> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if !NO_AT_CALLS.load(Ordering::Relaxed) {
        let (Ok(n), Ok(a)) = (CString::new(name.as_bytes()), CString::new(attr)) else {
            return Err(Errno::INVAL);
        };
        let mut args = XattrArgs {
            value: buf.as_mut_ptr() as u64,
            size: buf.len() as u32,
            flags: 0,
        };
        // SAFETY: valid NUL-terminated strings, a live descriptor, and `args` pointing at
        // `buf`, which the kernel writes at most `buf.len()` bytes of.
        let r = unsafe {
            libc::syscall(
                nr::GETXATTRAT,
                dir.as_raw_fd(),
                n.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                a.as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        };
        match answer(r) {
            Err(Errno::NOSYS) => NO_AT_CALLS.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    rfs::lgetxattr(entry_proc_path(dir, name).as_os_str(), attr, buf)
}

/// The NUL-separated xattr names of entry `name` of `dir` into `buf`: their length.
pub fn list(dir: BorrowedFd<'_>, name: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if !NO_AT_CALLS.load(Ordering::Relaxed) {
        let Ok(n) = CString::new(name.as_bytes()) else {
            return Err(Errno::INVAL);
        };
        // SAFETY: a valid NUL-terminated string, a live descriptor, and `buf` with its
        // length, which the kernel writes at most.
        let r = unsafe {
            libc::syscall(
                nr::LISTXATTRAT,
                dir.as_raw_fd(),
                n.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        match answer(r) {
            Err(Errno::NOSYS) => NO_AT_CALLS.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    rfs::llistxattr(entry_proc_path(dir, name).as_os_str(), buf)
}

/// A raw system call's result as a length or an errno.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn answer(r: libc::c_long) -> Result<usize, Errno> {
    if r < 0 {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    } else {
        Ok(r as usize)
    }
}

/// `/proc/self/fd/N/name`: entry `name` resolved inside exactly that directory.
fn entry_proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> std::ffi::OsString {
    let mut p = proc_path(dir).into_bytes();
    p.push(b'/');
    p.extend_from_slice(name.as_bytes());
    std::ffi::OsString::from_vec(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_an_entrys_xattrs_without_following_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("l")).unwrap();
        rfs::setxattr(
            d.path().join("f").as_path(),
            "user.weft-test",
            b"value",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let mut buf = [0u8; 64];
        let n = get(dir.as_fd(), OsStr::new("f"), "user.weft-test", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"value");
        let n = list(dir.as_fd(), OsStr::new("f"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"user.weft-test\0");
        // The symlink's own (absent) xattr, not its target's.
        assert_eq!(
            get(dir.as_fd(), OsStr::new("l"), "user.weft-test", &mut buf),
            Err(Errno::NODATA)
        );
        assert_eq!(
            get(
                dir.as_fd(),
                OsStr::new("nosuch"),
                "user.weft-test",
                &mut buf
            ),
            Err(Errno::NOENT)
        );
        // A short buffer: ERANGE, as the path calls answer.
        assert_eq!(
            get(
                dir.as_fd(),
                OsStr::new("f"),
                "user.weft-test",
                &mut buf[..2]
            ),
            Err(Errno::RANGE)
        );
        // The /proc way answers the same.
        let n = rfs::lgetxattr(
            entry_proc_path(dir.as_fd(), OsStr::new("f")).as_os_str(),
            "user.weft-test",
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..n], b"value");
    }
}
