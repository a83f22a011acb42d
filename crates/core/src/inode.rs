//! The client-side inode table: which inodes a front end has handed out, under which
//! numbers, how many lookups each holds, and the last name each was seen under (for paths).
//!
//! Inode numbers are [`Gfid::ino`], so the root is always 1 and a number means the same
//! inode for as long as the table holds it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::{FileType, Gfid};

#[derive(Debug)]
struct Entry {
    gfid: Gfid,
    kind: FileType,
    nlookup: u64,
    parent: u64,
    name: OsString,
}

/// Inodes known to a front end, keyed by inode number.
#[derive(Debug)]
pub struct InodeTable {
    map: Mutex<HashMap<u64, Entry>>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root (inode 1), which is never forgotten.
    pub fn new() -> InodeTable {
        let mut m = HashMap::new();
        m.insert(
            1,
            Entry {
                gfid: Gfid::ROOT,
                kind: FileType::Directory,
                nlookup: 1,
                parent: 1,
                name: OsString::new(),
            },
        );
        InodeTable { map: Mutex::new(m) }
    }

    /// Records one more lookup of `gfid`, found as `name` in inode `parent`; returns its
    /// inode number.
    pub fn remember(&self, gfid: Gfid, kind: FileType, parent: u64, name: &OsStr) -> u64 {
        let ino = gfid.ino();
        let mut m = self.map.lock();
        let e = m.entry(ino).or_insert_with(|| Entry {
            gfid,
            kind,
            nlookup: 0,
            parent,
            name: name.to_owned(),
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
        if ino != 1 {
            e.parent = parent;
            e.name = name.to_owned();
        }
        ino
    }

    /// Drops `n` lookups of inode `ino`, forgetting it at zero (never the root).
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == 1 {
            return;
        }
        let mut m = self.map.lock();
        if let Some(e) = m.get_mut(&ino) {
            e.nlookup = e.nlookup.saturating_sub(n);
            if e.nlookup == 0 {
                m.remove(&ino);
            }
        }
    }

    /// The gfid of inode `ino`, if the table holds it.
    pub fn gfid(&self, ino: u64) -> Option<Gfid> {
        self.map.lock().get(&ino).map(|e| e.gfid)
    }

    /// The type of inode `ino`, if the table holds it.
    pub fn kind(&self, ino: u64) -> Option<FileType> {
        self.map.lock().get(&ino).map(|e| e.kind)
    }

    /// Records that inode `ino` now lives as `name` in `parent` (after a rename).
    pub fn moved(&self, ino: u64, parent: u64, name: &OsStr) {
        if let Some(e) = self.map.lock().get_mut(&ino) {
            e.parent = parent;
            e.name = name.to_owned();
        }
    }

    /// The path of inode `ino` from the root, by its last known names; `None` if some
    /// ancestor has been forgotten.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        let m = self.map.lock();
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != 1 {
            let e = m.get(&cur)?;
            parts.push(e.name.clone());
            cur = e.parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        let mut p = PathBuf::from("/");
        for part in parts.iter().rev() {
            p.push(part);
        }
        Some(p)
    }

    /// Number of inodes held (root included).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when only... never: the root is always held. Present for API completeness.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_paths_and_forget() {
        let t = InodeTable::new();
        let d = Gfid::random();
        let f = Gfid::random();
        let di = t.remember(d, FileType::Directory, 1, OsStr::new("dir"));
        let fi = t.remember(f, FileType::Regular, di, OsStr::new("file"));
        t.remember(f, FileType::Regular, di, OsStr::new("file"));
        assert_eq!(t.path(fi).unwrap(), PathBuf::from("/dir/file"));
        t.moved(fi, 1, OsStr::new("top"));
        assert_eq!(t.path(fi).unwrap(), PathBuf::from("/top"));
        t.forget(fi, 1);
        assert_eq!(t.gfid(fi), Some(f));
        t.forget(fi, 1);
        assert_eq!(t.gfid(fi), None);
        t.forget(1, 100);
        assert_eq!(t.gfid(1), Some(Gfid::ROOT));
    }
}
