//! Pending-change counters ("changelogs") and what they say about a replica set.
//!
//! Every copy of an inode carries one xattr per replica of its set, named
//! [`PENDING_PREFIX`]`<replica's subvolume name>`, holding three big-endian u32 counters:
//! changes to the data, to the metadata (attributes, xattrs) and to the entries (of a
//! directory) that the copy *knows* that replica may have missed. `pending[i][j]` is what
//! copy `i` says of replica `j`.
//!
//! A change raises, on every copy taking part, the counters of every replica by one before
//! it starts (*pre-op*) and lowers those of the replicas where it succeeded by one after
//! (*post-op*). A replica absent from the start, or one the change failed on, gets one more
//! (an *accusation*) before the change is acknowledged. So, after any crash:
//! - a copy with `pending[i][i] > 0` is *dirty*: a change on it was cut short;
//! - copy `i` *accuses* `j` when `pending[i][j] > pending[i][i]`: `j` surely missed
//!   something `i` has. Accused copies are *sinks*; the others are *sources*.
//! - When every copy is accused by another, no copy is known good: split-brain.
//! - When nobody is accused but some copy is dirty, the copies may differ by a change
//!   that was never acknowledged; any of them may serve as the source.

/// Prefix of the changelog xattrs; the subvolume's name follows.
pub const PENDING_PREFIX: &str = "trusted.weft.afr.";

/// Counters per changelog xattr: data, metadata, entry.
pub type Counters = [u32; 3];

/// Which counter a change moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// File contents and size.
    Data = 0,
    /// Owner, mode, times, xattrs.
    Metadata = 1,
    /// A directory's names.
    Entry = 2,
}

impl Kind {
    /// The word `heal info` and logs use.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Metadata => "metadata",
            Kind::Entry => "entry",
        }
    }
}

/// The changelog xattr naming subvolume `child`.
pub fn key(child: &str) -> String {
    format!("{PENDING_PREFIX}{child}")
}

/// The order in which copy `i`'s changelog xattrs must be updated by one xattrop moving
/// replica `j`'s counters by `delta(j)` (indexes into `names`, the replicas' subvolume
/// names), so that a brick killed between two of them never leaves copy `i` accusing a
/// replica it accused neither before nor after: its own counter goes first when it rises
/// and last otherwise (an accusation is another counter exceeding its own).
pub fn torn_safe_order(
    names: &[String],
    i: usize,
    delta: impl Fn(usize) -> [i64; 3],
) -> Vec<String> {
    let own = key(&names[i]);
    let others = (0..names.len()).filter(|&j| j != i).map(|j| key(&names[j]));
    if delta(i).iter().any(|&v| v > 0) {
        std::iter::once(own).chain(others).collect()
    } else {
        others.chain(std::iter::once(own)).collect()
    }
}

/// Encodes signed deltas (or values) as an xattrop operand: big-endian u32s that the
/// brick adds with wrapping, so a negative delta subtracts.
pub fn encode(c: [i64; 3]) -> Vec<u8> {
    c.iter()
        .flat_map(|v| (*v as i32 as u32).to_be_bytes())
        .collect()
}

/// Decodes a changelog value; missing or short bytes read as zeros.
pub fn decode(v: &[u8]) -> Counters {
    let mut out = [0u32; 3];
    for (i, o) in out.iter_mut().enumerate() {
        if let Some(b) = v.get(i * 4..i * 4 + 4) {
            *o = u32::from_be_bytes(b.try_into().unwrap_or([0; 4]));
        }
    }
    out
}

/// The changelogs of one inode on each replica: `rows[i]` is copy `i`'s counters for
/// every replica, `None` when replica `i` did not answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    /// Per copy, per replica.
    pub rows: Vec<Option<Vec<Counters>>>,
}

/// What the changelogs of one kind say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing pending among the copies that answered.
    Clean,
    /// `sinks` missed changes the `sources` have. With no sinks, some copy is dirty: the
    /// copies may differ by an unacknowledged change, and one source should be copied to
    /// the others.
    Heal {
        /// Copies known good.
        sources: Vec<usize>,
        /// Copies known behind.
        sinks: Vec<usize>,
    },
    /// Every copy that answered is accused by another.
    SplitBrain,
}

