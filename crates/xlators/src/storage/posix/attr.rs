//! Attribute FOPs on a brick: setattr, access, statfs and extended attributes.
//!
//! Weft's own xattrs (`trusted.weft.*`) are invisible to clients: getxattr says ENODATA,
//! listxattr leaves them out, setxattr/removexattr say EPERM. Cluster translators that own
//! such xattrs pass [`INTERNAL_XDATA_KEY`] in xdata to reach them.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, AtFlags, Mode, Timestamps, XattrFlags, CWD};
use weft_core::{
    Ctx, Errno, SetAttr, SetTime, StatVfs, XattrMap, XattropOp, Xdata, INTERNAL_XATTR_PREFIX,
};

use super::brick::ex;
use super::sys::Pin;

/// Present in a call's xdata when a Weft translator (not a client) asks for internal xattrs.
pub const INTERNAL_XDATA_KEY: &str = "weft.internal";

/// The inode an attribute FOP works on: a pinned inode (reached through its `/proc` link,
/// so never followed if a symlink) or an open file.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A pinned inode on the brick.
    Pin(&'a Pin),
    /// An open brick file.
    Fd(BorrowedFd<'a>),
}

/// Where xattrs are read from: an attribute FOP's inode, or entry `name` of a directory,
/// read without opening it and never followed ([`super::xattr_at`]).
#[derive(Clone, Copy)]
pub enum Src<'a> {
    /// A pinned inode or an open file.
    Of(Target<'a>),
    /// Entry `name` (one component) of the directory open as the descriptor.
    Entry(BorrowedFd<'a>, &'a OsStr),
}

impl<'a> From<Target<'a>> for Src<'a> {
    fn from(t: Target<'a>) -> Src<'a> {
        Src::Of(t)
    }
}

fn rtime(t: Option<SetTime>) -> rfs::Timespec {
    match t {
        None => rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        Some(SetTime::Now) => rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_NOW,
        },
        Some(SetTime::At(ts)) => rfs::Timespec {
            tv_sec: ts.sec,
            tv_nsec: ts.nsec as _,
        },
    }
}

/// Applies `a` to `t`: owner first (it may clear setuid bits), then mode, size and times.
pub fn setattr(t: Target<'_>, a: &SetAttr) -> Result<(), Errno> {
    if a.uid.is_some() || a.gid.is_some() {
        // u32::MAX means "unchanged", as chown(2)'s -1.
        let uid = a.uid.filter(|&u| u != u32::MAX).map(rfs::Uid::from_raw);
        let gid = a.gid.filter(|&g| g != u32::MAX).map(rfs::Gid::from_raw);
        match t {
            Target::Pin(p) => rfs::chownat(
                &p.fd,
                "",
                uid,
                gid,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            ),
            Target::Fd(fd) => rfs::fchown(fd, uid, gid),
        }
        .map_err(ex)?;
    }
    if let Some(mode) = a.mode {
        let m = Mode::from_raw_mode(mode & 0o7777);
        match t {
            // Never follow a symlink on the brick (its target may lie outside): a symlink's
            // own mode cannot change on Linux, so that is EOPNOTSUPP, as for local files.
            Target::Pin(p) if p.kind() == libc::S_IFLNK => return Err(Errno::ENOTSUP),
            Target::Pin(p) => rfs::chmodat(CWD, p.proc().as_str(), m, AtFlags::empty()),
            Target::Fd(fd) => rfs::fchmod(fd, m),
        }
        .map_err(ex)?;
    }
    if let Some(size) = a.size {
        match t {
            Target::Pin(p) => {
                match p.kind() {
                    libc::S_IFREG => {}
                    libc::S_IFDIR => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EINVAL),
                }
                let fd = p.reopen(rfs::OFlags::WRONLY | rfs::OFlags::NONBLOCK)?;
                rfs::ftruncate(&fd, size).map_err(ex)?;
            }
            Target::Fd(fd) => match rfs::ftruncate(fd, size) {
                // An fd open only for reading (a truncate by path of a file whose name
                // went, reaching it through another client's open file): through a
                // writable open of the same inode.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::BADF) => {
                    let w = rfs::open(
                        super::sys::proc_path(fd).as_str(),
                        rfs::OFlags::WRONLY | rfs::OFlags::NONBLOCK | rfs::OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(ex)?;
                    rfs::ftruncate(&w, size).map_err(ex)?
                }
                r => r.map_err(ex)?,
            },
        }
    }
    if a.atime.is_some() || a.mtime.is_some() {
        let ts = Timestamps {
            last_access: rtime(a.atime),
            last_modification: rtime(a.mtime),
        };
        match t {
            Target::Pin(p) => rfs::utimensat(
                &p.fd,
                "",
                &ts,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            ),
            Target::Fd(fd) => rfs::futimens(fd, &ts),
        }
        .map_err(ex)?;
    }
    Ok(())
}

