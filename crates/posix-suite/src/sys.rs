//! Thin wrappers around raw libc calls that preserve exact errno values.

use nix::errno::Errno;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};

/// Result of a raw syscall: the value or the exact errno.
pub type SysResult<T> = Result<T, Errno>;

/// A zeroed `struct stat`.
pub(crate) type Stat = libc::stat;

fn cpath_raw(p: &Path) -> SysResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The two roots of a two-client run and where the next path-taking step goes.
struct Sides {
    /// Root A (the directory the scenario was given) and root B (the same directory
    /// seen through the second mount).
    roots: [PathBuf; 2],
    /// Side of the next path-taking call.
    next: usize,
    /// A side every call uses while [`one_side`] runs.
    pinned: Option<usize>,
    /// Sides used since the last [`take_used`], as `A`/`B` letters.
    used: String,
}

thread_local! {
    static SIDES: RefCell<Option<Sides>> = const { RefCell::new(None) };
}

/// Runs `f` with every path-taking call alternating between root `a` and root `b`: paths
/// under `a` are rewritten to `b` on every other call (the first goes to `a`). A call
/// taking two paths (rename, link) sends both to the same side; file descriptors stay on
/// the side that opened them. Without this, paths are used as given.
pub fn with_sides<R>(a: &Path, b: &Path, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SIDES.with(|s| *s.borrow_mut() = None);
        }
    }
    SIDES.with(|s| {
        *s.borrow_mut() = Some(Sides {
            roots: [a.to_path_buf(), b.to_path_buf()],
            next: 0,
            pinned: None,
            used: String::new(),
        })
    });
    let _reset = Reset;
    f()
}

/// Picks the side of one call (advancing the alternation unless pinned) and notes it.
fn pick() -> Option<usize> {
    SIDES.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut()?;
        let side = match s.pinned {
            Some(p) => p,
            None => {
                let n = s.next;
                s.next = 1 - n;
                n
            }
        };
        s.used.push(if side == 0 { 'A' } else { 'B' });
        Some(side)
    })
}

/// `p` as seen from `side`: a path under root A moved under the side's root.
fn place(p: &Path, side: Option<usize>) -> PathBuf {
    let Some(side) = side else {
        return p.to_path_buf();
    };
    SIDES.with(|s| {
        let s = s.borrow();
        let Some(s) = s.as_ref() else {
            return p.to_path_buf();
        };
        // Bytes, not components: `dir/.`, `dir/..` and trailing slashes must survive.
        let (pb, ab) = (p.as_os_str().as_bytes(), s.roots[0].as_os_str().as_bytes());
        match pb.strip_prefix(ab) {
            Some(rest) if side == 1 && (rest.is_empty() || rest[0] == b'/') => {
                let mut out = s.roots[1].as_os_str().as_bytes().to_vec();
                out.extend_from_slice(rest);
                PathBuf::from(std::ffi::OsString::from_vec(out))
            }
            _ => p.to_path_buf(),
        }
    })
}

/// One path-taking call's path, on the next side.
fn cpath(p: &Path) -> SysResult<CString> {
    cpath_raw(&place(p, pick()))
}

/// A two-path call's paths, both on the next side.
fn cpaths(a: &Path, b: &Path) -> SysResult<(CString, CString)> {
    let side = pick();
    Ok((cpath_raw(&place(a, side))?, cpath_raw(&place(b, side))?))
}

/// Runs `f` with every call on one side (the next one): for steps that compare two of
/// their own results by identity (`st_dev` differs between two mounts).
pub(crate) fn one_side<R>(f: impl FnOnce() -> R) -> R {
    let side = pick();
    let set = |v: Option<usize>| {
        SIDES.with(|s| {
            if let Some(s) = s.borrow_mut().as_mut() {
                s.pinned = v;
            }
        })
    };
    set(side);
    let r = f();
    set(None);
    r
}

/// Child-process arguments, each path under root A moved to the next side (one side
/// for the whole child: it is one step, one other process).
pub(crate) fn place_args(args: &[String]) -> Vec<String> {
    let side = pick();
    args.iter()
        .map(|a| place(Path::new(a), side).to_string_lossy().into_owned())
        .collect()
}

