//! Directory layouts: which subvolume holds which part of the 32-bit name-hash space.
//!
//! Each subvolume's copy of a directory carries that subvolume's part in the xattr
//! [`LAYOUT_XATTR`] (a [`Piece`]); the directory's [`Layout`] is the union of the pieces.
//! A healthy layout covers every hash exactly once. Subvolumes without a piece (or with an
//! empty one) hold no names of that directory.

/// The xattr on every subvolume's copy of a directory holding that subvolume's [`Piece`].
pub const LAYOUT_XATTR: &str = "trusted.weft.dht";

/// Version byte of the [`Piece`] encoding.
pub const PIECE_VERSION: u8 = 1;

/// Flag bit of a [`Piece`]: the layout was written on every subvolume when the directory
/// was made (or healed while empty), so every name of the directory is on (or has a link
/// file on) the subvolume its hash falls in, and a miss there means the name does not
/// exist (GlusterFS's lookup-optimize commit marker).
pub const FLAG_COMPLETE: u8 = 1;

/// An inclusive range of hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u32,
    pub end: u32,
}

impl Range {
    /// How many hashes it holds (never 0).
    pub fn size(&self) -> u64 {
        self.end as u64 - self.start as u64 + 1
    }
}

/// One subvolume's part of a directory's layout, as stored in [`LAYOUT_XATTR`].
///
/// Encoding (version 1, integers big-endian), exactly `8 + 8 * k` bytes:
/// `u8 version (1) | u8 flags (bit 0: complete) | u32 generation | u16 k |
/// k x (u32 start, u32 end)` with inclusive, ascending, non-overlapping ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Identifies one layout: every piece written together carries the same value.
    pub gen: u32,
    pub complete: bool,
    pub ranges: Vec<Range>,
}

impl Piece {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 8 * self.ranges.len());
        v.push(PIECE_VERSION);
        v.push(if self.complete { FLAG_COMPLETE } else { 0 });
        v.extend_from_slice(&self.gen.to_be_bytes());
        v.extend_from_slice(&(self.ranges.len() as u16).to_be_bytes());
        for r in &self.ranges {
            v.extend_from_slice(&r.start.to_be_bytes());
            v.extend_from_slice(&r.end.to_be_bytes());
        }
        v
    }

    /// `None` for anything that is not a well-formed version-1 piece.
    pub fn decode(b: &[u8]) -> Option<Piece> {
        if b.len() < 8 || b[0] != PIECE_VERSION {
            return None;
        }
        let k = u16::from_be_bytes([b[6], b[7]]) as usize;
        if b.len() != 8 + 8 * k {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut ranges = Vec::with_capacity(k);
        for j in 0..k {
            let r = Range {
                start: u32_at(8 + 8 * j),
                end: u32_at(12 + 8 * j),
            };
            if r.end < r.start || ranges.last().is_some_and(|p: &Range| p.end >= r.start) {
                return None;
            }
            ranges.push(r);
        }
        Some(Piece {
            gen: u32_at(2),
            complete: b[1] & FLAG_COMPLETE != 0,
            ranges,
        })
    }
}

/// A directory's whole layout: ranges sorted by start, each with its subvolume index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub gen: u32,
    /// Every subvolume's piece was written together and says complete.
    pub complete: bool,
    pub ranges: Vec<(Range, usize)>,
}

/// What is wrong with a layout read from the subvolumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Hashes no subvolume holds.
    pub holes: u64,
    /// Hashes more than one subvolume claims.
    pub overlaps: u64,
}

impl Anomalies {
    pub fn any(&self) -> bool {
        self.holes > 0 || self.overlaps > 0
    }
}

/// Sizes of `m` equal shares of the 2^32 hashes (the first `2^32 mod m` one larger).
fn equal_shares(m: usize) -> Vec<u64> {
    let total = 1u64 << 32;
    let m64 = m as u64;
    (0..m64)
        .map(|i| total / m64 + u64::from(i < total % m64))
        .collect()
}

impl Layout {
    /// Equal ranges for the subvolumes `members` (indices), in ascending hash order
    /// starting with `members[rotate % len]`, so that directories whose layouts rotate
    /// differently put their first names on different subvolumes.
    pub fn equal(members: &[usize], rotate: usize, gen: u32, complete: bool) -> Layout {
        let m = members.len();
        let mut ranges = Vec::with_capacity(m);
        let mut start = 0u64;
        for (i, size) in equal_shares(m).into_iter().enumerate() {
            let end = start + size - 1;
            ranges.push((
                Range {
                    start: start as u32,
                    end: end as u32,
                },
                members[(i + rotate) % m],
            ));
            start = end + 1;
        }
        Layout {
            gen,
            complete,
            ranges,
        }
    }

    /// The layout made of the pieces read from each subvolume (`None`: no piece there),
    /// and what is wrong with it.
    pub fn from_pieces(pieces: &[Option<Piece>]) -> (Layout, Anomalies) {
        let mut ranges: Vec<(Range, usize)> = pieces
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
            .flat_map(|(i, p)| p.ranges.iter().map(move |r| (*r, i)))
            .collect();
        ranges.sort();
        let present: Vec<&Piece> = pieces.iter().flatten().collect();
        let gen = present.first().map_or(0, |p| p.gen);
        let complete = !present.is_empty() && present.iter().all(|p| p.complete && p.gen == gen);
        let layout = Layout {
            gen,
            complete,
            ranges,
        };
        let a = layout.anomalies();
        (layout, a)
    }

