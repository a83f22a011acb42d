//! Removes the handles of unlinked files off the FOP's path.
//!
//! When a file's last name goes, its gfid handle (`.weft/handles/AB/CD/<gfid>`) is its
//! only link left and must go too. Removing it there and then costs the unlink most of its
//! time: the handle folder is one of 65,536, seldom in the kernel's cache when files are
//! removed long after they were made (a disk read), and the removal frees the inode and
//! its blocks. So an unlink appends the gfid to the reap log `.weft/reap/log` (16 bytes
//! at the end of a file kept open: no inode made or freed per unlink) and answers; the
//! brick's [`Reaper`] thread then removes the handle if it is still the only link. Once
//! every gfid logged is reaped and the log has grown past [`LOG_KEEP`], it is emptied. A
//! handle waiting there is already invisible: resolving a gfid whose non-directory handle
//! has no other link answers `ESTALE` ([`super::brick::Brick::resolve`]), as it did once
//! the handle was gone, and a create that reuses the gfid replaces it as any stale handle.
//! A brick process that stops before its reaper is done finds the gfids in the log when
//! it opens again and reaps them before it serves (reaping is idempotent: a handle with
//! another link, or none, is left as it is). Bricks written before the log marked each
//! gfid with an empty file `.weft/reap/<gfid>`; those are reaped at start too.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use weft_core::Gfid;

use super::brick::Brick;
use super::sys::{open_beneath, Pin};

/// `.weft/reap`, relative to the brick root.
pub const REAP_DIR: &str = ".weft/reap";

/// The name of the reap log in `.weft/reap`.
const LOG: &str = "log";

/// Bytes the reap log may hold (gfids already reaped) before it is emptied: 4,096 gfids.
/// Emptying it only when all are reaped, and only past this size, keeps a steady stream
/// of unlinks from freeing and allocating its block over and over; a brick opening after
/// a crash reaps at most this many gfids already gone, a moment's work.
pub const LOG_KEEP: u64 = 64 * 1024;

/// The reap log, appended to under this lock.
struct Log {
    /// `.weft/reap/log`, opened for appending.
    file: OwnedFd,
    /// Gfids appended and not yet reaped.
    pending: u64,
    /// Its length.
    len: u64,
}

/// A brick's reaper: a thread removing the handles of files whose last name went.
pub struct Reaper {
    /// To the thread; `None` when it could not start. The thread ends when this goes.
    tx: Mutex<Option<mpsc::Sender<Gfid>>>,
    /// The log; `None` when it could not be opened (unlinks then remove handles inline).
    log: Arc<Mutex<Option<Log>>>,
}

impl Reaper {
    /// Starts the reaper of the brick whose `.weft/reap` and `.weft/handles` are open as
    /// `reap_fd` and `handles_fd`, after reaping here what an earlier run left (the gfids
    /// in the log and any marker files), so an opened brick has nothing waiting.
    pub fn start(reap_fd: OwnedFd, handles_fd: &OwnedFd) -> Reaper {
        for g in markers(&reap_fd) {
            remove_if_orphan(handles_fd, &g);
            let _ = rfs::unlinkat(&reap_fd, g.to_string().as_str(), AtFlags::empty());
        }
        let log = open_log(&reap_fd, handles_fd);
        if let Err(e) = &log {
            tracing::warn!(
                "cannot open the reap log {REAP_DIR}/{LOG}: {e}; unlinks remove handles themselves"
            );
        }
        let log = Arc::new(Mutex::new(log.ok()));
        let (tx, rx) = mpsc::channel::<Gfid>();
        let started = match handles_fd.try_clone() {
            Ok(h) if log.lock().is_some() => {
                let log = log.clone();
                std::thread::Builder::new()
                    .name("weft-reaper".into())
                    .spawn(move || {
                        for g in rx {
                            remove_if_orphan(&h, &g);
                            reaped(&log);
                        }
                    })
                    .is_ok()
            }
            _ => false,
        };
        Reaper {
            tx: Mutex::new(started.then_some(tx)),
            log,
        }
    }

