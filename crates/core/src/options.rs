//! Typed translator options: one schema per translator type, used to validate volfiles and
//! (later) `volume set`, and to print `volume set help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The type of an option's value and the rules it must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// Any text.
    Str,
    /// An absolute filesystem path.
    Path,
    /// on/off, yes/no, true/false, enable/disable, 1/0.
    Bool,
    /// A whole number within the bounds.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A byte count with an optional KB/MB/GB/TB (or KiB/...) suffix, powers of 1024.
    Size,
    /// A time, in seconds unless suffixed with ms, s, m or h.
    Duration,
    /// One of the listed words.
    Enum(&'static [&'static str]),
}

/// One option a translator type accepts.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    /// The key as written after `option` in a volfile.
    pub key: &'static str,
    /// Its type.
    pub kind: OptionKind,
    /// The value used when the volfile does not set it; `None` means required.
    pub default: Option<&'static str>,
    /// One sentence for `volume set help`.
    pub description: &'static str,
}

/// A validated option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionValue {
    /// Text (Str, Path and Enum options).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A byte count.
    Size(u64),
    /// A time span.
    Duration(Duration),
}

/// Parses `raw` as `kind`; the error says what was expected.
pub fn parse_value(kind: OptionKind, raw: &str) -> Result<OptionValue, String> {
    let v = raw.trim();
    match kind {
        OptionKind::Str => Ok(OptionValue::Str(v.to_string())),
        OptionKind::Path if v.starts_with('/') => Ok(OptionValue::Str(v.to_string())),
        OptionKind::Path => Err(format!("{v:?} is not an absolute path")),
        OptionKind::Bool => match v.to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" | "enable" | "1" => Ok(OptionValue::Bool(true)),
            "off" | "no" | "false" | "disable" | "0" => Ok(OptionValue::Bool(false)),
            _ => Err(format!("{v:?} is not a boolean (on/off)")),
        },
        OptionKind::Int { min, max } => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("{v:?} is not a whole number"))?;
            if n < min || n > max {
                return Err(format!("{n} is outside {min}..={max}"));
            }
            Ok(OptionValue::Int(n))
        }
        OptionKind::Size => parse_size(v).map(OptionValue::Size),
        OptionKind::Duration => parse_duration(v).map(OptionValue::Duration),
        OptionKind::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(v))
            .map(|w| OptionValue::Str(w.to_string()))
            .ok_or_else(|| format!("{v:?} is not one of {}", words.join(", "))),
    }
}

fn split_number(v: &str) -> (&str, &str) {
    let end = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    (&v[..end], v[end..].trim())
}

