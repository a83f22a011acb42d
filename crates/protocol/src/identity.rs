//! Who a client is, as a brick sees it: identity squashing (GlusterFS's
//! `server.root-squash`, `server.all-squash`, `server.anonuid`, `server.anongid`) and
//! certificate names (`auth.ssl-allow`, checked on the common name of a TLS client's
//! certificate).
//!
//! The brick server trusts the uid and gid each request carries (the client's kernel checked
//! the caller's permissions); squashing rewrites them before the brick sees the request, so
//! files a squashed caller creates belong to the anonymous ids and the brick's own checks
//! (`access`) treat it as that user.

use weft_core::Ctx;

/// The anonymous user and group of GlusterFS and NFS (`nfsnobody`/`nobody`).
pub const DEFAULT_ANON_ID: u32 = 65534;

/// How a brick rewrites the uid and gid of every request it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Squash {
    /// `server.root-squash`: uid 0 becomes `anonuid`, gid 0 becomes `anongid`.
    pub root: bool,
    /// `server.all-squash`: every uid becomes `anonuid` and every gid `anongid`.
    pub all: bool,
    /// `server.anonuid`: the uid squashed requests run as.
    pub anonuid: u32,
    /// `server.anongid`: the gid squashed requests run as.
    pub anongid: u32,
}

impl Default for Squash {
    fn default() -> Squash {
        Squash {
            root: false,
            all: false,
            anonuid: DEFAULT_ANON_ID,
            anongid: DEFAULT_ANON_ID,
        }
    }
}

impl Squash {
    /// True when some request may be rewritten.
    pub fn is_on(&self) -> bool {
        self.root || self.all
    }

    /// Rewrites the identity of one request received from a client. Every request is
    /// rewritten, whatever its pid: a client cannot claim to be internal work.
    pub fn apply(&self, ctx: &mut Ctx) {
        if self.all {
            ctx.uid = self.anonuid;
            ctx.gid = self.anongid;
        } else if self.root {
            if ctx.uid == 0 {
                ctx.uid = self.anonuid;
            }
            if ctx.gid == 0 {
                ctx.gid = self.anongid;
            }
        }
    }
}

/// A parsed `auth.ssl-allow`: the certificate common names a brick serves.
///
/// Comma-separated entries, each a name or a pattern where `*` matches any run of
/// characters and `?` one character (as fnmatch does in GlusterFS's `auth.login`);
/// matching is case-sensitive. `*` alone (the default) lets every client in, with or
/// without a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameList {
    /// `None`: everyone (`*`).
    entries: Option<Vec<Vec<char>>>,
}

impl NameList {
    /// Parses a comma-separated list. An empty list is an error: it would refuse every
    /// client, which is better said with `auth.reject`.
    pub fn parse(s: &str) -> Result<NameList, String> {
        let entries: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(
                "names no certificate: give common names (client1, *.example.com) or * for every client"
                    .into(),
            );
        }
        if entries.contains(&"*") {
            return Ok(NameList { entries: None });
        }
        Ok(NameList {
            entries: Some(entries.iter().map(|e| e.chars().collect()).collect()),
        })
    }

    /// True for `*`: every client is served, certificate or not.
    pub fn allows_all(&self) -> bool {
        self.entries.is_none()
    }

    /// True when some entry matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        let Some(entries) = &self.entries else {
            return true;
        };
        let name: Vec<char> = name.chars().collect();
        entries.iter().any(|p| glob(p, &name))
    }
}

/// Whether a client with certificate `cert` (its end-entity certificate, DER, when it
/// presented one) may use a brick whose `auth.ssl-allow` is `allow`; if not, why.
pub fn check_cert(allow: &NameList, cert: Option<&[u8]>) -> Result<(), String> {
    if allow.allows_all() {
        return Ok(());
    }
    let Some(der) = cert else {
        return Err(
            "the client presented no certificate and auth.ssl-allow names the certificates allowed"
                .into(),
        );
    };
    match common_names(der).as_slice() {
        [] => Err("the client's certificate has no common name (CN) for auth.ssl-allow".into()),
        [cn] if allow.matches(cn) => Ok(()),
        [cn] => Err(format!(
            "certificate name {cn:?} is not allowed by auth.ssl-allow"
        )),
        more => Err(format!(
            "the client's certificate has {} common names ({}); auth.ssl-allow needs exactly one",
            more.len(),
            more.join(", ")
        )),
    }
}

