//! An open file of a volume.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use weft_core::{Errno, FdRef, Flock, Gfid, Iatt, LkCmd, Xdata};

use crate::{Error, Result, Volume};

/// A file opened with [`Volume::open`] or [`Volume::create`]. Call [`File::close`] when
/// done: it flushes (releasing the caller's POSIX locks, as close(2) does) and releases
/// the file on every brick.
pub struct File<'v> {
    vol: &'v Volume,
    fd: FdRef,
    /// The path it was opened by, for error messages (lossy).
    path: String,
}

/// The largest read or write sent as one FOP.
const CHUNK: usize = 1 << 20;

impl<'v> File<'v> {
    pub(crate) fn new(vol: &'v Volume, fd: FdRef, path: &Path) -> File<'v> {
        File {
            vol,
            fd,
            path: path.display().to_string(),
        }
    }

    /// The gfid of the open inode, as the bricks know it: what its locks are keyed by.
    pub fn gfid(&self) -> Gfid {
        self.fd.gfid
    }

    fn err(&self, op: &'static str) -> impl Fn(Errno) -> Error + '_ {
        move |errno| Error {
            op,
            path: self.path.clone(),
            errno,
        }
    }

    /// Up to `size` bytes at `offset`; fewer only at the end of the file.
    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes> {
        let r = self
            .vol
            .top()
            .readv(self.vol.ctx(), &self.fd, size, offset, Xdata::new())
            .await;
        r.map(|(b, _)| b).map_err(self.err("read"))
    }

    /// Everything from offset 0 to the end of the file.
    pub async fn read_to_end(&self) -> Result<Bytes> {
        let mut out = BytesMut::new();
        loop {
            let b = self.read(out.len() as u64, CHUNK as u32).await?;
            if b.is_empty() {
                return Ok(out.freeze());
            }
            out.extend_from_slice(&b);
        }
    }

    /// Writes `data` at `offset`, or, for a file opened O_APPEND, atomically at the end of
    /// the file as the brick has it (`offset` is then ignored); returns bytes written.
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<u64> {
        let mut xd = Xdata::new();
        if self.fd.flags & libc::O_APPEND != 0 {
            xd.set(weft_core::WRITE_APPEND_KEY, Vec::new());
        }
        let r = self
            .vol
            .top()
            .writev(self.vol.ctx(), &self.fd, data, offset, xd)
            .await;
        r.map(|(n, _)| n).map_err(self.err("write"))
    }

    /// Writes all of `data` at `offset`, in 1 MiB FOPs.
    pub async fn write_all(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let end = (done + CHUNK).min(data.len());
            let n = self
                .write(
                    offset + done as u64,
                    Bytes::copy_from_slice(&data[done..end]),
                )
                .await?;
            if n == 0 {
                return Err(self.err("write")(Errno::EIO));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Makes what was written durable.
    pub async fn fsync(&self) -> Result<()> {
        let r = self
            .vol
            .top()
            .fsync(self.vol.ctx(), &self.fd, false, Xdata::new())
            .await;
        r.map(|_| ()).map_err(self.err("fsync"))
    }

    /// The file's attributes.
    pub async fn stat(&self) -> Result<Iatt> {
        let r = self
            .vol
            .top()
            .fstat(self.vol.ctx(), &self.fd, Xdata::new())
            .await;
        r.map(|(ia, _)| ia).map_err(self.err("fstat"))
    }

    /// Sets the file's size.
    pub async fn truncate(&self, size: u64) -> Result<Iatt> {
        let r = self
            .vol
            .top()
            .ftruncate(self.vol.ctx(), &self.fd, size, Xdata::new())
            .await;
        r.map(|(ia, _)| ia).map_err(self.err("ftruncate"))
    }

    /// A POSIX byte-range lock request (fcntl's F_GETLK / F_SETLK / F_SETLKW); the lock's
    /// owner tells lock holders apart.
    pub async fn lock(&self, cmd: LkCmd, lock: &Flock) -> Result<Flock> {
        let r = self
            .vol
            .top()
            .lk(self.vol.ctx(), &self.fd, cmd, lock, Xdata::new())
            .await;
        r.map(|(l, _)| l).map_err(self.err("lock"))
    }

    /// Flushes and releases the file.
    pub async fn close(self) -> Result<()> {
        let top = self.vol.top();
        let flushed = top.flush(self.vol.ctx(), &self.fd, Xdata::new()).await;
        let _ = top.release(self.vol.ctx(), &self.fd, Xdata::new()).await;
        flushed.map(|_| ()).map_err(self.err("close"))
    }
}
