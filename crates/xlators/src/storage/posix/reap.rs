//! Removes the handles of unlinked files off the FOP's path.
//!
//! When a file's last name goes, its gfid handle (`.weft/handles/AB/CD/<gfid>`) is its
//! only link left and must go too. Removing it there and then costs the unlink most of its
//! time: the handle folder is one of 65,536, seldom in the kernel's cache when files are
//! removed long after they were made (a disk read), and the removal frees the inode and
//! its blocks. So an unlink leaves a marker `.weft/reap/<gfid>` (an empty file in one
//! folder that stays cached) and answers; the brick's [`Reaper`] thread then removes the
//! handle if it is still the only link, and the marker. A handle waiting there is already
//! invisible: resolving a gfid whose non-directory handle has no other link answers
//! `ESTALE` ([`super::brick::Brick::resolve`]), as it did once the handle was gone, and
//! a create that reuses the gfid replaces it as any stale handle. A brick process that
//! stops before its reaper is done finds the markers when it opens again and reaps them
//! before it serves.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

use parking_lot::Mutex;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use weft_core::Gfid;

use super::brick::Brick;
use super::sys::{open_beneath, Pin};

/// `.weft/reap`, relative to the brick root.
pub const REAP_DIR: &str = ".weft/reap";

/// A brick's reaper: a thread removing the handles of files whose last name went.
pub struct Reaper {
    /// To the thread; `None` when it could not start. The thread ends when this goes.
    tx: Mutex<Option<mpsc::Sender<Gfid>>>,
    /// `O_PATH` descriptor of `.weft/reap`.
    reap_fd: OwnedFd,
}

impl Reaper {
    /// Starts the reaper of the brick whose `.weft/reap` and `.weft/handles` are open as
    /// `reap_fd` and `handles_fd`, after reaping here the markers an earlier run left (a
    /// few: the reaper keeps up with unlinks), so an opened brick has none of its own.
    pub fn start(reap_fd: OwnedFd, handles_fd: &OwnedFd) -> Reaper {
        for g in markers(&reap_fd) {
            reap(&reap_fd, handles_fd, &g);
        }
        let (tx, rx) = mpsc::channel::<Gfid>();
        let started = match (reap_fd.try_clone(), handles_fd.try_clone()) {
            (Ok(r), Ok(h)) => std::thread::Builder::new()
                .name("weft-reaper".into())
                .spawn(move || {
                    for g in rx {
                        reap(&r, &h, &g);
                    }
                })
                .is_ok(),
            _ => false,
        };
        Reaper {
            tx: Mutex::new(started.then_some(tx)),
            reap_fd,
        }
    }

    /// Has the handle of non-directory `g`, whose name was just removed, removed soon if
    /// no other name is left. False when it cannot be left to the thread (no thread, or
    /// no marker could be made): the caller removes it itself.
    pub fn defer(&self, g: &Gfid) -> bool {
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else { return false };
        let marker = rfs::openat(
            &self.reap_fd,
            g.to_string().as_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        );
        marker.is_ok() && tx.send(*g).is_ok()
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

/// Removes `g`'s handle if it is a non-directory's with no other link, then its marker.
fn reap(reap_fd: &OwnedFd, handles_fd: &OwnedFd, g: &Gfid) {
    remove_if_orphan(handles_fd, g);
    let _ = rfs::unlinkat(reap_fd, g.to_string().as_str(), AtFlags::empty());
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

    fn markers(root: &Path) -> usize {
        std::fs::read_dir(root.join(super::REAP_DIR))
            .unwrap()
            .count()
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
        eventually("the reaper is done", || markers(dir.path()) == 0);
        assert!(!handle(dir.path(), &g).exists(), "the handle went");
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
        assert_eq!(markers(dir.path()), 0);
        assert!(!handle(dir.path(), &g).exists());
    }
}
