//! The gfid: the 128-bit identity of every file and directory.
//!
//! A gfid is the same on every replica of a file and survives renames. The root directory of
//! every volume has the fixed gfid `00000000-0000-0000-0000-000000000001`, as in GlusterFS.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many gfids in a row [`Gfid::for_new_inode`] gives the same first two bytes.
const PREFIX_RUN: u32 = 1024;

/// The first two bytes of the current run of new gfids (high half) and how many more
/// gfids the run gives (low half); a run starts when that count is zero.
static PREFIX_STATE: AtomicU32 = AtomicU32::new(0);

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

    /// A fresh gfid for an inode about to be made (the gfid a create, mkdir, mknod or
    /// symlink proposes): random, except that the gfids one process makes in a row share
    /// their first two bytes, a random pair per run of 1,024. A brick keeps each inode's
    /// handle in a folder named by those bytes (`.weft/handles/AB/CD`, 65,536 of them), so
    /// a burst of creates makes one such folder per run instead of one per file on a young
    /// brick; over time the runs spread evenly over every folder. 106 bits stay random
    /// besides the run's 16 (the UUID version and variant bits are kept), so gfids stay
    /// unique as random ones are.
    pub fn for_new_inode() -> Gfid {
        let mut g = Gfid::random();
        let mut state = PREFIX_STATE.load(Ordering::Relaxed);
        loop {
            let (prefix, left) = ((state >> 16) as u16, state & 0xffff);
            let (next, keep) = if left == 0 {
                // A new run, named by this gfid's own random first bytes.
                let own = u16::from_be_bytes([g.0[0], g.0[1]]);
                ((own as u32) << 16 | (PREFIX_RUN - 1), None)
            } else {
                (state - 1, Some(prefix))
            };
            match PREFIX_STATE.compare_exchange_weak(
                state,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if let Some(p) = keep {
                        g.0[..2].copy_from_slice(&p.to_be_bytes());
                    }
                    return g;
                }
                Err(now) => state = now,
            }
        }
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
    fn new_inode_gfids_share_their_first_bytes_in_runs_and_stay_distinct() {
        let made: Vec<Gfid> = (0..3 * PREFIX_RUN).map(|_| Gfid::for_new_inode()).collect();
        let unique: std::collections::HashSet<&Gfid> = made.iter().collect();
        assert_eq!(unique.len(), made.len());
        // Other tests may take gfids from the same runs meanwhile: count prefix changes.
        let changes = made
            .windows(2)
            .filter(|w| w[0].0[..2] != w[1].0[..2])
            .count();
        assert!(
            (2..=(3 * PREFIX_RUN as usize) / 100).contains(&changes),
            "{changes} prefix changes in {} gfids",
            made.len()
        );
        for g in &made {
            let u = uuid::Uuid::from_bytes(g.0);
            assert_eq!(u.get_version_num(), 4);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        }
    }

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