/// fnmatch-like matching of `s` against `pat` (`*`: any run, `?`: one character).
fn glob(pat: &[char], s: &[char]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where the last `*` was, and the position in `s` it is retried from.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some('*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(&c) if c == '?' || c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == '*')
}

/// The common names (OID 2.5.4.3) in the subject of a DER certificate, in order; empty when
/// it has none or does not parse. Strings of the UTF8String, PrintableString, IA5String,
/// TeletexString (taken as Latin-1) and BMPString types are read; other types are skipped.
pub fn common_names(der: &[u8]) -> Vec<String> {
    subject_common_names(der).unwrap_or_default()
}

/// One DER tag-length-value: (tag, contents, what follows).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

fn subject_common_names(der: &[u8]) -> Option<Vec<String>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
    //                               validity, subject, ... }
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = tlv(rest)? else {
        return None;
    };
    let mut names = Vec::new();
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }
    while !rdns.is_empty() {
        let (SET, mut atvs, next) = tlv(rdns)? else {
            return None;
        };
        rdns = next;
        while !atvs.is_empty() {
            let (SEQUENCE, atv, next) = tlv(atvs)? else {
                return None;
            };
            atvs = next;
            let (OID, oid, value) = tlv(atv)? else {
                return None;
            };
            if oid != CN_OID {
                continue;
            }
            let (tag, bytes, _) = tlv(value)?;
            if let Some(s) = directory_string(tag, bytes) {
                names.push(s);
            }
        }
    }
    Some(names)
}

/// The text of an X.520 DirectoryString (or IA5String) of type `tag`.
fn directory_string(tag: u8, b: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String
        0x0c | 0x13 | 0x16 => String::from_utf8(b.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(b.iter().map(|&c| char::from(c)).collect()),
        // BMPString: UCS-2, big-endian.
        0x1e => {
            let pairs = b.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = pairs.map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["host.example".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in names {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn squash_rewrites_root_or_everyone() {
        let root = Ctx {
            uid: 0,
            gid: 0,
            pid: 7,
            ..Ctx::internal()
        };
        let user = Ctx {
            uid: 1000,
            gid: 0,
            ..root.clone()
        };
        let off = Squash::default();
        let mut c = root.clone();
        off.apply(&mut c);
        assert_eq!((c.uid, c.gid), (0, 0));
        let rs = Squash {
            root: true,
            anonuid: 5,
            anongid: 6,
            ..Squash::default()
        };
        let mut c = root.clone();
        rs.apply(&mut c);
        assert_eq!((c.uid, c.gid, c.pid), (5, 6, 7));
        let mut c = user.clone();
        rs.apply(&mut c);
        assert_eq!((c.uid, c.gid), (1000, 6), "gid 0 is squashed on its own");
        let all = Squash {
            all: true,
            ..Squash::default()
        };
        let mut c = user.clone();
        all.apply(&mut c);
        assert_eq!((c.uid, c.gid), (65534, 65534));
    }

    #[test]
    fn name_lists_match_names_and_patterns() {
        let l = NameList::parse("client1, *.example.com,web-?").unwrap();
        assert!(!l.allows_all());
        assert!(l.matches("client1"));
        assert!(!l.matches("client10"));
        assert!(!l.matches("Client1"));
        assert!(l.matches("a.example.com"));
        assert!(!l.matches("example.com"));
        assert!(l.matches("web-1"));
        assert!(!l.matches("web-12"));
        assert!(NameList::parse("*").unwrap().allows_all());
        assert!(NameList::parse("a, *").unwrap().allows_all());
        assert!(NameList::parse(" , ").is_err());
        assert!(glob(&['a', '*', 'b', '*'], &['a', 'x', 'b', 'y', 'b']));
        assert!(glob(&['*', '*'], &[]));
        assert!(!glob(&['a'], &[]));
    }

    #[test]
    fn common_names_come_from_the_subject() {
        let der = cert_with(&[
            (rcgen::DnType::OrganizationName, "Weft"),
            (rcgen::DnType::CommonName, "client-α"),
        ]);
        assert_eq!(common_names(&der), vec!["client-α".to_string()]);
        assert!(common_names(&cert_with(&[(rcgen::DnType::OrganizationName, "x")])).is_empty());
        // Garbage and truncations never panic.
        for n in 0..der.len() {
            let _ = common_names(&der[..n]);
        }
        assert!(common_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(common_names(b"").is_empty());

        let allow = NameList::parse("client-α").unwrap();
        assert!(check_cert(&allow, Some(&der)).is_ok());
        let other = cert_with(&[(rcgen::DnType::CommonName, "mallory")]);
        let e = check_cert(&allow, Some(&other)).unwrap_err();
        assert!(e.contains("\"mallory\" is not allowed"), "{e}");
        assert!(check_cert(&allow, None)
            .unwrap_err()
            .contains("no certificate"));
        assert!(check_cert(&NameList::default(), None).is_ok());
    }
}