/// access(2) for the caller `ctx` against the inode's mode bits (root passes all but
/// execute, which needs some x bit).
pub fn access(t: Target<'_>, ctx: &Ctx, mask: u32) -> Result<(), Errno> {
    let st = match t {
        Target::Pin(p) => p.restat(),
        Target::Fd(fd) => rfs::fstat(fd).map_err(ex),
    }?;
    let mask = mask & 0o7;
    let mode = st.st_mode;
    if ctx.uid == 0 {
        let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
        if mask & 1 != 0 && !is_dir && mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        return Ok(());
    }
    let bits = if ctx.uid == st.st_uid {
        (mode >> 6) & 7
    } else if ctx.gid == st.st_gid {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    if bits & mask == mask {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// statvfs of the filesystem holding `fd` (the brick root).
pub fn statfs(fd: BorrowedFd<'_>) -> Result<StatVfs, Errno> {
    let s = rfs::fstatvfs(fd).map_err(ex)?;
    Ok(StatVfs {
        bsize: s.f_bsize,
        frsize: s.f_frsize,
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        namemax: s.f_namemax,
    })
}

fn internal(name: &str) -> bool {
    name.starts_with(INTERNAL_XATTR_PREFIX)
}

fn allowed(name: &str, xd: &Xdata) -> bool {
    !internal(name) || xd.has(INTERNAL_XDATA_KEY)
}

fn get_one<'a>(t: impl Into<Src<'a>>, name: &str) -> Result<Vec<u8>, Errno> {
    let t = t.into();
    let mut buf = vec![0u8; 256];
    loop {
        let r = match t {
            Src::Of(Target::Pin(p)) => rfs::getxattr(p.proc().as_str(), name, &mut buf[..]),
            Src::Of(Target::Fd(fd)) => rfs::fgetxattr(fd, name, &mut buf[..]),
            Src::Entry(dir, entry) => super::xattr_at::get(dir, entry, name, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 17 => buf.resize(buf.len() * 16, 0),
            Err(e) => return Err(ex(e)),
        }
    }
}

fn list_names(t: Src<'_>) -> Result<Vec<String>, Errno> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        let r = match t {
            Src::Of(Target::Pin(p)) => rfs::listxattr(p.proc().as_str(), &mut buf[..]),
            Src::Of(Target::Fd(fd)) => rfs::flistxattr(fd, &mut buf[..]),
            Src::Entry(dir, entry) => super::xattr_at::list(dir, entry, &mut buf[..]),
        };
        match r {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 8, 0),
            Err(e) => return Err(ex(e)),
        }
    };
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// The values of every xattr `t` lists whose name `wanted` accepts (a name removed
/// between the listing and its read is skipped).
fn getxattr_listed<'a>(
    t: impl Into<Src<'a>>,
    wanted: impl Fn(&str) -> bool,
) -> Result<XattrMap, Errno> {
    let t = t.into();
    let mut out = XattrMap::new();
    for n in list_names(t)? {
        if !wanted(&n) {
            continue;
        }
        match get_one(t, &n) {
            Ok(v) => {
                out.insert(n, v);
            }
            Err(e) if e == Errno::ENODATA => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The xattr `name`, or all visible xattrs when `name` is `None`.
pub fn getxattr(t: Target<'_>, name: Option<&str>, xd: &Xdata) -> Result<XattrMap, Errno> {
    match name {
        Some(n) if !allowed(n, xd) => Err(Errno::ENODATA),
        Some(n) => {
            let mut out = XattrMap::new();
            out.insert(n.to_string(), get_one(t, n)?);
            Ok(out)
        }
        None => getxattr_listed(t, |n| allowed(n, xd)),
    }
}

/// The values `t` has among `names` (one listxattr, then one getxattr per name it has;
/// internal names are never answered): the answer to a readdirp's
/// [`weft_core::READDIRP_XATTRS_KEY`].
pub fn getxattr_named<'a>(t: impl Into<Src<'a>>, names: &[String]) -> Result<XattrMap, Errno> {
    let none = Xdata::new();
    getxattr_listed(t, |n| {
        // Small values only: a listing's reply must stay near its asked size.
        let listed = n.starts_with("security.") || n.starts_with("system.posix_acl_");
        listed && names.iter().any(|w| w == n) && allowed(n, &none)
    })
}

/// Every xattr whose name starts with `prefix` that `xd` may see (the answer to a lookup's
/// [`weft_core::LOOKUP_XATTRS_KEY`]).
pub fn getxattr_prefixed(t: Target<'_>, prefix: &str, xd: &Xdata) -> Result<XattrMap, Errno> {
    getxattr_listed(t, |n| n.starts_with(prefix) && allowed(n, xd))
}

/// Sets every xattr in `attrs` with XATTR_CREATE/XATTR_REPLACE `flags`.
pub fn setxattr(t: Target<'_>, attrs: &XattrMap, flags: i32, xd: &Xdata) -> Result<(), Errno> {
    let f = XattrFlags::from_bits(flags as u32).ok_or(Errno::EINVAL)?;
    for (n, v) in attrs {
        if !allowed(n, xd) {
            return Err(Errno::EPERM);
        }
        match t {
            Target::Pin(p) => rfs::setxattr(p.proc().as_str(), n.as_str(), v, f),
            Target::Fd(fd) => rfs::fsetxattr(fd, n.as_str(), v, f),
        }
        .map_err(ex)?;
    }
    Ok(())
}

/// Removes xattr `name`.
pub fn removexattr(t: Target<'_>, name: &str, xd: &Xdata) -> Result<(), Errno> {
    if !allowed(name, xd) {
        return Err(Errno::EPERM);
    }
    match t {
        Target::Pin(p) => rfs::removexattr(p.proc().as_str(), name),
        Target::Fd(fd) => rfs::fremovexattr(fd, name),
    }
    .map_err(ex)
}

/// The names [`weft_core::XATTROP_ORDER_KEY`] lists in `xd` (none when absent or not
/// UTF-8).
pub fn xattrop_order(xd: &Xdata) -> Vec<String> {
    xd.get(weft_core::XATTROP_ORDER_KEY)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|s| {
            s.split('\0')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Adds big-endian counters in `attrs` to those on disk, element-wise; the caller holds the
/// lock that makes this atomic among callers. Missing xattrs count as zeros. The names in
/// `order` go first, in that order, then the rest in name order: one `setxattr` each, so a
/// process killed in between leaves exactly a prefix of that sequence applied.
pub fn xattrop(
    t: Target<'_>,
    op: XattropOp,
    attrs: &XattrMap,
    order: &[String],
) -> Result<XattrMap, Errno> {
    let width = match op {
        XattropOp::AddArray32 => 4,
        XattropOp::AddArray64 => 8,
    };
    let mut out = XattrMap::new();
    let listed = order.iter().filter_map(|n| attrs.get_key_value(n));
    let rest = attrs.iter().filter(|(n, _)| !order.contains(n));
    for (n, add) in listed.chain(rest) {
        if add.len() % width != 0 {
            return Err(Errno::EINVAL);
        }
        let mut cur = match get_one(t, n) {
            Ok(v) => v,
            Err(e) if e == Errno::ENODATA => vec![0; add.len()],
            Err(e) => return Err(e),
        };
        if cur.len() != add.len() {
            cur.resize(add.len(), 0);
        }
        for (c, a) in cur.chunks_mut(width).zip(add.chunks(width)) {
            if width == 4 {
                let v = u32::from_be_bytes(c.try_into().unwrap_or([0; 4]))
                    .wrapping_add(u32::from_be_bytes(a.try_into().unwrap_or([0; 4])));
                c.copy_from_slice(&v.to_be_bytes());
            } else {
                let v = u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))
                    .wrapping_add(u64::from_be_bytes(a.try_into().unwrap_or([0; 8])));
                c.copy_from_slice(&v.to_be_bytes());
            }
        }
        match t {
            Target::Pin(p) => {
                rfs::setxattr(p.proc().as_str(), n.as_str(), &cur, XattrFlags::empty())
            }
            Target::Fd(fd) => rfs::fsetxattr(fd, n.as_str(), &cur, XattrFlags::empty()),
        }
        .map_err(ex)?;
        out.insert(n.clone(), cur);
    }
    Ok(out)
}
