//! Weft network translators (being written).
