//! Open file descriptors as translators see them.
//!
//! The caller creates an [`Fd`] and passes it to `open`, `create` or `opendir`; each
//! translator may hang its own state on it ([`Fd::set_ctx`], keyed by the translator's
//! name) and read it back on later FOPs. `release`/`releasedir` tell every translator that
//! the fd is gone, so each drops what it hung there.
//!
//! An fd knows the path of its file only through a [`PathSource`] its creator attaches
//! ([`Fd::set_path_source`]): the FUSE front end attaches its inode table, which it keeps
//! current across renames, so [`Fd::path`] names the file where it is now, not where it was
//! opened. Fds made elsewhere (the client library, a brick server) have no source and no path.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::Gfid;

/// A shared handle to an open file or directory.
pub type FdRef = Arc<Fd>;

/// Tells the current path (from the volume root) of an inode: what [`Fd::path`] asks.
pub trait PathSource: Send + Sync {
    /// The path of inode `gfid` now, or `None` when it is not known (never looked up
    /// through this source, forgotten, or its last known name removed).
    fn path_of(&self, gfid: Gfid) -> Option<PathBuf>;
}

static NEXT_FD_ID: AtomicU64 = AtomicU64::new(1);

/// One open file or directory of one client.
pub struct Fd {
    /// Unique within this process, never reused.
    pub id: u64,
    /// The inode this fd refers to.
    pub gfid: Gfid,
    /// The open(2) flags it was opened with.
    pub flags: i32,
    /// True for a directory opened with opendir.
    pub is_dir: bool,
    ctx: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    paths: OnceLock<Arc<dyn PathSource>>,
}

impl Fd {
    /// A new fd for `gfid` opened with `flags`.
    pub fn new(gfid: Gfid, flags: i32, is_dir: bool) -> FdRef {
        Arc::new(Fd {
            id: NEXT_FD_ID.fetch_add(1, Ordering::Relaxed),
            gfid,
            flags,
            is_dir,
            ctx: Mutex::new(HashMap::new()),
            paths: OnceLock::new(),
        })
    }

    /// Attaches the source [`Fd::path`] asks; the first one attached stays (returns false
    /// when the fd already had one).
    pub fn set_path_source(&self, source: Arc<dyn PathSource>) -> bool {
        self.paths.set(source).is_ok()
    }

    /// The file's path from the volume root as it is now (after any rename of the file or
    /// of a directory above it that the source saw); `None` without a source or when the
    /// source does not know it. Informational, like `Loc.path`: never decide correctness
    /// by it.
    pub fn path(&self) -> Option<PathBuf> {
        self.paths.get()?.path_of(self.gfid)
    }

    /// Stores translator `key`'s state on this fd, replacing any earlier value.
    pub fn set_ctx<T: Any + Send + Sync>(&self, key: &str, value: Arc<T>) {
        self.ctx.lock().insert(key.to_string(), value);
    }

    /// Translator `key`'s state, if it stored a value of type `T`.
    pub fn ctx<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let v = self.ctx.lock().get(key)?.clone();
        v.downcast::<T>().ok()
    }

    /// Removes and returns translator `key`'s state.
    pub fn take_ctx<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let v = self.ctx.lock().remove(key)?;
        v.downcast::<T>().ok()
    }
}

impl std::fmt::Debug for Fd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fd#{}({}, flags={:#o})", self.id, self.gfid, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_is_typed_and_per_key() {
        let fd = Fd::new(Gfid::ROOT, 0, true);
        fd.set_ctx("a", Arc::new(5u32));
        assert_eq!(*fd.ctx::<u32>("a").unwrap(), 5);
        assert!(fd.ctx::<u64>("a").is_none());
        assert!(fd.ctx::<u32>("b").is_none());
        assert!(fd.take_ctx::<u32>("a").is_some());
        assert!(fd.ctx::<u32>("a").is_none());
        assert_ne!(Fd::new(Gfid::ROOT, 0, false).id, fd.id);
    }

    struct Fixed(PathBuf);
    impl PathSource for Fixed {
        fn path_of(&self, gfid: Gfid) -> Option<PathBuf> {
            (gfid == Gfid::ROOT).then(|| self.0.clone())
        }
    }

    #[test]
    fn path_comes_from_the_first_source() {
        let fd = Fd::new(Gfid::ROOT, 0, true);
        assert_eq!(fd.path(), None);
        assert!(fd.set_path_source(Arc::new(Fixed("/a".into()))));
        assert!(!fd.set_path_source(Arc::new(Fixed("/b".into()))));
        assert_eq!(fd.path(), Some(PathBuf::from("/a")));
        let other = Fd::new(Gfid::random(), 0, false);
        other.set_path_source(Arc::new(Fixed("/a".into())));
        assert_eq!(other.path(), None);
    }
}
