//! The client-side inode table: which inodes a front end has handed out, under which
//! numbers, how many lookups each holds, and the name each is known by now (for paths).
//!
//! Inode numbers are [`Gfid::ino`], so the root is always 1 and a number means the same
//! inode for as long as the table holds it.
//!
//! **Paths.** Each inode remembers one link: the directory and name it was last found under
//! (a lookup, a create, a readdirp entry). The front end tells the table about every rename
//! ([`InodeTable::renamed`]) and removal ([`InodeTable::removed`]) it makes succeed, so
//! [`InodeTable::path`] names an inode where it is now, also after its directory or any
//! directory above moved. A name replaced or removed leaves its inode without a link: its
//! path is then `None` (not a name that now belongs to another file) until a lookup finds
//! it again. Changes made by other clients are seen when the kernel looks the names up
//! again (after its entry timeout). The table is a [`PathSource`], so an [`crate::Fd`] the
//! front end opens asks it for its current path.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::fd::PathSource;
use crate::{FileType, Gfid};

/// The deepest path [`InodeTable::path`] builds; deeper (or a cycle) is `None`.
const MAX_DEPTH: usize = 4096;

#[derive(Debug)]
struct Entry {
    gfid: Gfid,
    kind: FileType,
    nlookup: u64,
    /// The directory (inode number) and name this inode is known by; `None` for the root
    /// and for an inode whose last known name was removed or replaced.
    link: Option<(u64, OsString)>,
}

#[derive(Debug, Default)]
struct Maps {
    by_ino: HashMap<u64, Entry>,
    /// (directory, name) -> the inode whose link it is.
    by_name: HashMap<(u64, OsString), u64>,
}

impl Maps {
    /// Drops `ino`'s link (and its index entry).
    fn unlink(&mut self, ino: u64) {
        if let Some(key) = self.by_ino.get_mut(&ino).and_then(|e| e.link.take()) {
            if self.by_name.get(&key) == Some(&ino) {
                self.by_name.remove(&key);
            }
        }
    }

    /// Makes `name` in `parent` the link of `ino` (an inode the table holds), detaching
    /// whichever other inode had that name.
    fn link(&mut self, ino: u64, parent: u64, name: &OsStr) {
        if ino == 1 || !self.by_ino.contains_key(&ino) {
            return;
        }
        let key = (parent, name.to_owned());
        if self.by_ino.get(&ino).and_then(|e| e.link.as_ref()) == Some(&key) {
            return;
        }
        self.unlink(ino);
        if let Some(old) = self.by_name.insert(key.clone(), ino) {
            if old != ino {
                if let Some(e) = self.by_ino.get_mut(&old) {
                    e.link = None;
                }
            }
        }
        if let Some(e) = self.by_ino.get_mut(&ino) {
            e.link = Some(key);
        }
    }
}

/// Inodes known to a front end, keyed by inode number.
#[derive(Debug)]
pub struct InodeTable {
    maps: Mutex<Maps>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root (inode 1), which is never forgotten.
    pub fn new() -> InodeTable {
        let mut maps = Maps::default();
        maps.by_ino.insert(
            1,
            Entry {
                gfid: Gfid::ROOT,
                kind: FileType::Directory,
                nlookup: 1,
                link: None,
            },
        );
        InodeTable {
            maps: Mutex::new(maps),
        }
    }

    /// Every inode known, with the parent and name it is known by (if any), for a front
    /// end that must drop everything the kernel caches.
    pub fn all(&self) -> Vec<(u64, Option<(u64, OsString)>)> {
        let m = self.maps.lock();
        m.by_ino
            .iter()
            .map(|(&ino, e)| (ino, e.link.clone()))
            .collect()
    }

    /// Records one more lookup of `gfid`, found as `name` in inode `parent`; returns its
    /// inode number.
    pub fn remember(&self, gfid: Gfid, kind: FileType, parent: u64, name: &OsStr) -> u64 {
        let ino = gfid.ino();
        let mut m = self.maps.lock();
        let e = m.by_ino.entry(ino).or_insert_with(|| Entry {
            gfid,
            kind,
            nlookup: 0,
            link: None,
        });
        if e.gfid != gfid {
            // A 64-bit collision between two random gfids: keep the newest, as the kernel
            // only ever holds one inode per number.
            tracing::warn!(
                "inode number {ino:#x} collides: {} replaces {}",
                gfid,
                e.gfid
            );
            e.gfid = gfid;
            e.nlookup = 0;
        }
        e.nlookup += 1;
        e.kind = kind;
        m.link(ino, parent, name);
        ino
    }