    /// Has the handle of non-directory `g`, whose name was just removed, removed soon if
    /// no other name is left. False when it cannot be left to the thread (no thread, or
    /// the log could not take it): the caller removes it itself.
    pub fn defer(&self, g: &Gfid) -> bool {
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else { return false };
        let mut log = self.log.lock();
        let Some(l) = log.as_mut() else { return false };
        // O_APPEND: one write of 16 bytes lands whole at the end.
        if rustix::io::write(&l.file, &g.0) != Ok(g.0.len()) {
            return false;
        }
        l.len += g.0.len() as u64;
        if tx.send(*g).is_err() {
            return false;
        }
        l.pending += 1;
        true
    }
}

/// Opens (or creates) the reap log beneath `reap_fd`, reaps every gfid in it, and empties
/// it.
fn open_log(reap_fd: &OwnedFd, handles_fd: &OwnedFd) -> std::io::Result<Log> {
    let file = rfs::openat(
        reap_fd,
        LOG,
        OFlags::CREATE | OFlags::RDWR | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = rustix::io::pread(&file, &mut buf, at)?;
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    // A torn last record (a crash inside the write) names nothing: skipped.
    for rec in all.chunks_exact(16) {
        if let Some(g) = Gfid::from_slice(rec) {
            remove_if_orphan(handles_fd, &g);
        }
    }
    rfs::ftruncate(&file, 0)?;
    Ok(Log {
        file,
        pending: 0,
        len: 0,
    })
}

/// One gfid of the log was reaped: the log is emptied when none is left to reap and it
/// has grown past [`LOG_KEEP`].
fn reaped(log: &Mutex<Option<Log>>) {
    let mut log = log.lock();
    let Some(l) = log.as_mut() else { return };
    l.pending = l.pending.saturating_sub(1);
    if l.pending == 0 && l.len >= LOG_KEEP {
        match rfs::ftruncate(&l.file, 0) {
            Ok(()) => l.len = 0,
            Err(e) => tracing::warn!("cannot empty the reap log {REAP_DIR}/{LOG}: {e}"),
        }
    }
}

/// The gfids marked in the reap folder `reap_fd` now.
fn markers(reap_fd: &OwnedFd) -> Vec<Gfid> {
    let dir = open_beneath(reap_fd.as_fd(), b"", OFlags::RDONLY | OFlags::DIRECTORY);
    let Ok(mut it) = dir.and_then(|d| rfs::Dir::new(d).map_err(super::sys::ex)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(e)) = it.next() {
        if let Some(g) = e.file_name().to_str().ok().and_then(|s| s.parse().ok()) {
            out.push(g);
        }
    }
    out
}

/// Removes `g`'s handle (beneath `handles_fd`) if it is a non-directory's and its only
/// link: the link count is read from the handle itself, so a file that got another name
/// meanwhile keeps it.
pub fn remove_if_orphan(handles_fd: &OwnedFd, g: &Gfid) {
    let rel = Brick::handle_rel(g);
    if let Ok(h) = open_beneath(handles_fd.as_fd(), rel.as_bytes(), OFlags::PATH).and_then(Pin::new)
    {
        // A directory's handle is a symlink without a gfid of its own: never one of these.
        let file = h.kind() != libc::S_IFLNK || h.gfid() == Some(*g);
        if file && h.kind() != libc::S_IFDIR && h.st.st_nlink == 1 {
            let _ = rfs::unlinkat(handles_fd, rel.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use weft_core::{Gfid, Loc};

    use super::super::brick::Brick;

    /// Waits up to 10 s for `cond`.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The entries of the reap folder (the log among them).
    fn markers(root: &Path) -> usize {
        std::fs::read_dir(root.join(super::REAP_DIR))
            .unwrap()
            .count()
    }

    fn log_len(root: &Path) -> u64 {
        std::fs::metadata(root.join(super::REAP_DIR).join(super::LOG))
            .unwrap()
            .len()
    }

    fn handle(root: &Path, g: &Gfid) -> std::path::PathBuf {
        root.join(".weft/handles").join(Brick::handle_rel(g))
    }

    /// After an unlink the file's gfid resolves no more, at once; its handle (and so the
    /// inode) goes soon after, and the marker with it. A file with another name keeps it.
    #[test]
    fn an_unlinked_files_gfid_is_gone_at_once_and_its_handle_soon_after() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 8192]).unwrap();
        std::fs::write(dir.path().join("two"), b"2").unwrap();
        let g = b.lookup(&Loc::entry(Gfid::ROOT, "f")).unwrap().gfid;
        let g2 = b.lookup(&Loc::entry(Gfid::ROOT, "two")).unwrap().gfid;
        b.link(&Loc::inode(g2), &Loc::entry(Gfid::ROOT, "other"))
            .unwrap();
        b.unlink(&Loc::entry(Gfid::ROOT, "f").with_gfid(g), None)
            .unwrap();
        b.unlink(&Loc::entry(Gfid::ROOT, "two").with_gfid(g2), None)
            .unwrap();
        assert_eq!(b.stat(&Loc::inode(g)).err(), Some(weft_core::Errno::ESTALE));
        assert_eq!(b.stat(&Loc::inode(g2)).unwrap().nlink, 1, "still named");
        eventually("the handle went", || !handle(dir.path(), &g).exists());
        assert_eq!(
            markers(dir.path()),
            1,
            "only the log: no file made per unlink"
        );
        assert_eq!(
            std::fs::metadata(handle(dir.path(), &g2)).unwrap().nlink(),
            2
        );
    }

    /// Markers left by a brick that stopped are reaped when it opens again, before it
    /// serves (an offline check then sees no handle waiting).
    #[test]
    fn markers_left_behind_are_reaped_at_the_next_start() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let g = {
            let b = Brick::open(dir.path()).unwrap();
            std::fs::write(dir.path().join("f"), b"x").unwrap();
            b.lookup(&Loc::entry(Gfid::ROOT, "f")).unwrap().gfid
        };
        // As a brick killed right after the unlink answered leaves it.
        std::fs::remove_file(dir.path().join("f")).unwrap();
        std::fs::write(dir.path().join(super::REAP_DIR).join(g.to_string()), b"").unwrap();
        assert!(handle(dir.path(), &g).exists());
        let _b = Brick::open(dir.path()).unwrap();
        assert_eq!(markers(dir.path()), 1, "the marker went, the log stays");
        assert!(!handle(dir.path(), &g).exists());
    }

    /// Gfids in the log of a brick killed before its reaper got to them are reaped when
    /// it opens again, before it serves; a torn last record is skipped; the log is then
    /// empty. A gfid whose file still has a name keeps its handle.
    #[test]
    fn gfids_left_in_the_log_are_reaped_at_the_next_start() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let (gone, kept) = {
            let b = Brick::open(dir.path()).unwrap();
            std::fs::write(dir.path().join("f"), b"x").unwrap();
            std::fs::write(dir.path().join("k"), b"y").unwrap();
            let gone = b.lookup(&Loc::entry(Gfid::ROOT, "f")).unwrap().gfid;
            let kept = b.lookup(&Loc::entry(Gfid::ROOT, "k")).unwrap().gfid;
            (gone, kept)
        };
        // As a brick killed right after the unlink answered leaves it.
        std::fs::remove_file(dir.path().join("f")).unwrap();
        let mut log = gone.0.to_vec();
        log.extend_from_slice(&kept.0);
        log.extend_from_slice(&[7u8; 5]);
        std::fs::write(dir.path().join(super::REAP_DIR).join(super::LOG), log).unwrap();
        let _b = Brick::open(dir.path()).unwrap();
        assert!(!handle(dir.path(), &gone).exists());
        assert!(handle(dir.path(), &kept).exists());
        assert_eq!(log_len(dir.path()), 0);
    }

    /// The log is emptied once it has grown past LOG_KEEP and every gfid in it is reaped.
    #[test]
    fn the_log_is_emptied_once_long_and_reaped() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        let n = super::LOG_KEEP / 16 + 10;
        let mut all = Vec::new();
        for i in 0..n {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            let g = b.lookup(&Loc::entry(Gfid::ROOT, &name)).unwrap().gfid;
            b.unlink(&Loc::entry(Gfid::ROOT, &name).with_gfid(g), None)
                .unwrap();
            all.push(g);
        }
        eventually("every handle went", || {
            all.iter().all(|g| !handle(dir.path(), g).exists())
        });
        eventually("the log was emptied", || {
            log_len(dir.path()) < super::LOG_KEEP
        });
    }
}
