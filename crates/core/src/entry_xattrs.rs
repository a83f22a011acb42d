//! Xattrs of the entries of a `readdirp`, asked with [`READDIRP_XATTRS_KEY`]: a client
//! cache learns, with one listing, what `ls -l` asks of every file (its security label,
//! its ACLs) instead of one round trip per file and name.

use crate::{Gfid, XattrMap};

/// Xdata key on a `readdirp`: xattr names, `\0`-separated (UTF-8). A brick that honours
/// it answers, under the same key in the reply's xdata, an [`EntryXattrs`] (see
/// [`EntryXattrs::to_bytes`]) with the names asked and, for each entry it gave attributes
/// for, the values it has among them: a name asked and absent for an entry there has no
/// value (`ENODATA`). Absent from the reply when a translator below does not pass it on.
pub const READDIRP_XATTRS_KEY: &str = "readdirp.xattrs";

/// The answer to [`READDIRP_XATTRS_KEY`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryXattrs {
    /// The names asked: any of them missing from an entry's map is absent there.
    pub names: Vec<String>,
    /// Per entry (by gfid), the values it has among `names`.
    pub entries: Vec<(Gfid, XattrMap)>,
}

impl EntryXattrs {
    /// The names a `readdirp` call asks for, as the value of [`READDIRP_XATTRS_KEY`].
    pub fn ask(names: &[&str]) -> Vec<u8> {
        names.join("\0").into_bytes()
    }

    /// The names a call's [`READDIRP_XATTRS_KEY`] value asks for (empty ones dropped;
    /// `None` if it is not UTF-8).
    pub fn asked(value: &[u8]) -> Option<Vec<String>> {
        let s = std::str::from_utf8(value).ok()?;
        Some(
            s.split('\0')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// The answer as bytes for an xdata value (postcard), read by [`EntryXattrs::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// An answer from [`EntryXattrs::to_bytes`]; `None` for bytes that are not.
    pub fn from_bytes(b: &[u8]) -> Option<EntryXattrs> {
        postcard::from_bytes(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_and_answers_round_trip() {
        let ask = EntryXattrs::ask(&["security.selinux", "system.posix_acl_access"]);
        assert_eq!(
            EntryXattrs::asked(&ask).unwrap(),
            ["security.selinux", "system.posix_acl_access"]
        );
        assert_eq!(EntryXattrs::asked(b"\0a\0\0b").unwrap(), ["a", "b"]);
        assert!(EntryXattrs::asked(&[0xff, 0xfe]).is_none());
        let mut m = XattrMap::new();
        m.insert("security.selinux".into(), b"label".to_vec());
        let a = EntryXattrs {
            names: vec!["security.selinux".into()],
            entries: vec![(Gfid::random(), m), (Gfid::random(), XattrMap::new())],
        };
        assert_eq!(EntryXattrs::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(EntryXattrs::from_bytes(b"\xff\xff\xff"), None);
    }
}