/// The sides used since the last call (`""` outside [`with_sides`]).
pub(crate) fn take_used() -> String {
    SIDES.with(|s| {
        s.borrow_mut()
            .as_mut()
            .map(|s| std::mem::take(&mut s.used))
            .unwrap_or_default()
    })
}

fn cstr(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> SysResult<usize> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

fn check_long(ret: libc::c_long) -> SysResult<()> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn path1(p: &Path, f: impl FnOnce(*const libc::c_char) -> libc::c_int) -> SysResult<()> {
    let c = cpath(p)?;
    check(f(c.as_ptr())).map(drop)
}

fn path2(
    a: &Path,
    b: &Path,
    f: impl FnOnce(*const libc::c_char, *const libc::c_char) -> libc::c_int,
) -> SysResult<()> {
    let (ca, cb) = cpaths(a, b)?;
    check(f(ca.as_ptr(), cb.as_ptr())).map(drop)
}

/// Owned file descriptor, closed on drop.
#[derive(Debug)]
pub(crate) struct Fd(RawFd);

impl Fd {
    /// Closes explicitly, reporting the close(2) result.
    pub(crate) fn close(self) -> SysResult<()> {
        let fd = self.0;
        std::mem::forget(self);
        check(unsafe { libc::close(fd) }).map(drop)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

pub(crate) fn open(p: &Path, flags: i32, mode: u32) -> SysResult<Fd> {
    let c = cpath(p)?;
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(Fd(fd))
}

pub(crate) fn openat(dir: &Fd, name: &str, flags: i32, mode: u32) -> SysResult<Fd> {
    let c = cstr(name)?;
    let fd = check(unsafe { libc::openat(dir.0, c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(Fd(fd))
}

pub(crate) fn unlinkat(dir: &Fd, name: &str, flags: i32) -> SysResult<()> {
    let c = cstr(name)?;
    check(unsafe { libc::unlinkat(dir.0, c.as_ptr(), flags) }).map(drop)
}

pub(crate) fn pwrite(fd: &Fd, buf: &[u8], off: i64) -> SysResult<usize> {
    check_size(unsafe { libc::pwrite(fd.0, buf.as_ptr().cast(), buf.len(), off) })
}

pub(crate) fn pread(fd: &Fd, len: usize, off: i64) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = check_size(unsafe { libc::pread(fd.0, buf.as_mut_ptr().cast(), len, off) })?;
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn write(fd: &Fd, buf: &[u8]) -> SysResult<usize> {
    check_size(unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) })
}

pub(crate) fn read(fd: &Fd, len: usize) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = check_size(unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), len) })?;
    buf.truncate(n);
    Ok(buf)
}

/// pwrite in a loop until all of `buf` is written.
pub(crate) fn pwrite_all(fd: &Fd, buf: &[u8], off: i64) -> SysResult<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let n = pwrite(fd, &buf[done..], off + done as i64)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(())
}

