//! Weft's cluster translators (see ARCHITECTURE.md, "cluster/distribute"):
//! - [`arbiter`]: `features/arbiter`, the brick half of an arbiter: names and metadata,
//!   no file data.
//! - [`distribute`]: `cluster/distribute`, many subvolumes seen as one tree, each file on
//!   the subvolume its name hashes to (GlusterFS's DHT).
//! - [`index`]: `features/index`, the brick's list of inodes whose replication counters
//!   are not all zero, for self-heal to find without crawling the brick.
//! - [`migrate`]: `features/migrate`, the brick half of moving a file to another
//!   subvolume during a rebalance.
//!
//! [`register`] adds every type this crate provides to a [`Registry`].

pub mod arbiter;
pub mod distribute;
pub mod index;
pub mod migrate;
pub mod replicate;

use std::sync::Arc;

use weft_core::Registry;

/// Registers every translator type of this crate.
pub fn register(r: &mut Registry) {
    r.register(Arc::new(arbiter::ArbiterType));
    r.register(Arc::new(distribute::DistributeType));
    r.register(Arc::new(index::IndexType));
    r.register(Arc::new(migrate::MigrateType));
    r.register(Arc::new(replicate::ReplicateType));
}
