//! Performance translators: `performance/write-behind`, `performance/md-cache` and
//! `performance/quick-read` (with open-behind).

pub mod md_cache;
pub mod quick_read;
mod recency;
pub mod write_behind;
