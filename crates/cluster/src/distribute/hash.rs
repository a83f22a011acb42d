//! Name hashing and the temporary-name rule.
//!
//! A name hashes to the low 32 bits of XXH3-64 of its bytes. Names shaped like the
//! temporaries rsync and editors write next to the file they replace hash as that file's
//! name, so the final rename stays on one subvolume (no link file): see [`temp_base`].

use xxhash_rust::xxh3::xxh3_64;

/// The hash of raw bytes: the low 32 bits of XXH3-64 (seed 0).
pub fn raw_hash(bytes: &[u8]) -> u32 {
    xxh3_64(bytes) as u32
}

/// The name a temporary stands for, when `name` is one.
///
/// The rule: after removing one trailing `~`, the name is `.` + NAME + `.` + six ASCII
/// letters or digits, NAME being at least one byte; the answer is NAME. So
/// `.report.txt.Ab12Cd` (rsync, `mkstemp`) and `.report.txt.Ab12Cd~` hash as
/// `report.txt`. Anything else is not a temporary.
pub fn temp_base(name: &[u8]) -> Option<&[u8]> {
    let n = name.strip_suffix(b"~").unwrap_or(name);
    // '.' + NAME (>= 1) + '.' + 6
    if n.len() < 9 || n[0] != b'.' {
        return None;
    }
    let dot = n.len() - 7;
    if n[dot] != b'.' || !n[dot + 1..].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some(&n[1..dot])
}

/// The hash that places `name`: [`raw_hash`] of the name, or of [`temp_base`] for a
/// temporary.
pub fn name_hash(name: &[u8]) -> u32 {
    raw_hash(temp_base(name).unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_hash_as_their_target() {
        assert_eq!(temp_base(b".report.txt.Ab12Cd"), Some(&b"report.txt"[..]));
        assert_eq!(temp_base(b".report.txt.Ab12Cd~"), Some(&b"report.txt"[..]));
        assert_eq!(temp_base(b".a.XXXXXX"), Some(&b"a"[..]));
        assert_eq!(temp_base(b"..bashrc.q1w2e3"), Some(&b".bashrc"[..]));
        assert_eq!(name_hash(b".f.abcdef"), name_hash(b"f"));
        assert_eq!(name_hash(b".f.abcdef~"), name_hash(b"f"));
        // Not temporaries.
        for n in [
            &b"report.txt"[..],
            b".bashrc",
            b"..abcdef",
            b".a.abcde",
            b".a.abcdefg",
            b".a.abc-ef",
            b"a.abcdef",
            b".a.abcdef~~",
            b"",
        ] {
            assert_eq!(temp_base(n), None, "{:?}", String::from_utf8_lossy(n));
            assert_eq!(name_hash(n), raw_hash(n));
        }
    }

    #[test]
    fn hash_is_stable_and_spread() {
        // The hash is part of the on-disk placement: it must never change.
        assert_eq!(raw_hash(b""), xxh3_64(b"") as u32);
        let mut buckets = [0u32; 16];
        for i in 0..160_000 {
            buckets[(raw_hash(format!("file-{i}").as_bytes()) >> 28) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }
}