    /// Drops `n` lookups of inode `ino`, forgetting it at zero (never the root).
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == 1 {
            return;
        }
        let mut m = self.maps.lock();
        let Some(e) = m.by_ino.get_mut(&ino) else {
            return;
        };
        e.nlookup = e.nlookup.saturating_sub(n);
        if e.nlookup == 0 {
            m.unlink(ino);
            m.by_ino.remove(&ino);
        }
    }

    /// The gfid of inode `ino`, if the table holds it.
    pub fn gfid(&self, ino: u64) -> Option<Gfid> {
        self.maps.lock().by_ino.get(&ino).map(|e| e.gfid)
    }

    /// The type of inode `ino`, if the table holds it.
    pub fn kind(&self, ino: u64) -> Option<FileType> {
        self.maps.lock().by_ino.get(&ino).map(|e| e.kind)
    }

    /// The inode number known as `name` in directory `parent`, if any.
    pub fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.maps
            .lock()
            .by_name
            .get(&(parent, name.to_owned()))
            .copied()
    }

    /// Records that inode `ino` now lives as `name` in `parent` (whichever inode had that
    /// name loses it).
    pub fn moved(&self, ino: u64, parent: u64, name: &OsStr) {
        self.maps.lock().link(ino, parent, name);
    }

    /// Records a rename that succeeded: what was `name` in `parent` is now `new_name` in
    /// `new_parent`. The inode it replaced there loses its name; with `exchange`
    /// (RENAME_EXCHANGE) the two swap names instead.
    pub fn renamed(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        exchange: bool,
    ) {
        let mut m = self.maps.lock();
        let from = m.by_name.get(&(parent, name.to_owned())).copied();
        let to = m.by_name.get(&(new_parent, new_name.to_owned())).copied();
        if from.is_some() && from == to {
            // A name renamed onto itself: nothing changes.
            return;
        }
        if let Some(f) = from {
            m.unlink(f);
        }
        if let Some(t) = to {
            m.unlink(t);
        }
        if let Some(f) = from {
            m.link(f, new_parent, new_name);
        }
        if let (true, Some(t)) = (exchange, to) {
            m.link(t, parent, name);
        }
    }

    /// Records that `name` in `parent` was removed (unlink or rmdir): its inode keeps no
    /// path until found again.
    pub fn removed(&self, parent: u64, name: &OsStr) {
        let mut m = self.maps.lock();
        if let Some(ino) = m.by_name.get(&(parent, name.to_owned())).copied() {
            m.unlink(ino);
        }
    }

    /// The directory (its inode and gfid) and name inode `ino` is known by, if any.
    pub fn link(&self, ino: u64) -> Option<(Gfid, OsString)> {
        let m = self.maps.lock();
        let (parent, name) = m.by_ino.get(&ino)?.link.clone()?;
        let pg = m.by_ino.get(&parent)?.gfid;
        Some((pg, name))
    }

    /// The path of inode `ino` from the root, by the names it and its ancestors are known
    /// by now; `None` if one of them has no known name or has been forgotten.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        let m = self.maps.lock();
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != 1 {
            let (parent, name) = m.by_ino.get(&cur)?.link.as_ref()?;
            parts.push(name.clone());
            cur = *parent;
            if parts.len() > MAX_DEPTH {
                return None;
            }
        }
        drop(m);
        let mut p = PathBuf::from("/");
        for part in parts.iter().rev() {
            p.push(part);
        }
        Some(p)
    }

    /// Number of inodes held (root included).
    pub fn len(&self) -> usize {
        self.maps.lock().by_ino.len()
    }

    /// Always false: the root is always held. Present for API completeness.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl PathSource for InodeTable {
    fn path_of(&self, gfid: Gfid) -> Option<PathBuf> {
        let ino = gfid.ino();
        if self.gfid(ino)? != gfid {
            return None;
        }
        self.path(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn lookups_paths_and_forget() {
        let t = InodeTable::new();
        let d = Gfid::random();
        let f = Gfid::random();
        let di = t.remember(d, FileType::Directory, 1, os("dir"));
        let fi = t.remember(f, FileType::Regular, di, os("file"));
        t.remember(f, FileType::Regular, di, os("file"));
        assert_eq!(t.path(fi).unwrap(), PathBuf::from("/dir/file"));
        assert_eq!(t.child(di, os("file")), Some(fi));
        t.moved(fi, 1, os("top"));
        assert_eq!(t.path(fi).unwrap(), PathBuf::from("/top"));
        assert_eq!(t.child(di, os("file")), None);
        t.forget(fi, 1);
        assert_eq!(t.gfid(fi), Some(f));
        t.forget(fi, 1);
        assert_eq!(t.gfid(fi), None);
        assert_eq!(t.child(1, os("top")), None);
        t.forget(1, 100);
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
        assert_eq!(t.path(1).unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn renaming_a_directory_moves_everything_below() {
        let t = InodeTable::new();
        let a = t.remember(Gfid::random(), FileType::Directory, 1, os("a"));
        let b = t.remember(Gfid::random(), FileType::Directory, a, os("b"));
        let fg = Gfid::random();
        let f = t.remember(fg, FileType::Regular, b, os("f"));
        assert_eq!(t.path_of(fg).unwrap(), PathBuf::from("/a/b/f"));
        t.renamed(1, os("a"), 1, os("z"), false);
        assert_eq!(t.path(f).unwrap(), PathBuf::from("/z/b/f"));
        t.renamed(b, os("f"), 1, os("g"), false);
        assert_eq!(t.path_of(fg).unwrap(), PathBuf::from("/g"));
        // An unknown source name changes nothing.
        t.renamed(1, os("nothing"), 1, os("z2"), false);
        assert_eq!(t.path(a).unwrap(), PathBuf::from("/z"));
    }

    #[test]
    fn replaced_and_removed_names_leave_no_path() {
        let t = InodeTable::new();
        let x = t.remember(Gfid::random(), FileType::Regular, 1, os("x"));
        let y = t.remember(Gfid::random(), FileType::Regular, 1, os("y"));
        t.renamed(1, os("x"), 1, os("y"), false);
        assert_eq!(t.path(x).unwrap(), PathBuf::from("/y"));
        assert_eq!(t.path(y), None, "the replaced file kept a name it lost");
        assert_eq!(t.child(1, os("x")), None);
        t.removed(1, os("y"));
        assert_eq!(t.path(x), None);
        // Found again, it has a path again.
        t.remember(t.gfid(x).unwrap(), FileType::Regular, 1, os("again"));
        assert_eq!(t.path(x).unwrap(), PathBuf::from("/again"));
        // A lookup finding another inode under a name takes the name from the old one.
        let z = t.remember(Gfid::random(), FileType::Regular, 1, os("again"));
        assert_eq!(t.path(z).unwrap(), PathBuf::from("/again"));
        assert_eq!(t.path(x), None);
        // Forgetting an inode that lost its name leaves the new owner's name alone.
        t.forget(x, 2);
        assert_eq!(t.child(1, os("again")), Some(z));
    }

    #[test]
    fn exchange_swaps_names() {
        let t = InodeTable::new();
        let d = t.remember(Gfid::random(), FileType::Directory, 1, os("d"));
        let x = t.remember(Gfid::random(), FileType::Regular, 1, os("x"));
        t.renamed(1, os("x"), 1, os("d"), true);
        assert_eq!(t.path(x).unwrap(), PathBuf::from("/d"));
        assert_eq!(t.path(d).unwrap(), PathBuf::from("/x"));
        // A name renamed onto itself changes nothing.
        t.renamed(1, os("d"), 1, os("d"), false);
        assert_eq!(t.path(x).unwrap(), PathBuf::from("/d"));
    }

    #[test]
    fn path_of_checks_the_gfid() {
        let t = InodeTable::new();
        let g = Gfid::random();
        t.remember(g, FileType::Regular, 1, os("f"));
        let mut other = g;
        other.0[0] ^= 0xff;
        if other.ino() == g.ino() {
            assert_eq!(t.path_of(other), None);
        }
        assert_eq!(t.path_of(g).unwrap(), PathBuf::from("/f"));
        assert_eq!(t.path_of(Gfid::random()), None);
    }
}
