//! Performance translators: `performance/write-behind`, `performance/md-cache` and
//! `performance/quick-read` (with open-behind) and `performance/read-ahead`.

pub mod md_cache;
pub mod quick_read;
pub mod read_ahead;
mod recency;
#[cfg(test)]
mod test_brick;
pub mod write_behind;
