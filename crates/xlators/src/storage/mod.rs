//! Storage translators: the bottom of every brick graph.

pub mod posix;
