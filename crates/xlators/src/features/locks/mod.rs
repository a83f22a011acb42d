//! `features/locks`: the brick's lock server, as GlusterFS's features/locks.
//!
//! It sits in a brick graph above `storage/posix`, so that every client of the brick sees
//! the same locks. It answers the lock FOPs itself and passes every other FOP down:
//! - `lk`: application POSIX byte-range locks with fcntl semantics (F_GETLK, F_SETLK,
//!   F_SETLKW), per inode (`fd.gfid`). The owner is the pair (`ctx.client`,
//!   `lock.owner`): one owner's locks never conflict with each other, a new lock replaces
//!   the owner's locks over its range (splitting them), an unlock punches a hole, and an
//!   owner's touching locks of one mode through one fd merge. A len of 0 reaches to the
//!   end of file. Two locks conflict when they overlap, their owners differ and one is a
//!   write lock. GETLK answers the conflicting lock with the lowest start (kind, range,
//!   pid, owner), or the request with kind `Unlock` when none is in the way; GETLK of kind
//!   `Unlock` is EINVAL, a range past 2^64 EOVERFLOW.
//! - `inodelk`/`finodelk`: the same engine per (domain, inode), owner (`ctx.client`,
//!   `ctx.lk_owner`); `inodelk` takes the inode from `loc.gfid` (EINVAL if missing). Get
//!   answers `Ok` when the range is free and EAGAIN when a lock is in the way (the FOP
//!   has no lock to return).
//! - `entrylk`: locks on (domain, directory `loc.gfid`, name); no name locks the whole
//!   directory and conflicts with every name. Read and write modes; one owner's entry
//!   locks never conflict with each other and nest (each lock needs one unlock).
//!   `Lock` waits, `LockNonBlocking` fails with EAGAIN. **Unlocking a name the owner does
//!   not hold answers `Ok`** (idempotent, so a client retrying an unlock after a
//!   reconnect is not told off; GlusterFS answers EINVAL there).
//!
//! Waiting requests (F_SETLKW, blocking inodelk and entrylk) queue per object and are
//! granted oldest first whenever locks go, each rechecked against the locks granted
//! before it. Their futures may be dropped at any time (the server aborts the tasks of a
//! dead connection, a client interrupts): a dropped waiter leaves its queue and is never
//! left holding a lock (a grant it had not seen yet is taken back exactly).
//!
//! Releasing: `flush` drops every POSIX lock of (`ctx.client`, `ctx.lk_owner`) on the
//! inode (close(2) semantics), then passes the flush down; `release` drops every POSIX lock
//! taken through that fd and fails its waiters with EBADF, then passes down;
//! `forget_client` drops every lock and waiter of the client (waiters get ENOTCONN), then
//! tells the children; `fini` fails every waiter with ENOTCONN. Deadlock detection is not
//! done. `dump` lists granted locks and waiters per object.
//!
//! The lock engines are pure and separately tested: [`range`] (byte ranges) and
//! [`entry`] (names); [`state`] ties them to waiters; [`Locks`] is the translator.

pub mod entry;
pub mod range;
pub mod state;
mod xlator;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use weft_core::options::OptionSpec;
use weft_core::{XlatorInit, XlatorRef, XlatorType};

pub use xlator::Locks;

/// The `features/locks` type for the registry: one subvolume, no options.
pub struct LocksType;

impl XlatorType for LocksType {
    fn type_name(&self) -> &'static str {
        "features/locks"
    }
    fn description(&self) -> &'static str {
        "Serves POSIX, inode and entry locks shared by every client of a brick."
    }
    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(Locks::new(init.name, init.children)))
    }
}

/// Removes and returns, oldest first, every entry of `queue` that `pred` selects; the rest
/// keep their order. (Both lock engines keep their waiters in such a queue.)
fn take_where<T>(queue: &mut VecDeque<T>, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
    let mut taken = Vec::new();
    for item in std::mem::take(queue) {
        if pred(&item) {
            taken.push(item);
        } else {
            queue.push_back(item);
        }
    }
    taken
}
