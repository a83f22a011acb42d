//! Performance translators: `performance/write-behind`.

pub mod write_behind;
