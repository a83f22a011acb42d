//! `auth.allow` / `auth.reject`: which client addresses a brick serves.
//!
//! A list is comma-separated; each entry is `*` (everyone), an address (`127.0.0.1`,
//! `::1`), a CIDR block (`10.0.0.0/8`, `fd00::/8`) or an IPv4 pattern with `*` for whole
//! octets (`192.168.*.*`, `10.*`). A client is served when some `auth.allow` entry matches
//! and no `auth.reject` entry does: reject wins, as in GlusterFS.

use std::net::IpAddr;

/// One entry of an address list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Any,
    Cidr(IpAddr, u8),
    Octets(Vec<Option<u8>>),
}

/// A parsed address list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AddrList(Vec<Entry>);

impl AddrList {
    /// Parses a comma-separated list; the error names the entry that is not an address,
    /// a CIDR block or a pattern.
    pub fn parse(s: &str) -> Result<AddrList, String> {
        let mut out = Vec::new();
        for raw in s.split(',') {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            out.push(parse_entry(e).ok_or_else(|| {
                format!(
                    "{e:?} is not an address, a CIDR block (10.0.0.0/8) or a pattern (192.168.*)"
                )
            })?);
        }
        Ok(AddrList(out))
    }

    /// True when some entry matches `addr` (IPv4-mapped IPv6 addresses match as IPv4).
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        self.0.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Cidr(net, bits) => in_cidr(addr, *net, *bits),
            Entry::Octets(pat) => match addr {
                IpAddr::V4(v4) => v4
                    .octets()
                    .iter()
                    .zip(pat.iter().chain(std::iter::repeat(&None)))
                    .all(|(o, p)| p.is_none_or(|p| p == *o)),
                IpAddr::V6(_) => false,
            },
        })
    }
}

fn parse_entry(e: &str) -> Option<Entry> {
    if e == "*" {
        return Some(Entry::Any);
    }
    if let Some((net, bits)) = e.split_once('/') {
        let net: IpAddr = net.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(Entry::Cidr(net, bits));
    }
    if let Ok(a) = e.parse::<IpAddr>() {
        let bits = if a.is_ipv4() { 32 } else { 128 };
        return Some(Entry::Cidr(a, bits));
    }
    if e.contains('*') {
        let parts: Vec<&str> = e.split('.').collect();
        if parts.len() > 4 {
            return None;
        }
        let mut pat = Vec::new();
        for p in parts {
            pat.push(if p == "*" {
                None
            } else {
                Some(p.parse().ok()?)
            });
        }
        return Some(Entry::Octets(pat));
    }
    None
}

fn in_cidr(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether a brick serves a client at `addr`, and if not, why.
pub fn check(allow: &AddrList, reject: &AddrList, addr: IpAddr) -> Result<(), String> {
    if reject.matches(addr) {
        return Err(format!("address {addr} is rejected by auth.reject"));
    }
    if !allow.matches(addr) {
        return Err(format!("address {addr} is not in auth.allow"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_match() {
        let l = AddrList::parse("127.0.0.1, 10.0.0.0/8,192.168.*.7, fd00::/8").unwrap();
        assert!(l.matches(ip("127.0.0.1")));
        assert!(!l.matches(ip("127.0.0.2")));
        assert!(l.matches(ip("10.200.1.1")));
        assert!(l.matches(ip("192.168.44.7")));
        assert!(!l.matches(ip("192.168.44.8")));
        assert!(l.matches(ip("fd12::1")));
        assert!(l.matches(ip("::ffff:127.0.0.1")));
        assert!(AddrList::parse("*").unwrap().matches(ip("8.8.8.8")));
        assert!(AddrList::parse("10.*").unwrap().matches(ip("10.1.2.3")));
        assert!(AddrList::parse("10.0.0.0/33").is_err());
        assert!(AddrList::parse("bogus").is_err());
        assert!(AddrList::parse("1.2.3.4.*").is_err());
    }

    #[test]
    fn reject_wins() {
        let all = AddrList::parse("*").unwrap();
        let lo = AddrList::parse("127.0.0.1").unwrap();
        assert!(check(&all, &lo, ip("127.0.0.1")).is_err());
        assert!(check(&all, &lo, ip("127.0.0.2")).is_ok());
        assert!(check(&lo, &AddrList::default(), ip("127.0.0.2")).is_err());
    }
}
