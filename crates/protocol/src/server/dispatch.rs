//! Turns one wire request into a call on the brick graph and its answer into a reply.

use bytes::Bytes;
use weft_core::{Ctx, Errno, Fd, Fop, Xdata, XlatorRef};
use weft_wire::frame::MAX_DATA;
use weft_wire::msg::{FopRequest, Reply, Response, MAX_RCHECKSUM_LEN, MAX_READDIR_SIZE};

use super::conn::FdTable;

fn reply<T>(r: Fop<T>, f: impl FnOnce(T) -> Reply) -> Response {
    match r {
        Ok((v, xdata)) => Response {
            xdata,
            result: Ok(f(v)),
        },
        Err(e) => Response {
            xdata: Xdata::default(),
            result: Err(e.0),
        },
    }
}

fn fail(e: Errno) -> Response {
    Response {
        xdata: Xdata::default(),
        result: Err(e.0),
    }
}

/// What a request may make the server hold beyond its own frame, counted against its
/// connection's budget of bytes in flight: a read's size, a checksum's length, a directory
/// read's size, an xattr value's largest size (64 KiB) for the xattr FOPs that answer
/// values, a path's for readlink, and 1 KiB for the task and a small reply on every FOP.
pub(super) fn reply_cost(fop: &FopRequest) -> usize {
    use FopRequest as F;
    const SMALL: usize = 1 << 10;
    const XATTR_VALUE: usize = 64 << 10;
    const PATH: usize = 4096;
    let extra = match fop {
        F::Readv { size, .. } => (*size).min(MAX_DATA) as usize,
        F::Readdir { size, .. } | F::Readdirp { size, .. } => {
            (*size).min(MAX_READDIR_SIZE) as usize
        }
        // A longer one is refused before any work.
        F::Rchecksum { len, .. } if *len <= MAX_RCHECKSUM_LEN => *len as usize,
        F::Getxattr { .. } | F::Fgetxattr { .. } | F::Xattrop { .. } | F::Fxattrop { .. } => {
            XATTR_VALUE
        }
        F::Readlink { .. } => PATH,
        _ => 0,
    };
    SMALL + extra
}

/// Bytes of I/O a request makes the brick do (reading, writing, checksumming, listing),
/// counted against its connection's running work; 0 for the rest.
pub(super) fn work_cost(fop: &FopRequest, data_len: usize) -> usize {
    use FopRequest as F;
    match fop {
        F::Readv { size, .. } if *size <= MAX_DATA => *size as usize,
        F::Writev { .. } => data_len,
        F::Rchecksum { len, .. } if *len <= MAX_RCHECKSUM_LEN => *len as usize,
        F::Readdir { size, .. } | F::Readdirp { size, .. } => {
            (*size).min(MAX_READDIR_SIZE) as usize
        }
        _ => 0,
    }
}

/// True for the lock requests, which may wait (for as long as another request of the same
/// client holds a lock) and so never take a running place.
pub(super) fn may_wait(fop: &FopRequest) -> bool {
    use FopRequest as F;
    matches!(
        fop,
        F::Lk { .. } | F::Inodelk { .. } | F::Finodelk { .. } | F::Entrylk { .. }
    )
}

