//! Weft's translators, one module folder per family (see ARCHITECTURE.md):
//! - [`storage`]: `storage/posix`, a brick directory;
//! - [`debug`]: `debug/trace` and `debug/io-stats`;
//! - [`features`]: `features/locks`, the brick's lock server;
//! - [`performance`]: `performance/write-behind`, `performance/md-cache` and
//!   `performance/quick-read`, client-side.
//!
//! [`registry`] returns every type this crate provides, for [`weft_core::Graph::build`].

pub mod debug;
pub mod features;
pub mod performance;
pub mod storage;

use std::sync::Arc;

use weft_core::Registry;

/// A registry holding every translator type this crate provides.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(storage::posix::PosixType));
    r.register(Arc::new(debug::trace::TraceType));
    r.register(Arc::new(debug::io_stats::IoStatsType));
    r.register(Arc::new(features::locks::LocksType));
    r.register(Arc::new(features::upcall::UpcallType));
    r.register(Arc::new(performance::write_behind::WriteBehindType));
    r.register(Arc::new(performance::md_cache::MdCacheType));
    r.register(Arc::new(performance::quick_read::QuickReadType));
    r.register(Arc::new(performance::read_ahead::ReadAheadType));
    r.register(Arc::new(performance::entry_behind::EntryBehindType));
    r
}
