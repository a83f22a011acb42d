//! The gfid: the 128-bit identity of every file and directory.
//!
//! A gfid is the same on every replica of a file and survives renames. The root directory of
//! every volume has the fixed gfid `00000000-0000-0000-0000-000000000001`, as in GlusterFS.

use std::fmt;
use std::str::FromStr;

/// A 128-bit file identity, stored on bricks in the `trusted.weft.gfid` xattr.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Gfid(pub [u8; 16]);

impl Gfid {
    /// The gfid of every volume's root directory.
    pub const ROOT: Gfid = Gfid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// The all-zero gfid, never given to a real inode.
    pub const NULL: Gfid = Gfid([0; 16]);

    /// A fresh random (version 4) gfid.
    pub fn random() -> Gfid {
        Gfid(*uuid::Uuid::new_v4().as_bytes())
    }

    /// Builds a gfid from exactly 16 bytes; `None` for any other length or the null gfid.
    pub fn from_slice(b: &[u8]) -> Option<Gfid> {
        let arr: [u8; 16] = b.try_into().ok()?;
        let g = Gfid(arr);
        (!g.is_null()).then_some(g)
    }

    /// True for the all-zero gfid.
    pub fn is_null(&self) -> bool {
        self.0 == [0; 16]
    }

    /// True for the root gfid.
    pub fn is_root(&self) -> bool {
        *self == Gfid::ROOT
    }

    /// A 64-bit inode number derived from the gfid's low 8 bytes (1 for the root), the
    /// number clients show as `st_ino`.
    pub fn ino(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[8..]);
        let v = u64::from_be_bytes(b);
        if v == 0 {
            // Only a gfid whose low half is zero lands here; keep it away from "no inode".
            u64::from_be_bytes(self.0[..8].try_into().unwrap_or([0xff; 8])) | 1 << 63
        } else {
            v
        }
    }
}

impl fmt::Display for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", uuid::Uuid::from_bytes(self.0).hyphenated())
    }
}

impl fmt::Debug for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not a hyphenated 128-bit gfid.
#[derive(Debug, thiserror::Error)]
#[error("not a gfid: {0:?}")]
pub struct BadGfid(pub String);

impl FromStr for Gfid {
    type Err = BadGfid;
    fn from_str(s: &str) -> Result<Gfid, BadGfid> {
        let u = uuid::Uuid::parse_str(s).map_err(|_| BadGfid(s.to_string()))?;
        Ok(Gfid(*u.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_inode_one_and_text_round_trips() {
        assert_eq!(Gfid::ROOT.ino(), 1);
        let g = Gfid::random();
        assert_eq!(g.to_string().parse::<Gfid>().unwrap(), g);
        assert!(Gfid::from_slice(&[0; 16]).is_none());
        assert!(Gfid::from_slice(&[1; 15]).is_none());
        assert!("nope".parse::<Gfid>().is_err());
    }
}
