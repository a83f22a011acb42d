//! `xdata`: the extensible key/value map carried by every call and every reply.
//!
//! Translators use it to ask each other for extra things (an xattr with a lookup, a checksum
//! with a read) without changing the FOP interface. Keys are dotted names owned by the
//! translator family that reads them (`weft.posix.*`, `weft.afr.*`, ...). Values are bytes;
//! helpers store integers big-endian.

use std::collections::BTreeMap;

/// An ordered map of named byte values. Empty maps cost no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Xdata(pub BTreeMap<String, Vec<u8>>);

impl Xdata {
    /// An empty map.
    pub fn new() -> Xdata {
        Xdata(BTreeMap::new())
    }

    /// True when the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key` to raw bytes.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.insert(key.into(), value.into());
    }

    /// The raw bytes under `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to a big-endian u64.
    pub fn set_u64(&mut self, key: impl Into<String>, v: u64) {
        self.set(key, v.to_be_bytes().to_vec());
    }

    /// The u64 under `key`; `None` if missing or not 8 bytes.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        let b: [u8; 8] = self.get(key)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    /// The gfid under `key`, if present and valid.
    pub fn get_gfid(&self, key: &str) -> Option<crate::Gfid> {
        crate::Gfid::from_slice(self.get(key)?)
    }

    /// True when `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_and_wrong_sizes_are_none() {
        let mut x = Xdata::new();
        x.set_u64("a", 42);
        x.set("b", b"abc".to_vec());
        assert_eq!(x.get_u64("a"), Some(42));
        assert_eq!(x.get_u64("b"), None);
        assert!(x.has("b") && !x.has("c"));
    }
}