impl Matrix {
    /// A matrix of `n` replicas where nobody answered yet.
    pub fn new(n: usize) -> Matrix {
        Matrix {
            rows: vec![None; n],
        }
    }

    /// Sets copy `i`'s row from its xattrs (`xattr name -> value`), given the replicas'
    /// subvolume names in order.
    pub fn set_row<'a>(
        &mut self,
        i: usize,
        names: &[String],
        get: impl Fn(&str) -> Option<&'a [u8]>,
    ) {
        let row = names
            .iter()
            .map(|n| get(&key(n)).map(decode).unwrap_or_default())
            .collect();
        if let Some(r) = self.rows.get_mut(i) {
            *r = Some(row);
        }
    }

    fn at(&self, i: usize, j: usize, k: Kind) -> u32 {
        self.rows
            .get(i)
            .and_then(|r| r.as_ref())
            .and_then(|r| r.get(j))
            .map(|c| c[k as usize])
            .unwrap_or(0)
    }

    /// Copies that answered.
    pub fn answered(&self) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].is_some())
            .collect()
    }

    /// Whether any counter of kind `k` is nonzero on any copy that answered (including
    /// accusations of replicas that did not answer).
    pub fn any_pending(&self, k: Kind) -> bool {
        self.rows
            .iter()
            .flatten()
            .any(|r| r.iter().any(|c| c[k as usize] != 0))
    }

    /// Whether any counter of any kind is nonzero.
    pub fn any_pending_at_all(&self) -> bool {
        [Kind::Data, Kind::Metadata, Kind::Entry]
            .iter()
            .any(|&k| self.any_pending(k))
    }

    /// Whether copy `i` accuses replica `j` (see the module doc).
    pub fn accuses(&self, i: usize, j: usize, k: Kind) -> bool {
        i != j && self.at(i, j, k) > self.at(i, i, k)
    }

    /// What the counters of kind `k` say about the copies that answered.
    pub fn verdict(&self, k: Kind) -> Verdict {
        let up = self.answered();
        let sinks: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&j| up.iter().any(|&i| self.accuses(i, j, k)))
            .collect();
        if !up.is_empty() && sinks.len() == up.len() {
            return Verdict::SplitBrain;
        }
        let dirty = up.iter().any(|&i| self.at(i, i, k) != 0);
        if sinks.is_empty() && !dirty {
            return Verdict::Clean;
        }
        let sources = up.into_iter().filter(|j| !sinks.contains(j)).collect();
        Verdict::Heal { sources, sinks }
    }

    /// The operand that subtracts, on copy `i`, exactly what this matrix read there: after
    /// a heal, counters the heal settled go back to zero while changes counted since stay.
    /// Only the kinds in `kinds` are touched.
    pub fn undo(&self, i: usize, j: usize, kinds: &[Kind]) -> [i64; 3] {
        let mut d = [0i64; 3];
        for &k in kinds {
            d[k as usize] = -(self.at(i, j, k) as i64);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[Option<&[Counters]>]) -> Matrix {
        Matrix {
            rows: rows.iter().map(|r| r.map(|r| r.to_vec())).collect(),
        }
    }

    /// Every update replicate makes to a copy's changelog (pre-op with replicas left
    /// out, post-op, abort, accusation, a heal's subtraction), applied one key at a time
    /// in `torn_safe_order` and cut short after every prefix (a brick killed between two
    /// setxattrs), from every starting row with small counters: no cut leaves the copy
    /// accusing a replica that neither the starting nor the finished row accuses.
    #[test]
    fn a_torn_update_in_the_safe_order_accuses_nobody_new() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let n = names.len();
        let k = Kind::Data as usize;
        // Delta of replica `j` on copy `i`'s changelog.
        type Delta = fn(usize, usize) -> i64;
        let updates: Vec<(&str, Delta)> = vec![
            ("pre-op, all locked", |_, _| 1),
            ("pre-op, c left out", |_, j| if j == 2 { 2 } else { 1 }),
            ("post-op, all", |_, _| -1),
            ("post-op, c failed", |_, j| if j == 2 { 0 } else { -1 }),
            ("abort, c left out", |_, j| if j == 2 { -2 } else { -1 }),
            ("accuse c", |_, j| i64::from(j == 2)),
            ("heal subtracts all", |_, _| -1),
            (
                "heal subtracts own only",
                |i, j| if i == j { -1 } else { 0 },
            ),
        ];
        let mut checked = 0;
        for i in 0..n {
            for (what, d) in &updates {
                for start in 0..27u32 {
                    let row0: Vec<i64> = (0..n)
                        .map(|j| i64::from(start / 3u32.pow(j as u32) % 3))
                        .collect();
                    let delta = |j: usize| {
                        let mut c = [0i64; 3];
                        c[k] = d(i, j);
                        c
                    };
                    let fin: Vec<i64> = (0..n).map(|j| row0[j] + delta(j)[k]).collect();
                    if fin.iter().any(|&v| v < 0) {
                        continue; // not a state this update is ever applied to
                    }
                    let accuses = |row: &[i64], j: usize| j != i && row[j] > row[i];
                    let order = torn_safe_order(&names, i, delta);
                    let mut row = row0.clone();
                    for key_name in &order {
                        let j = names.iter().position(|x| key(x) == *key_name).unwrap();
                        row[j] += delta(j)[k];
                        for t in 0..n {
                            assert!(
                                !accuses(&row, t) || accuses(&row0, t) || accuses(&fin, t),
                                "{what} on copy {i} from {row0:?}: cut at {row:?} accuses {t}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
    }

    const Z: Counters = [0, 0, 0];
    const D1: Counters = [1, 0, 0];
    const D2: Counters = [2, 0, 0];

    #[test]
    fn encode_decode_and_negative_deltas() {
        assert_eq!(decode(&encode([1, -1, 7])), [1, u32::MAX, 7]);
        assert_eq!(decode(&[0, 0, 0, 5]), [5, 0, 0]);
        assert_eq!(decode(&[]), Z);
    }

    #[test]
    fn clean_and_a_sink() {
        assert_eq!(
            m(&[Some(&[Z, Z]), Some(&[Z, Z])]).verdict(Kind::Data),
            Verdict::Clean
        );
        // Copy 0 accuses 1 (a write failed there).
        let x = m(&[Some(&[Z, D2, Z]), Some(&[Z, Z, Z]), Some(&[Z, D2, Z])]);
        assert_eq!(
            x.verdict(Kind::Data),
            Verdict::Heal {
                sources: vec![0, 2],
                sinks: vec![1]
            }
        );
        assert_eq!(x.verdict(Kind::Metadata), Verdict::Clean);
        // The sink's own dirty counter (its pre-op happened, post-op did not) changes nothing.
        let y = m(&[Some(&[Z, D2]), Some(&[D1, D1])]);
        assert_eq!(
            y.verdict(Kind::Data),
            Verdict::Heal {
                sources: vec![0],
                sinks: vec![1]
            }
        );
    }

    #[test]
    fn cut_short_change_is_not_split_brain() {
        // Pre-op everywhere, no post-op: everyone dirty, nobody accused.
        let x = m(&[Some(&[D1, D1]), Some(&[D1, D1])]);
        assert_eq!(
            x.verdict(Kind::Data),
            Verdict::Heal {
                sources: vec![0, 1],
                sinks: vec![]
            }
        );
    }

    #[test]
    fn mutual_accusation_is_split_brain() {
        let x = m(&[Some(&[Z, D2]), Some(&[D2, Z])]);
        assert_eq!(x.verdict(Kind::Data), Verdict::SplitBrain);
        // A replica that did not answer neither accuses nor is judged.
        let y = m(&[Some(&[Z, D2, D2]), None, Some(&[D2, Z, Z])]);
        assert_eq!(y.verdict(Kind::Data), Verdict::SplitBrain);
        let z = m(&[Some(&[Z, D2, Z]), None, Some(&[Z, D2, Z])]);
        assert_eq!(z.verdict(Kind::Data), Verdict::Clean);
        assert!(z.any_pending(Kind::Data));
    }

    #[test]
    fn undo_subtracts_what_was_read() {
        let x = m(&[Some(&[[1, 2, 3], [4, 5, 6]]), None]);
        assert_eq!(
            decode(&encode(x.undo(0, 1, &[Kind::Data, Kind::Entry]))),
            [(-4i32) as u32, 0, (-6i32) as u32]
        );
    }
}
