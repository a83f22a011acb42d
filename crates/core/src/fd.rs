//! Open file descriptors as translators see them.
//!
//! The caller creates an [`Fd`] and passes it to `open`, `create` or `opendir`; each
//! translator may hang its own state on it ([`Fd::set_ctx`], keyed by the translator's
//! name) and read it back on later FOPs. `release`/`releasedir` tell every translator that
//! the fd is gone, so each drops what it hung there.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Gfid;

/// A shared handle to an open file or directory.
pub type FdRef = Arc<Fd>;

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
        })
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
}