/// Calls `fop` on `top` for a client; returns the response and the reply's data part.
pub(super) async fn dispatch(
    top: &XlatorRef,
    fds: &FdTable,
    ctx: &Ctx,
    xd: Xdata,
    fop: FopRequest,
    data: Bytes,
) -> (Response, Bytes) {
    use FopRequest as F;
    macro_rules! fd {
        ($n:expr) => {
            match fds.get($n) {
                Some(fd) => fd,
                None => return (fail(Errno::EBADF), Bytes::new()),
            }
        };
    }
    // Opens take their place under the open-fd limits first: over a limit, EMFILE before
    // the brick sees the request (so a create over the limit creates nothing).
    macro_rules! slot {
        () => {
            match fds.reserve() {
                Ok(slot) => slot,
                Err(e) => return (fail(e), Bytes::new()),
            }
        };
    }
    let resp = match fop {
        F::Lookup { loc } => reply(top.lookup(ctx, &loc, xd).await, Reply::Iatt),
        F::Stat { loc } => reply(top.stat(ctx, &loc, xd).await, Reply::Iatt),
        F::Fstat { fd } => reply(top.fstat(ctx, &fd!(fd), xd).await, Reply::Iatt),
        F::Access { loc, mask } => reply(top.access(ctx, &loc, mask, xd).await, |_| Reply::Unit),
        F::Setattr { loc, attr } => reply(top.setattr(ctx, &loc, &attr, xd).await, Reply::Iatt),
        F::Fsetattr { fd, attr } => {
            reply(top.fsetattr(ctx, &fd!(fd), &attr, xd).await, Reply::Iatt)
        }
        F::Truncate { loc, size } => reply(top.truncate(ctx, &loc, size, xd).await, Reply::Iatt),
        F::Ftruncate { fd, size } => {
            reply(top.ftruncate(ctx, &fd!(fd), size, xd).await, Reply::Iatt)
        }
        F::Readlink { loc } => reply(top.readlink(ctx, &loc, xd).await, Reply::Path),
        F::Statfs { loc } => reply(top.statfs(ctx, &loc, xd).await, Reply::StatVfs),
        F::Mkdir { loc, mode, umask } => {
            reply(top.mkdir(ctx, &loc, mode, umask, xd).await, Reply::Iatt)
        }
        F::Rmdir { loc } => reply(top.rmdir(ctx, &loc, xd).await, |_| Reply::Unit),
        F::Unlink { loc } => reply(top.unlink(ctx, &loc, xd).await, |_| Reply::Unit),
        F::Rename { old, new, flags } => {
            reply(top.rename(ctx, &old, &new, flags, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Link { old, new } => reply(top.link(ctx, &old, &new, xd).await, Reply::Iatt),
        F::Symlink { target, loc, umask } => reply(
            top.symlink(ctx, &target, &loc, umask, xd).await,
            Reply::Iatt,
        ),
        F::Mknod {
            loc,
            mode,
            rdev,
            umask,
        } => reply(
            top.mknod(ctx, &loc, mode, rdev, umask, xd).await,
            Reply::Iatt,
        ),
        F::Open { loc, gfid, flags } => {
            let slot = slot!();
            let fd = Fd::new(gfid, flags, false);
            match top.open(ctx, &loc, &fd, xd).await {
                Ok(((), xdata)) => Response {
                    xdata,
                    result: Ok(Reply::Opened {
                        fd: fds.insert(slot, fd),
                    }),
                },
                Err(e) => fail(e),
            }
        }
        F::Create {
            loc,
            gfid,
            flags,
            mode,
            umask,
        } => {
            let slot = slot!();
            let fd = Fd::new(gfid, flags, false);
            match top.create(ctx, &loc, &fd, mode, umask, xd).await {
                Ok((iatt, xdata)) => Response {
                    xdata,
                    result: Ok(Reply::Created {
                        fd: fds.insert(slot, fd),
                        iatt,
                    }),
                },
                Err(e) => fail(e),
            }
        }
        F::Opendir { loc, gfid } => {
            let slot = slot!();
            let fd = Fd::new(gfid, libc::O_RDONLY | libc::O_DIRECTORY, true);
            match top.opendir(ctx, &loc, &fd, xd).await {
                Ok(((), xdata)) => Response {
                    xdata,
                    result: Ok(Reply::Opened {
                        fd: fds.insert(slot, fd),
                    }),
                },
                Err(e) => fail(e),
            }
        }
        F::Writev { fd, offset } => reply(
            top.writev(ctx, &fd!(fd), data, offset, xd).await,
            Reply::Count,
        ),
        F::Readv { size, .. } if size > MAX_DATA => fail(Errno::EINVAL),
        F::Readv { fd, size, offset } => {
            return match top.readv(ctx, &fd!(fd), size, offset, xd).await {
                Ok((bytes, xdata)) => (
                    Response {
                        xdata,
                        result: Ok(Reply::Data),
                    },
                    bytes,
                ),
                Err(e) => (fail(e), Bytes::new()),
            };
        }
        F::Flush { fd } => reply(top.flush(ctx, &fd!(fd), xd).await, |_| Reply::Unit),
        F::Fsync { fd, datasync } => reply(top.fsync(ctx, &fd!(fd), datasync, xd).await, |_| {
            Reply::Unit
        }),
        F::Release { fd } => match fds.remove(fd) {
            Some(f) => reply(top.release(ctx, &f, xd).await, |_| Reply::Unit),
            None => fail(Errno::EBADF),
        },
        F::Releasedir { fd } => match fds.remove(fd) {
            Some(f) => reply(top.releasedir(ctx, &f, xd).await, |_| Reply::Unit),
            None => fail(Errno::EBADF),
        },
        F::Fallocate {
            fd,
            mode,
            offset,
            len,
        } => reply(
            top.fallocate(ctx, &fd!(fd), mode, offset, len, xd).await,
            |_| Reply::Unit,
        ),
        F::Discard { fd, offset, len } => {
            reply(top.discard(ctx, &fd!(fd), offset, len, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Zerofill { fd, offset, len } => {
            reply(top.zerofill(ctx, &fd!(fd), offset, len, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Seek { fd, offset, what } => reply(
            top.seek(ctx, &fd!(fd), offset, what, xd).await,
            Reply::Count,
        ),
        F::Rchecksum { len, .. } if len > MAX_RCHECKSUM_LEN => fail(Errno::EINVAL),
        F::Rchecksum { fd, offset, len } => reply(
            top.rchecksum(ctx, &fd!(fd), offset, len, xd).await,
            Reply::Checksum,
        ),
        F::Readdir { fd, size, offset } => reply(
            top.readdir(ctx, &fd!(fd), size.min(MAX_READDIR_SIZE), offset, xd)
                .await,
            Reply::Dirents,
        ),
        F::Readdirp { fd, size, offset } => reply(
            top.readdirp(ctx, &fd!(fd), size.min(MAX_READDIR_SIZE), offset, xd)
                .await,
            Reply::Dirents,
        ),
        F::Fsyncdir { fd, datasync } => {
            reply(top.fsyncdir(ctx, &fd!(fd), datasync, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Getxattr { loc, name } => reply(
            top.getxattr(ctx, &loc, name.as_deref(), xd).await,
            Reply::Xattrs,
        ),
        F::Fgetxattr { fd, name } => reply(
            top.fgetxattr(ctx, &fd!(fd), name.as_deref(), xd).await,
            Reply::Xattrs,
        ),
        F::Setxattr { loc, attrs, flags } => {
            reply(top.setxattr(ctx, &loc, &attrs, flags, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Fsetxattr { fd, attrs, flags } => reply(
            top.fsetxattr(ctx, &fd!(fd), &attrs, flags, xd).await,
            |_| Reply::Unit,
        ),
        F::Removexattr { loc, name } => {
            reply(top.removexattr(ctx, &loc, &name, xd).await, |_| Reply::Unit)
        }
        F::Fremovexattr { fd, name } => {
            reply(top.fremovexattr(ctx, &fd!(fd), &name, xd).await, |_| {
                Reply::Unit
            })
        }
        F::Xattrop { loc, op, attrs } => {
            reply(top.xattrop(ctx, &loc, op, &attrs, xd).await, Reply::Xattrs)
        }
        F::Fxattrop { fd, op, attrs } => reply(
            top.fxattrop(ctx, &fd!(fd), op, &attrs, xd).await,
            Reply::Xattrs,
        ),
        F::Lk { fd, cmd, lock } => reply(top.lk(ctx, &fd!(fd), cmd, &lock, xd).await, Reply::Flock),
        F::Inodelk {
            domain,
            loc,
            cmd,
            lock,
        } => reply(
            top.inodelk(ctx, &domain, &loc, cmd, &lock, xd).await,
            |_| Reply::Unit,
        ),
        F::Finodelk {
            domain,
            fd,
            cmd,
            lock,
        } => reply(
            top.finodelk(ctx, &domain, &fd!(fd), cmd, &lock, xd).await,
            |_| Reply::Unit,
        ),
        F::Entrylk {
            domain,
            loc,
            basename,
            cmd,
            kind,
        } => reply(
            top.entrylk(ctx, &domain, &loc, basename.as_ref(), cmd, kind, xd)
                .await,
            |_| Reply::Unit,
        ),
    };
    (resp, Bytes::new())
}
