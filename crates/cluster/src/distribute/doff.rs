//! Directory offsets (`d_off` cookies) of the merged listing.
//!
//! The listing is every subvolume's own listing, one after the other in subvolume order.
//! A cookie says where to resume: which subvolume, and that subvolume's own cookie.
//! With `k` = the bits needed for the subvolume count (at least 1) and `s = 63 - k`:
//! - bit 63 clear (direct): bits `62..s` are the subvolume index, bits `s-1..0` the
//!   subvolume's own cookie, used when it fits in `s` bits (tmpfs, XFS, a brick's small
//!   sequential cookies);
//! - bit 63 set (table): bits `62..s` the subvolume index, bits `s-1..0` a slot in the
//!   open directory's own table of the subvolume cookies it handed out (ext4's 63-bit hash
//!   cookies do not fit). Slots are only valid on the open directory that handed them out
//!   (FUSE passes every readdir of an open directory its own handle), which is where the
//!   kernel and `telldir`/`seekdir` use them.
//!
//! Cookie 0 is the start of subvolume 0, the start of the listing.

use std::collections::HashMap;

/// How cookies are split for one subvolume count.
#[derive(Clone, Copy, Debug)]
pub struct Split {
    shift: u32,
}

const TABLE: u64 = 1 << 63;

impl Split {
    pub fn new(subvols: usize) -> Split {
        let k = (usize::BITS - subvols.saturating_sub(1).leading_zeros()).max(1);
        Split { shift: 63 - k }
    }

    fn low_mask(&self) -> u64 {
        (1u64 << self.shift) - 1
    }

    /// The cookie for (subvolume `idx`, its own cookie `off`), adding a table slot when
    /// it does not fit.
    pub fn encode(&self, idx: usize, off: u64, table: &mut Table) -> u64 {
        let hi = (idx as u64) << self.shift;
        if off <= self.low_mask() {
            hi | off
        } else {
            TABLE | hi | table.slot(idx, off)
        }
    }

    /// (subvolume index, its own cookie); `None` for a cookie this open directory never
    /// handed out.
    pub fn decode(&self, cookie: u64, table: &Table) -> Option<(usize, u64)> {
        let idx = ((cookie & !TABLE) >> self.shift) as usize;
        let low = cookie & self.low_mask();
        if cookie & TABLE == 0 {
            return Some((idx, low));
        }
        let (i, off) = *table.slots.get(low as usize)?;
        (i == idx).then_some((idx, off))
    }
}

/// One open directory's cookies that did not fit directly.
#[derive(Default, Debug)]
pub struct Table {
    slots: Vec<(usize, u64)>,
    index: HashMap<(usize, u64), u64>,
}

impl Table {
    fn slot(&mut self, idx: usize, off: u64) -> u64 {
        if let Some(&s) = self.index.get(&(idx, off)) {
            return s;
        }
        let s = self.slots.len() as u64;
        self.slots.push((idx, off));
        self.index.insert((idx, off), s);
        s
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip() {
        for n in [1usize, 2, 3, 4, 5, 8, 9, 100] {
            let sp = Split::new(n);
            let mut t = Table::default();
            assert_eq!(sp.encode(0, 0, &mut t), 0, "the start is 0");
            for idx in 0..n {
                for off in [
                    0u64,
                    1,
                    4096,
                    (1 << 40) + 7,
                    (1 << 62) - 1,
                    i64::MAX as u64,
                    u64::MAX,
                ] {
                    let c = sp.encode(idx, off, &mut t);
                    assert_eq!(
                        sp.decode(c, &t),
                        Some((idx, off)),
                        "n={n} idx={idx} off={off}"
                    );
                }
            }
        }
        // n = 4: two index bits (61, 62); cookies below 2^61 are direct.
        let sp = Split::new(4);
        let mut t = Table::default();
        assert_eq!(sp.encode(3, 5, &mut t), (3 << 61) | 5);
        assert!(t.is_empty());
        let c = sp.encode(2, 1 << 61, &mut t);
        assert_eq!(c, (1 << 63) | (2 << 61));
        assert_eq!(sp.encode(2, 1 << 61, &mut t), c, "one slot per cookie");
        assert_eq!(t.len(), 1);
        // A table cookie this directory never handed out.
        assert_eq!(sp.decode((1 << 63) | 77, &t), None);
        assert_eq!(
            sp.decode((1 << 63) | (1 << 61), &t),
            None,
            "slot 0 is subvolume 2's"
        );
    }
}
