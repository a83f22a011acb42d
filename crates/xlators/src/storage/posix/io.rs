//! File I/O FOPs on a brick: open, read, write, sync, allocate, seek, checksum.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bytes::Bytes;
use rustix::fs::{self as rfs, FallocateFlags, OFlags, SeekFrom};
use weft_core::{Checksum, Errno, Gfid, Iatt, Loc, SeekWhat};

use super::brick::{ex, iatt, Brick};

/// The longest range one `rchecksum` may cover (heal compares files in pieces this big
/// or smaller).
pub const RCHECKSUM_MAX: u32 = 1 << 20;

/// An open file's state on the posix translator: the brick file descriptor.
pub struct PosixFile {
    /// The open brick file (also alive after its last name is unlinked).
    pub fd: OwnedFd,
    /// Its gfid.
    pub gfid: Gfid,
}

/// The brick-side open flags for a client's `flags`: access mode, O_TRUNC, O_SYNC/O_DSYNC
/// and O_NOATIME are honoured; O_DIRECT is dropped (client buffers are not aligned),
/// symlinks are never followed, and O_APPEND is dropped: the client's offset is
/// authoritative, and an append is asked for per write ([`weft_core::WRITE_APPEND_KEY`]).
pub fn open_flags(flags: i32) -> OFlags {
    let keep = libc::O_ACCMODE
        | libc::O_TRUNC
        | libc::O_SYNC
        | libc::O_DSYNC
        | libc::O_CREAT
        | libc::O_EXCL;
    let mut f =
        OFlags::from_bits_retain((flags & keep) as u32) | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if flags & libc::O_NOATIME != 0 {
        f |= OFlags::NOATIME;
    }
    f
}

/// Writes all of `data` at `offset` of `fd` (std's `write_all_at`: short writes go on,
/// EINTR is retried).
pub fn write_all_at(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> Result<(), Errno> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::FileExt;
    // SAFETY: the File is never dropped (ManuallyDrop), so the fd stays owned by its owner,
    // which outlives this call (`fd` borrows it).
    let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
    file.write_all_at(data, offset)
        .map_err(|e| Errno::from_io(&e))
}

impl Brick {
    /// Opens the inode `loc` names with the client's `flags` (a regular file or a
    /// directory; the brick never opens a FIFO or device, nor follows a symlink).
    pub fn open_file(&self, loc: &Loc, flags: i32) -> Result<PosixFile, Errno> {
        let fl = open_flags(flags) & !(OFlags::CREATE | OFlags::EXCL);
        let node = self.inode(loc)?;
        let gfid = loc.gfid.or_else(|| node.gfid()).ok_or(Errno::EIO)?;
        let fd = node.reopen(fl)?;
        Ok(PosixFile { fd, gfid })
    }
}

impl PosixFile {
    /// Attributes of the open file.
    pub fn fstat(&self) -> Result<Iatt, Errno> {
        let st = rfs::fstat(&self.fd).map_err(ex)?;
        Ok(iatt(self.gfid, &st))
    }

    /// Reads up to `size` bytes at `offset`, short only at end of file. The buffer is not
    /// zero-filled first: each pread fills the part it reports.
    pub fn read(&self, size: u32, offset: u64) -> Result<Bytes, Errno> {
        let mut buf: Vec<u8> = Vec::with_capacity(size as usize);
        while buf.len() < size as usize {
            let at = offset + buf.len() as u64;
            match rustix::io::pread(&self.fd, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ex(e)),
            }
        }
        Ok(Bytes::from(buf))
    }

    /// Writes all of `data` at `offset`.
    pub fn write(&self, data: &[u8], offset: u64) -> Result<u64, Errno> {
        write_all_at(self.fd.as_fd(), data, offset)?;
        Ok(data.len() as u64)
    }

    /// Appends all of `data` at the end of the file, atomically with respect to other
    /// appenders (`pwritev2(RWF_APPEND)`).
    pub fn append(&self, data: &[u8]) -> Result<u64, Errno> {
        let mut done = 0usize;
        while done < data.len() {
            match rustix::io::pwritev2(
                &self.fd,
                &[std::io::IoSlice::new(&data[done..])],
                0,
                rustix::io::ReadWriteFlags::APPEND,
            ) {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ex(e)),
            }
        }
        Ok(data.len() as u64)
    }

    /// fsync or fdatasync.
    pub fn sync(&self, datasync: bool) -> Result<(), Errno> {
        if datasync {
            rfs::fdatasync(&self.fd)
        } else {
            rfs::fsync(&self.fd)
        }
        .map_err(ex)
    }

    /// Sets the size.
    pub fn truncate(&self, size: u64) -> Result<Iatt, Errno> {
        rfs::ftruncate(&self.fd, size).map_err(ex)?;
        self.fstat()
    }

    /// fallocate(2) with the raw `mode` flags.
    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
        let flags = FallocateFlags::from_bits(mode as u32).ok_or(Errno::ENOTSUP)?;
        rfs::fallocate(&self.fd, flags, offset, len).map_err(ex)
    }

    /// Punches a hole; the size stays.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Zeroes a range, extending the file if it ends past the end.
    pub fn zerofill(&self, offset: u64, len: u64) -> Result<(), Errno> {
        match self.fallocate(libc::FALLOC_FL_ZERO_RANGE, offset, len) {
            Err(e) if e == Errno::ENOTSUP || e == Errno(libc::EOPNOTSUPP) => {
                let zeros = vec![0u8; 1 << 20];
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(zeros.len() as u64) as usize;
                    self.write(&zeros[..n], offset + done)?;
                    done += n as u64;
                }
                Ok(())
            }
            r => r,
        }
    }

    /// The next data or hole offset at or after `offset`.
    pub fn seek(&self, offset: u64, what: SeekWhat) -> Result<u64, Errno> {
        let pos = match what {
            SeekWhat::Data => SeekFrom::Data(offset),
            SeekWhat::Hole => SeekFrom::Hole(offset),
        };
        rfs::seek(self.fd.as_fd(), pos).map_err(ex)
    }

    /// Adler-32 and BLAKE3 of `len` bytes at `offset` (fewer at end of file), read in
    /// 64 KiB pieces so memory does not grow with `len`; `len` over
    /// [`RCHECKSUM_MAX`] is `EINVAL`.
    pub fn checksum(&self, offset: u64, len: u32) -> Result<Checksum, Errno> {
        if len > RCHECKSUM_MAX {
            return Err(Errno::EINVAL);
        }
        let mut a = adler2::Adler32::new();
        let mut h = blake3::Hasher::new();
        let mut done = 0u32;
        while done < len {
            let piece = self.read((len - done).min(64 << 10), offset + done as u64)?;
            if piece.is_empty() {
                break;
            }
            a.write_slice(&piece);
            h.update(&piece);
            done += piece.len() as u32;
        }
        Ok(Checksum {
            weak: a.checksum(),
            strong: h.finalize().as_bytes().to_vec(),
        })
    }
}
