//! Least-recently-used order for the client caches (md-cache, quick-read), kept lazily:
//! each use pushes `(generation, key)` and the item remembers its latest generation; older
//! pushes of the same key are skipped when popped. Rebuilt from the live items when it
//! grows too long. Written here rather than taken from a crate because the caches keep
//! their items in their own maps (with per-item times and sizes) and only need the order.

use std::collections::VecDeque;

/// The use order of a cache's keys (see the module docs).
pub(crate) struct Recency<K> {
    queue: VecDeque<(u64, K)>,
    next: u64,
}

impl<K: Clone> Recency<K> {
    /// An empty order.
    pub(crate) fn new() -> Recency<K> {
        Recency {
            queue: VecDeque::new(),
            next: 0,
        }
    }

    /// Records a use of `k` now; returns the generation the item must remember.
    pub(crate) fn stamp(&mut self, k: &K) -> u64 {
        self.next += 1;
        self.queue.push_back((self.next, k.clone()));
        self.next
    }

    /// The oldest use recorded (possibly stale: compare its generation with the item's).
    pub(crate) fn oldest(&mut self) -> Option<(u64, K)> {
        self.queue.pop_front()
    }

    /// Whether the queue holds far more uses than `live` items (time to rebuild).
    pub(crate) fn too_long(&self, live: usize) -> bool {
        self.queue.len() > 2 * live + 1024
    }

    /// Replaces the queue with the live items' latest uses, oldest first.
    pub(crate) fn rebuild(&mut self, mut live: Vec<(u64, K)>) {
        live.sort_unstable_by_key(|e| e.0);
        self.queue = live.into();
    }

    /// Uses recorded (live and stale).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Forgets every use.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }
}
