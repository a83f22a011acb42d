//! Weft client library (being written).