    /// Holes and overlaps over the whole hash space.
    pub fn anomalies(&self) -> Anomalies {
        let mut a = Anomalies::default();
        let mut next = 0u64; // first hash not yet covered
        for (r, _) in &self.ranges {
            let (s, e) = (r.start as u64, r.end as u64);
            if s > next {
                a.holes += s - next;
            } else if s < next {
                a.overlaps += next.min(e + 1) - s;
            }
            next = next.max(e + 1);
        }
        a.holes += (1u64 << 32) - next;
        a
    }

    /// The subvolume whose range holds `hash`.
    pub fn subvol_for(&self, hash: u32) -> Option<usize> {
        let i = self.ranges.partition_point(|(r, _)| r.start <= hash);
        let (r, s) = self.ranges.get(i.checked_sub(1)?)?;
        (hash <= r.end).then_some(*s)
    }

    /// The piece subvolume `subvol` stores (possibly with no ranges).
    pub fn piece(&self, subvol: usize) -> Piece {
        Piece {
            gen: self.gen,
            complete: self.complete,
            ranges: self
                .ranges
                .iter()
                .filter(|(_, s)| *s == subvol)
                .map(|(r, _)| *r)
                .collect(),
        }
    }

    /// How many hashes `subvol` holds.
    pub fn share(&self, subvol: usize) -> u64 {
        self.ranges
            .iter()
            .filter(|(_, s)| *s == subvol)
            .map(|(r, _)| r.size())
            .sum()
    }