/// pwrite in a loop until all of `buf` is written; returns what each call returned.
pub(crate) fn pwrite_counted(fd: &Fd, buf: &[u8], off: i64) -> SysResult<Vec<usize>> {
    let mut done = 0usize;
    let mut calls = Vec::new();
    while done < buf.len() {
        let n = pwrite(fd, &buf[done..], off + done as i64)?;
        calls.push(n);
        if n == 0 {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(calls)
}

/// pread in a loop until `len` bytes or EOF.
pub(crate) fn pread_full(fd: &Fd, len: usize, off: i64) -> SysResult<Vec<u8>> {
    let mut out = Vec::with_capacity(len.min(1 << 20));
    while out.len() < len {
        let chunk = pread(fd, (len - out.len()).min(1 << 20), off + out.len() as i64)?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a whole file from offset 0 through `fd`.
pub(crate) fn pread_to_end(fd: &Fd) -> SysResult<Vec<u8>> {
    pread_full(fd, usize::MAX / 2, 0)
}

pub(crate) fn lseek(fd: &Fd, off: i64, whence: i32) -> SysResult<i64> {
    let r = unsafe { libc::lseek(fd.0, off, whence) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Creates/truncates `p` (mode 0644 before umask) with `data`.
pub(crate) fn write_file(p: &Path, data: &[u8]) -> SysResult<()> {
    let fd = open(p, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o644)?;
    pwrite_all(&fd, data, 0)?;
    fd.close()
}

/// Reads the whole of `p`.
pub(crate) fn read_file(p: &Path) -> SysResult<Vec<u8>> {
    let fd = open(p, libc::O_RDONLY, 0)?;
    pread_to_end(&fd)
}

pub(crate) fn stat(p: &Path) -> SysResult<Stat> {
    let c = cpath(p)?;
    let mut st: Stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::stat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub(crate) fn lstat(p: &Path) -> SysResult<Stat> {
    let c = cpath(p)?;
    let mut st: Stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub(crate) fn fstat(fd: &Fd) -> SysResult<Stat> {
    let mut st: Stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.0, &mut st) })?;
    Ok(st)
}

pub(crate) fn truncate(p: &Path, len: i64) -> SysResult<()> {
    path1(p, |c| unsafe { libc::truncate(c, len) })
}

pub(crate) fn ftruncate(fd: &Fd, len: i64) -> SysResult<()> {
    check(unsafe { libc::ftruncate(fd.0, len) }).map(drop)
}

pub(crate) fn mkdir(p: &Path, mode: u32) -> SysResult<()> {
    path1(p, |c| unsafe { libc::mkdir(c, mode) })
}

pub(crate) fn rmdir(p: &Path) -> SysResult<()> {
    path1(p, |c| unsafe { libc::rmdir(c) })
}

pub(crate) fn unlink(p: &Path) -> SysResult<()> {
    path1(p, |c| unsafe { libc::unlink(c) })
}

pub(crate) fn rename(a: &Path, b: &Path) -> SysResult<()> {
    path2(a, b, |x, y| unsafe { libc::rename(x, y) })
}

/// renameat2(2) via the raw syscall (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
pub(crate) fn renameat2(a: &Path, b: &Path, flags: u32) -> SysResult<()> {
    let (ca, cb) = cpaths(a, b)?;
    check_long(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            flags,
        )
    })
}

pub(crate) fn link(a: &Path, b: &Path) -> SysResult<()> {
    path2(a, b, |x, y| unsafe { libc::link(x, y) })
}

/// Creates symlink `p` pointing at `target`.
pub(crate) fn symlink(target: &[u8], p: &Path) -> SysResult<()> {
    let ct = CString::new(target).map_err(|_| Errno::EINVAL)?;
    path1(p, |c| unsafe { libc::symlink(ct.as_ptr(), c) })
}

pub(crate) fn readlink(p: &Path) -> SysResult<Vec<u8>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 8192];
    let n = check_size(unsafe { libc::readlink(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn chmod(p: &Path, mode: u32) -> SysResult<()> {
    path1(p, |c| unsafe { libc::chmod(c, mode) })
}

pub(crate) fn fchmod(fd: &Fd, mode: u32) -> SysResult<()> {
    check(unsafe { libc::fchmod(fd.0, mode) }).map(drop)
}

fn id(v: Option<u32>) -> u32 {
    v.unwrap_or(u32::MAX)
}

/// chown(2); `None` means "leave unchanged" (-1).
pub(crate) fn chown(p: &Path, uid: Option<u32>, gid: Option<u32>) -> SysResult<()> {
    path1(p, |c| unsafe { libc::chown(c, id(uid), id(gid)) })
}

pub(crate) fn lchown(p: &Path, uid: Option<u32>, gid: Option<u32>) -> SysResult<()> {
    path1(p, |c| unsafe { libc::lchown(c, id(uid), id(gid)) })
}

pub(crate) fn fchown(fd: &Fd, uid: Option<u32>, gid: Option<u32>) -> SysResult<()> {
    check(unsafe { libc::fchown(fd.0, id(uid), id(gid)) }).map(drop)
}

/// A timespec for utimensat.
pub(crate) fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

pub(crate) fn utimensat(p: &Path, times: [libc::timespec; 2], flags: i32) -> SysResult<()> {
    path1(p, |c| unsafe {
        libc::utimensat(libc::AT_FDCWD, c, times.as_ptr(), flags)
    })
}

pub(crate) fn futimens(fd: &Fd, times: [libc::timespec; 2]) -> SysResult<()> {
    check(unsafe { libc::futimens(fd.0, times.as_ptr()) }).map(drop)
}

pub(crate) fn mknod(p: &Path, mode: u32, dev: u64) -> SysResult<()> {
    path1(p, |c| unsafe { libc::mknod(c, mode, dev) })
}

pub(crate) fn mkfifo(p: &Path, mode: u32) -> SysResult<()> {
    path1(p, |c| unsafe { libc::mkfifo(c, mode) })
}

pub(crate) fn fsync(fd: &Fd) -> SysResult<()> {
    check(unsafe { libc::fsync(fd.0) }).map(drop)
}

pub(crate) fn fdatasync(fd: &Fd) -> SysResult<()> {
    check(unsafe { libc::fdatasync(fd.0) }).map(drop)
}

pub(crate) fn fallocate(fd: &Fd, mode: i32, off: i64, len: i64) -> SysResult<()> {
    check(unsafe { libc::fallocate(fd.0, mode, off, len) }).map(drop)
}

pub(crate) fn statvfs(p: &Path) -> SysResult<libc::statvfs> {
    let c = cpath(p)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub(crate) fn fstatvfs(fd: &Fd) -> SysResult<libc::statvfs> {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatvfs(fd.0, &mut st) })?;
    Ok(st)
}

/// Issues an fcntl record-lock command and returns the (possibly updated) flock.
pub(crate) fn fcntl_lock(
    fd: &Fd,
    cmd: i32,
    ltype: i32,
    start: i64,
    len: i64,
) -> SysResult<libc::flock> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ltype as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    check(unsafe { libc::fcntl(fd.0, cmd, &mut fl) })?;
    Ok(fl)
}

pub(crate) fn flock(fd: &Fd, op: i32) -> SysResult<()> {
    check(unsafe { libc::flock(fd.0, op) }).map(drop)
}

/// Which xattr syscall family to use.
#[derive(Clone, Copy)]
pub(crate) enum X<'a> {
    /// Path, following symlinks.
    Path(&'a Path),
    /// Path, not following symlinks.
    Link(&'a Path),
    /// Open file descriptor.
    Fd(&'a Fd),
}

pub(crate) fn setxattr(x: X, name: &str, value: &[u8], flags: i32) -> SysResult<()> {
    let n = cstr(name)?;
    let (v, l) = (value.as_ptr().cast(), value.len());
    match x {
        X::Path(p) => path1(p, |c| unsafe { libc::setxattr(c, n.as_ptr(), v, l, flags) }),
        X::Link(p) => path1(p, |c| unsafe {
            libc::lsetxattr(c, n.as_ptr(), v, l, flags)
        }),
        X::Fd(fd) => check(unsafe { libc::fsetxattr(fd.0, n.as_ptr(), v, l, flags) }).map(drop),
    }
}

/// getxattr with a buffer of `size` bytes (0 = size query); returns
/// (reported length, bytes read).
pub(crate) fn getxattr(x: X, name: &str, size: usize) -> SysResult<(usize, Vec<u8>)> {
    let n = cstr(name)?;
    let mut buf = vec![0u8; size];
    let b = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let r = match x {
        X::Path(p) => {
            let c = cpath(p)?;
            unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), b, size) }
        }
        X::Link(p) => {
            let c = cpath(p)?;
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), b, size) }
        }
        X::Fd(fd) => unsafe { libc::fgetxattr(fd.0, n.as_ptr(), b, size) },
    };
    let len = check_size(r)?;
    buf.truncate(len.min(size));
    Ok((len, buf))
}

