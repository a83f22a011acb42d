//! The `volume set` keys: each GlusterFS-style key mapped to the translator and option it
//! sets, the graph it lives in, and the op-version that introduced it. One table; volume
//! set, get, reset, `volume set help` and volfile generation all read it.

use weft_core::options::{parse_value, OptionSpec};
use weft_core::Registry;

/// Which graph a key's translator sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client graph (mounts): a change reaches mounted clients live.
    Client,
    /// Every brick graph of the volume: a change reattaches the bricks (clients reconnect).
    Brick,
}

impl Side {
    /// "client" or "brick".
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Brick => "brick",
        }
    }
}

/// One settable key.
#[derive(Clone, Copy, Debug)]
pub struct VolumeOption {
    /// The key `volume set` takes.
    pub key: &'static str,
    /// The graph it changes.
    pub side: Side,
    /// The translator type that carries it.
    pub xlator: &'static str,
    /// The translator's option it sets.
    pub option: &'static str,
    /// The pool op-version that introduced it.
    pub op_version: u32,
    /// Set when the key is known but cannot be used yet: the reason.
    pub unsupported: Option<&'static str>,
}

const fn opt(
    key: &'static str,
    side: Side,
    xlator: &'static str,
    option: &'static str,
) -> VolumeOption {
    VolumeOption {
        key,
        side,
        xlator,
        option,
        op_version: 1,
        unsupported: None,
    }
}

/// Whether the volume's bricks tell its clients about changes (`features.cache-invalidation`,
/// on unless set off): clients then cache metadata for `performance.md-cache-timeout`.
pub fn cache_invalidation(set: &std::collections::BTreeMap<String, String>) -> bool {
    use weft_core::options::{OptionKind, OptionValue};
    !matches!(
        set.get("features.cache-invalidation")
            .map(|v| parse_value(OptionKind::Bool, v)),
        Some(Ok(OptionValue::Bool(false)))
    )
}

/// How long clients cache metadata when `performance.md-cache-timeout` is not set: 60 s
/// when the bricks tell them about changes, else 1 s (GlusterFS's default). Either way
/// below half of `features.cache-invalidation-timeout` (300 s by default), how long a
/// brick keeps telling a client that asked nothing since.
pub fn md_cache_timeout_default(set: &std::collections::BTreeMap<String, String>) -> &'static str {
    if cache_invalidation(set) {
        "60"
    } else {
        "1"
    }
}

/// The write-behind option that turns it off and on without changing the graph's shape.
pub const WRITE_BEHIND_ENABLE: &str = "enable";

/// Every key, GlusterFS's name where it has one.
pub const TABLE: &[VolumeOption] = &[
    opt("performance.write-behind", Side::Client, "performance/write-behind", WRITE_BEHIND_ENABLE),
    opt("performance.write-behind-window-size", Side::Client, "performance/write-behind", "cache-size"),
    opt("performance.write-behind-total-cache-size", Side::Client, "performance/write-behind", "total-cache-size"),
    opt("network.ping-timeout", Side::Client, "protocol/client", "ping-timeout"),
    opt("performance.stat-prefetch", Side::Client, "performance/md-cache", "enable"),
    opt("performance.md-cache-timeout", Side::Client, "performance/md-cache", "md-cache-timeout"),
    opt("performance.nl-cache", Side::Client, "performance/md-cache", "cache-negative-entries"),
    opt("performance.md-cache-max-entries", Side::Client, "performance/md-cache", "max-entries"),
    opt("performance.entry-behind", Side::Client, "performance/entry-behind", "enable"),
    opt("performance.entry-behind-window", Side::Client, "performance/entry-behind", "window"),
    opt("performance.read-ahead", Side::Client, "performance/read-ahead", "enable"),
    opt("performance.read-ahead-page-count", Side::Client, "performance/read-ahead", "page-count"),
    opt("performance.read-ahead-page-size", Side::Client, "performance/read-ahead", "page-size"),
    opt("performance.read-ahead-cache-size", Side::Client, "performance/read-ahead", "cache-size"),
    opt("performance.quick-read", Side::Client, "performance/quick-read", "enable"),
    opt("performance.open-behind", Side::Client, "performance/quick-read", "open-behind"),
    opt("performance.lazy-open", Side::Client, "performance/quick-read", "lazy-open"),
    opt("performance.qr-cache-timeout", Side::Client, "performance/quick-read", "cache-timeout"),
    opt("performance.quick-read-cache-size", Side::Client, "performance/quick-read", "cache-size"),
    opt("performance.quick-read-max-file-size", Side::Client, "performance/quick-read", "max-file-size"),
    opt("features.cache-invalidation", Side::Brick, "features/upcall", "cache-invalidation"),
    opt("features.cache-invalidation-timeout", Side::Brick, "features/upcall", "cache-invalidation-timeout"),
    opt("features.cache-invalidation-wait", Side::Brick, "features/upcall", "invalidation-wait"),
    opt("cluster.quorum-type", Side::Client, "cluster/replicate", "quorum-type"),
    opt("cluster.quorum-count", Side::Client, "cluster/replicate", "quorum-count"),
    opt("cluster.favorite-child-policy", Side::Client, "cluster/replicate", "favorite-child-policy"),
    opt("cluster.eager-lock", Side::Client, "cluster/replicate", "eager-lock"),
    opt("cluster.post-op-delay", Side::Client, "cluster/replicate", "post-op-delay"),
    opt("cluster.self-heal-daemon", Side::Client, "cluster/replicate", "self-heal-daemon"),
    opt("cluster.self-heal-on-access", Side::Client, "cluster/replicate", "self-heal-on-access"),
    VolumeOption {
        unsupported: Some("TLS between mounts and bricks is not yet set up by mgmtd (write volfiles by hand for TLS)"),
        ..opt("client.ssl", Side::Client, "protocol/client", "transport.socket.ssl-enabled")
    },
    VolumeOption {
        unsupported: Some("TLS between mounts and bricks is not yet set up by mgmtd (write volfiles by hand for TLS)"),
        ..opt("server.ssl", Side::Brick, "protocol/server", "transport.socket.ssl-enabled")
    },
    opt("auth.allow", Side::Brick, "protocol/server", "auth.allow"),
    opt("auth.reject", Side::Brick, "protocol/server", "auth.reject"),
    opt("server.root-squash", Side::Brick, "protocol/server", "server.root-squash"),
    opt("server.all-squash", Side::Brick, "protocol/server", "server.all-squash"),
    opt("server.anonuid", Side::Brick, "protocol/server", "server.anonuid"),
    opt("server.anongid", Side::Brick, "protocol/server", "server.anongid"),
    opt("server.grace-timeout", Side::Brick, "protocol/server", "grace-timeout"),
    opt("diagnostics.latency-measurement", Side::Brick, "debug/io-stats", "latency-measurement"),
    opt("diagnostics.count-fop-hits", Side::Brick, "debug/io-stats", "count-fop-hits"),
    opt("python.module", Side::Client, "features/python", "module"),
    opt("python.class", Side::Client, "features/python", "class"),
    opt("python.path", Side::Client, "features/python", "path"),
    opt("python.config", Side::Client, "features/python", "config"),
];

