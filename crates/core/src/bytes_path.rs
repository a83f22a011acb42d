//! Paths and names as raw bytes in serde, so that names that are not UTF-8 (Latin-1,
//! arbitrary bytes: anything but `/` and NUL is a valid Unix name) cross the wire unchanged.
//! serde's own `PathBuf` impl refuses such paths. Use with `#[serde(with = "...")]`; the
//! encoding (a length-prefixed byte string) is the same postcard gives a UTF-8 string, so
//! UTF-8 paths are encoded exactly as before.

use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Serialises `p` as its bytes.
pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(p.as_os_str().as_bytes())
}

/// Deserialises a path from bytes (or a string, or a sequence of bytes).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    d.deserialize_byte_buf(PathVisitor)
}

struct PathVisitor;

impl<'de> Visitor<'de> for PathVisitor {
    type Value = PathBuf;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path as bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<PathBuf, E> {
        Ok(PathBuf::from(std::ffi::OsString::from_vec(v.to_vec())))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<PathBuf, E> {
        Ok(PathBuf::from(std::ffi::OsString::from_vec(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<PathBuf, E> {
        Ok(PathBuf::from(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PathBuf, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(PathBuf::from(std::ffi::OsString::from_vec(v)))
    }
}

/// The same for `Option<PathBuf>`.
pub mod opt {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super")] PathBuf);

    /// Serialises an optional path as optional bytes.
    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&Wrap(p.clone())),
            None => s.serialize_none(),
        }
    }

    /// Deserialises an optional path from optional bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        p: PathBuf,
        #[serde(with = "super::opt")]
        q: Option<PathBuf>,
    }

    #[test]
    fn non_utf8_paths_round_trip() {
        let bytes: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
        let t = T {
            p: PathBuf::from(std::ffi::OsStr::from_bytes(b"/caf\xe9/\xff\xfe")),
            q: Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))),
        };
        let enc = postcard::to_allocvec(&t).unwrap();
        assert_eq!(postcard::from_bytes::<T>(&enc).unwrap(), t);
        let none = T {
            p: PathBuf::from("/"),
            q: None,
        };
        let enc = postcard::to_allocvec(&none).unwrap();
        assert_eq!(postcard::from_bytes::<T>(&enc).unwrap(), none);
    }

    #[test]
    fn utf8_paths_encode_as_strings_did() {
        #[derive(Serialize)]
        struct S {
            p: String,
        }
        #[derive(Serialize)]
        struct B {
            #[serde(with = "super")]
            p: PathBuf,
        }
        let a = postcard::to_allocvec(&S { p: "/a/b".into() }).unwrap();
        let b = postcard::to_allocvec(&B { p: "/a/b".into() }).unwrap();
        assert_eq!(a, b);
    }
}