    /// The subvolumes holding some range, ascending.
    pub fn members(&self) -> Vec<usize> {
        let mut m: Vec<usize> = self.ranges.iter().map(|(_, s)| *s).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The layout after taking the subvolumes `remove` out (remove-brick): each of their
    /// ranges is cut in equal slices handed to the remaining members, so only the names
    /// hashing there (the files on the removed subvolumes) move. Never complete.
    pub fn without(&self, remove: &[usize], gen: u32) -> Layout {
        let keep: Vec<usize> = self
            .members()
            .into_iter()
            .filter(|s| !remove.contains(s))
            .collect();
        if keep.is_empty() {
            return self.clone();
        }
        let mut out: Vec<(Range, usize)> = Vec::new();
        for &(r, s) in &self.ranges {
            if !remove.contains(&s) {
                out.push((r, s));
                continue;
            }
            let (size, k) = (r.size(), keep.len() as u64);
            let mut start = r.start as u64;
            for (i, &m) in keep.iter().enumerate() {
                let part = size / k + u64::from((i as u64) < size % k);
                if part == 0 {
                    continue;
                }
                out.push((
                    Range {
                        start: start as u32,
                        end: (start + part - 1) as u32,
                    },
                    m,
                ));
                start += part;
            }
        }
        Self::merged(out, gen)
    }

    /// `ranges` sorted, touching slices of one subvolume merged; never complete.
    fn merged(mut out: Vec<(Range, usize)>, gen: u32) -> Layout {
        out.sort();
        let mut merged: Vec<(Range, usize)> = Vec::with_capacity(out.len());
        for (r, s) in out {
            match merged.last_mut() {
                Some((p, ps)) if *ps == s && p.end as u64 + 1 == r.start as u64 => p.end = r.end,
                _ => merged.push((r, s)),
            }
        }
        Layout {
            gen,
            complete: false,
            ranges: merged,
        }
    }

    /// The layout after adding subvolume `new` to a healthy layout: every member keeps
    /// its ranges' starts and gives up the end of its ranges, just enough to come down to
    /// an equal share among the members and `new`; those slices are `new`'s ranges. So
    /// only the names hashing into the slices move, close to 1/(m+1) of all for `m`
    /// members of equal shares (a naive re-split would move most names). Used by
    /// fix-layout (`weft_mgmt::rebalance`); the result is never complete (names have not
    /// moved yet).
    pub fn expanded(&self, new: usize, gen: u32) -> Layout {
        let mut members = self.members();
        members.retain(|&s| s != new);
        let shares = equal_shares(members.len() + 1);
        let mut out: Vec<(Range, usize)> = Vec::new();
        for (k, &s) in members.iter().enumerate() {
            let mut give = self.share(s).saturating_sub(shares[k]);
            let mut own: Vec<Range> = self
                .ranges
                .iter()
                .filter(|(_, x)| *x == s)
                .map(|(r, _)| *r)
                .collect();
            // Carve from the highest ranges first.
            while give > 0 {
                let Some(r) = own.pop() else { break };
                if r.size() <= give {
                    give -= r.size();
                    out.push((r, new));
                } else {
                    let cut = (r.end as u64 - give + 1) as u32;
                    own.push(Range {
                        start: r.start,
                        end: cut - 1,
                    });
                    out.push((
                        Range {
                            start: cut,
                            end: r.end,
                        },
                        new,
                    ));
                    give = 0;
                }
            }
            out.extend(own.into_iter().map(|r| (r, s)));
        }
        Self::merged(out, gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribute::hash::raw_hash;

    fn names(n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| raw_hash(format!("n{i}.dat").as_bytes()))
            .collect()
    }

    #[test]
    fn equal_layouts_cover_everything_once() {
        for m in 1..=17 {
            let members: Vec<usize> = (0..m).collect();
            for rot in [0, 1, 5] {
                let l = Layout::equal(&members, rot, 7, true);
                assert_eq!(l.anomalies(), Anomalies::default(), "m={m}");
                let shares: Vec<u64> = members.iter().map(|&s| l.share(s)).collect();
                assert_eq!(shares.iter().sum::<u64>(), 1u64 << 32);
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{shares:?}");
                assert_eq!(l.subvol_for(0), Some(members[rot % m]));
                assert!(l.subvol_for(u32::MAX).is_some());
                // Pieces round-trip through their encoding and rebuild the layout.
                let pieces: Vec<Option<Piece>> = members
                    .iter()
                    .map(|&s| Piece::decode(&l.piece(s).encode()))
                    .collect();
                let (back, a) = Layout::from_pieces(&pieces);
                assert!(!a.any());
                assert_eq!(back, l);
            }
        }
    }

    #[test]
    fn holes_and_overlaps_are_found() {
        let l = Layout::equal(&[0, 1, 2], 0, 1, true);
        let mut pieces: Vec<Option<Piece>> = (0..3).map(|s| Some(l.piece(s))).collect();
        pieces[1] = None;
        let (hole, a) = Layout::from_pieces(&pieces);
        assert_eq!(a.holes, l.share(1));
        assert_eq!(a.overlaps, 0);
        let mid = l.ranges[1].0.start;
        assert_eq!(hole.subvol_for(mid), None);
        let mut p0 = l.piece(0);
        p0.ranges[0].end = mid + 9;
        pieces[1] = Some(l.piece(1));
        pieces[0] = Some(p0);
        let (_, a) = Layout::from_pieces(&pieces);
        assert_eq!(
            a,
            Anomalies {
                holes: 0,
                overlaps: 10
            }
        );
        // Mixed generations or a piece without the flag are not complete.
        let mut p2 = l.piece(2);
        p2.gen = 99;
        let (mixed, _) = Layout::from_pieces(&[Some(l.piece(0)), Some(l.piece(1)), Some(p2)]);
        assert!(!mixed.complete);
        assert!(Layout::from_pieces(&[None, None]).1.holes == 1u64 << 32);
    }

    #[test]
    fn bad_pieces_do_not_decode() {
        let good = Piece {
            gen: 3,
            complete: true,
            ranges: vec![Range { start: 5, end: 9 }, Range { start: 20, end: 30 }],
        };
        let b = good.encode();
        assert_eq!(Piece::decode(&b), Some(good));
        assert_eq!(Piece::decode(&b[..b.len() - 1]), None);
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(Piece::decode(&v2), None);
        let mut backwards = b.clone();
        backwards[8..12].copy_from_slice(&50u32.to_be_bytes());
        assert_eq!(Piece::decode(&backwards), None);
        assert_eq!(Piece::decode(&[]), None);
    }

    #[test]
    fn adding_a_subvolume_moves_about_one_in_n_plus_one() {
        let hashes = names(200_000);
        for m in 1..=9usize {
            let members: Vec<usize> = (0..m).collect();
            let old = Layout::equal(&members, m / 2, 1, true);
            let new = old.expanded(m, 2);
            assert_eq!(new.anomalies(), Anomalies::default(), "m={m}");
            for s in 0..=m {
                let want = (1u64 << 32) / (m as u64 + 1);
                assert!(new.share(s).abs_diff(want) <= 1, "m={m} s={s}");
            }
            let mut moved = 0;
            for &h in &hashes {
                let (a, b) = (old.subvol_for(h).unwrap(), new.subvol_for(h).unwrap());
                if a != b {
                    assert_eq!(b, m, "a name only ever moves to the new subvolume");
                    moved += 1;
                }
            }
            let frac = moved as f64 / hashes.len() as f64;
            let ideal = 1.0 / (m as f64 + 1.0);
            assert!(
                (frac - ideal).abs() < 0.01,
                "m={m}: moved {frac}, ideal {ideal}"
            );
        }
        // Repeated growth stays balanced and minimal: 3 -> 4 -> 5 -> 6.
        let mut l = Layout::equal(&[0, 1, 2], 0, 1, true);
        for new in 3..6 {
            let next = l.expanded(new, new as u32);
            let moved = hashes
                .iter()
                .filter(|&&h| l.subvol_for(h) != next.subvol_for(h))
                .count() as f64
                / hashes.len() as f64;
            assert!(
                (moved - 1.0 / (new as f64 + 1.0)).abs() < 0.01,
                "{new}: {moved}"
            );
            assert!(!next.anomalies().any());
            l = next;
        }
    }
}