/// listxattr on a path with a buffer of `size` bytes (0 = size query).
pub(crate) fn listxattr(p: &Path, size: usize) -> SysResult<(usize, Vec<u8>)> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; size];
    let b = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let len = check_size(unsafe { libc::listxattr(c.as_ptr(), b, size) })?;
    buf.truncate(len.min(size));
    Ok((len, buf))
}

pub(crate) fn removexattr(p: &Path, name: &str) -> SysResult<()> {
    let n = cstr(name)?;
    path1(p, |c| unsafe { libc::removexattr(c, n.as_ptr()) })
}

fn errno_raw() -> i32 {
    Errno::last_raw()
}

/// One directory entry: name bytes, `d_type` and `d_ino`.
pub(crate) type DirEntry = (Vec<u8>, u8, u64);

/// Reads a directory `passes` times (rewinddir between passes) with
/// opendir/readdir and returns (name, d_type, d_ino) per entry per pass.
pub(crate) fn list_dir_passes(p: &Path, passes: usize) -> SysResult<Vec<Vec<DirEntry>>> {
    list_dir_with(p, passes, |_, _| ())
}

/// [`list_dir_passes`], calling `each(dirfd, entry)` for every entry of the first pass
/// while the directory is still open.
fn list_dir_with(
    p: &Path,
    passes: usize,
    mut each: impl FnMut(RawFd, &DirEntry),
) -> SysResult<Vec<Vec<DirEntry>>> {
    let c = cpath(p)?;
    let d = unsafe { libc::opendir(c.as_ptr()) };
    if d.is_null() {
        return Err(Errno::last());
    }
    let mut all = Vec::new();
    let mut res = Ok(());
    'outer: for pass in 0..passes {
        if pass > 0 {
            unsafe { libc::rewinddir(d) };
        }
        let mut out = Vec::new();
        loop {
            Errno::clear();
            let ent = unsafe { libc::readdir64(d) };
            if ent.is_null() {
                let e = errno_raw();
                if e != 0 {
                    res = Err(Errno::from_raw(e));
                    break 'outer;
                }
                break;
            }
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let e = (name.to_bytes().to_vec(), unsafe { (*ent).d_type }, unsafe {
                (*ent).d_ino
            });
            if pass == 0 {
                each(unsafe { libc::dirfd(d) }, &e);
            }
            out.push(e);
        }
        all.push(out);
    }
    unsafe { libc::closedir(d) };
    res.map(|_| all)
}