fn parse_size(v: &str) -> Result<u64, String> {
    let (num, unit) = split_number(v);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a size (e.g. 128KB, 4MB)"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("{v:?} has an unknown size unit {unit:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let (num, unit) = split_number(v);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a time (e.g. 1s, 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{v:?} has an unknown time unit {unit:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{v:?} is not a valid time"))
}

/// A translator's validated options: every key of its schema, defaults filled in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options(BTreeMap<String, OptionValue>);

impl Options {
    /// Validates `given` (key, raw value) pairs against `schema`. Errors name the key:
    /// `Err((index into given or None for a missing required key, message))`.
    pub fn validate(
        schema: &[OptionSpec],
        given: &[(String, String)],
    ) -> Result<Options, (Option<usize>, String)> {
        let mut map = BTreeMap::new();
        for (i, (key, raw)) in given.iter().enumerate() {
            let spec = schema.iter().find(|s| s.key == key).ok_or_else(|| {
                let known: Vec<&str> = schema.iter().map(|s| s.key).collect();
                let list = if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                };
                (Some(i), format!("unknown option {key:?} (known: {list})"))
            })?;
            let v = parse_value(spec.kind, raw)
                .map_err(|e| (Some(i), format!("bad value for option {key:?}: {e}")))?;
            map.insert(key.clone(), v);
        }
        for spec in schema {
            if map.contains_key(spec.key) {
                continue;
            }
            match spec.default {
                Some(d) => {
                    let v = parse_value(spec.kind, d)
                        .map_err(|e| (None, format!("bad default for {}: {e}", spec.key)))?;
                    map.insert(spec.key.to_string(), v);
                }
                None => return Err((None, format!("missing required option {:?}", spec.key))),
            }
        }
        Ok(Options(map))
    }

    /// The keys whose values differ between `self` and `other` (present in one only, or
    /// with another value), sorted.
    pub fn changed_keys(&self, other: &Options) -> Vec<String> {
        let mut keys: Vec<String> = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter(|k| self.0.get(*k) != other.0.get(*k))
            .cloned()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Text of a Str/Path/Enum option ("" if absent or of another type).
    pub fn str(&self, key: &str) -> &str {
        match self.0.get(key) {
            Some(OptionValue::Str(s)) => s,
            _ => "",
        }
    }

    /// A Path option.
    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.str(key))
    }

    /// A Bool option (false if absent).
    pub fn bool(&self, key: &str) -> bool {
        matches!(self.0.get(key), Some(OptionValue::Bool(true)))
    }

    /// An Int option (0 if absent).
    pub fn int(&self, key: &str) -> i64 {
        match self.0.get(key) {
            Some(OptionValue::Int(n)) => *n,
            _ => 0,
        }
    }

    /// A Size option (0 if absent).
    pub fn size(&self, key: &str) -> u64 {
        match self.0.get(key) {
            Some(OptionValue::Size(n)) => *n,
            _ => 0,
        }
    }

    /// A Duration option (zero if absent).
    pub fn duration(&self, key: &str) -> Duration {
        match self.0.get(key) {
            Some(OptionValue::Duration(d)) => *d,
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[OptionSpec] = &[
        OptionSpec {
            key: "dir",
            kind: OptionKind::Path,
            default: None,
            description: "",
        },
        OptionSpec {
            key: "on",
            kind: OptionKind::Bool,
            default: Some("off"),
            description: "",
        },
        OptionSpec {
            key: "n",
            kind: OptionKind::Int { min: 1, max: 10 },
            default: Some("3"),
            description: "",
        },
        OptionSpec {
            key: "sz",
            kind: OptionKind::Size,
            default: Some("4KB"),
            description: "",
        },
        OptionSpec {
            key: "t",
            kind: OptionKind::Duration,
            default: Some("1s"),
            description: "",
        },
    ];

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_types() {
        let o = Options::validate(SCHEMA, &given(&[("dir", "/x"), ("t", "250ms")])).unwrap();
        assert_eq!(o.path("dir"), PathBuf::from("/x"));
        assert!(!o.bool("on"));
        assert_eq!(o.int("n"), 3);
        assert_eq!(o.size("sz"), 4096);
        assert_eq!(o.duration("t"), Duration::from_millis(250));
    }

    #[test]
    fn errors_name_the_key() {
        let e = Options::validate(SCHEMA, &given(&[("dir", "/x"), ("bogus", "1")])).unwrap_err();
        assert_eq!(e.0, Some(1));
        assert!(e.1.contains("unknown option \"bogus\""), "{}", e.1);
        let e = Options::validate(SCHEMA, &given(&[("dir", "/x"), ("n", "11")])).unwrap_err();
        assert!(e.1.contains("outside"), "{}", e.1);
        let e = Options::validate(SCHEMA, &given(&[("dir", "rel")])).unwrap_err();
        assert!(e.1.contains("absolute"), "{}", e.1);
        let e = Options::validate(SCHEMA, &given(&[])).unwrap_err();
        assert_eq!(e.0, None);
        assert!(e.1.contains("missing required option \"dir\""));
        assert!(parse_value(OptionKind::Size, "12XB").is_err());
        assert!(parse_value(OptionKind::Bool, "maybe").is_err());
    }

    #[test]
    fn changed_keys_name_what_differs() {
        let a = Options::validate(SCHEMA, &given(&[("dir", "/x")])).unwrap();
        let b = Options::validate(SCHEMA, &given(&[("dir", "/x"), ("n", "3")])).unwrap();
        assert_eq!(a, b, "a default written out is no change");
        assert!(a.changed_keys(&b).is_empty());
        let c = Options::validate(SCHEMA, &given(&[("dir", "/y"), ("on", "yes")])).unwrap();
        assert_eq!(
            a.changed_keys(&c),
            vec!["dir".to_string(), "on".to_string()]
        );
    }
}