/// The table entry for `key`, or an error naming the key.
pub fn lookup(key: &str) -> Result<&'static VolumeOption, String> {
    TABLE.iter().find(|o| o.key == key).ok_or_else(|| {
        let near: Vec<&str> = TABLE
            .iter()
            .filter(|o| {
                let tail = key.rsplit('.').next().unwrap_or(key);
                o.key.contains(tail)
            })
            .map(|o| o.key)
            .collect();
        if near.is_empty() {
            format!("option {key} does not exist (see `weft volume set help`)")
        } else {
            format!(
                "option {key} does not exist; did you mean {}?",
                near.join(" or ")
            )
        }
    })
}

/// The translator's description of the option behind `o`.
pub fn spec(o: &VolumeOption, registry: &Registry) -> Option<OptionSpec> {
    registry
        .get(o.xlator)?
        .options()
        .iter()
        .find(|s| s.key == o.option)
        .copied()
}

/// Checks `value` for `key`; the error says what is wrong. Returns the value as stored.
pub fn validate(
    key: &str,
    value: &str,
    registry: &Registry,
    pool_op_version: u32,
) -> Result<String, String> {
    let o = lookup(key)?;
    if let Some(why) = o.unsupported {
        return Err(format!("option {key} cannot be set: {why}"));
    }
    if o.op_version > pool_op_version {
        return Err(format!(
            "option {key} needs op-version {}; the pool runs at {pool_op_version}",
            o.op_version
        ));
    }
    let s = spec(o, registry).ok_or_else(|| {
        format!(
            "option {key}: translator {} does not have option {}",
            o.xlator, o.option
        )
    })?;
    if value.contains(['\n', '\r']) {
        return Err(format!("option {key}: values cannot hold a newline"));
    }
    parse_value(s.kind, value).map_err(|e| format!("option {key}: {e}"))?;
    Ok(value.trim().to_string())
}

/// The value `key` has on a volume whose set options are `set`: the set one, else the
/// translator's default ("(unset)" for a required option nothing sets).
pub fn effective(
    o: &VolumeOption,
    set: &std::collections::BTreeMap<String, String>,
    registry: &Registry,
) -> String {
    if let Some(v) = set.get(o.key) {
        return v.clone();
    }
    if o.xlator == "performance/write-behind" && o.option == WRITE_BEHIND_ENABLE {
        return "on".into();
    }
    if o.key == "features.cache-invalidation" {
        return "on".into();
    }
    if o.key == "performance.md-cache-timeout" || o.key == "performance.qr-cache-timeout" {
        return md_cache_timeout_default(set).into();
    }
    match spec(o, registry).and_then(|s| s.default) {
        Some(d) => d.to_string(),
        None => "(unset)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let e = lookup("performance.write-behind-window").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(lookup("nonsense.key")
            .unwrap_err()
            .contains("volume set help"));
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = TABLE.iter().map(|o| o.key).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len());
    }
}