/// One letter for a `d_type`: `f`ile, `d`irectory, `l`ink, `p`ipe, `c`har, `b`lock,
/// `s`ocket, `u`nknown.
fn dtype_letter(t: u8) -> char {
    match t {
        libc::DT_REG => 'f',
        libc::DT_DIR => 'd',
        libc::DT_LNK => 'l',
        libc::DT_FIFO => 'p',
        libc::DT_CHR => 'c',
        libc::DT_BLK => 'b',
        libc::DT_SOCK => 's',
        _ => 'u',
    }
}

/// Entries of a directory (one readdir pass), sorted, including `.` and `..`, each as
/// `name:T` with its `d_type` letter. An entry whose `d_ino` is not the `st_ino` that
/// lstat gives for it (through the same open directory) gets `:ino_mismatch`, and one
/// whose `d_type` is not its lstat type `:type_mismatch` (`..` is not checked: its
/// `d_ino` is unreliable on many filesystems at a mount root).
pub(crate) fn list_names(p: &Path) -> SysResult<Vec<String>> {
    let mut marks: Vec<(Vec<u8>, String)> = Vec::new();
    let mut passes = list_dir_with(p, 1, |dfd, (name, ty, ino)| {
        if name.as_slice() == b".." {
            return;
        }
        let Ok(c) = CString::new(name.clone()) else {
            return;
        };
        let mut st: Stat = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::fstatat(dfd, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        let mut m = String::new();
        if r < 0 {
            m.push_str(":lstat_failed");
        } else {
            if st.st_ino != *ino {
                m.push_str(":ino_mismatch");
            }
            if dtype_letter(*ty) != mode_letter(st.st_mode) {
                m.push_str(":type_mismatch");
            }
        }
        marks.push((name.clone(), m));
    })?;
    let mut names: Vec<String> = passes
        .pop()
        .unwrap_or_default()
        .into_iter()
        .map(|(n, t, _)| {
            let mark = marks
                .iter()
                .find(|(m, _)| *m == n)
                .map(|(_, m)| m.as_str())
                .unwrap_or("");
            format!("{}:{}{mark}", String::from_utf8_lossy(&n), dtype_letter(t))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The `d_type` letter matching a `st_mode`.
fn mode_letter(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFREG => 'f',
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFSOCK => 's',
        _ => 'u',
    }
}

/// Current CLOCK_REALTIME as (sec, nsec).
pub(crate) fn now() -> (i64, i64) {
    let mut t = ts(0, 0);
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut t) };
    (t.tv_sec, t.tv_nsec)
}

pub(crate) fn dup(fd: &Fd) -> SysResult<Fd> {
    check(unsafe { libc::fcntl(fd.0, libc::F_DUPFD_CLOEXEC, 0) }).map(Fd)
}
