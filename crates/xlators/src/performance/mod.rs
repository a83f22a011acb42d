//! Performance translators: `performance/write-behind`, `performance/md-cache`,
//! `performance/quick-read` (with open-behind), `performance/read-ahead` and
//! `performance/entry-behind`.

pub mod entry_behind;
pub mod md_cache;
pub mod quick_read;
pub mod read_ahead;
mod recency;
#[cfg(test)]
mod test_brick;
pub mod write_behind;
