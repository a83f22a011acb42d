//! The volfile: the text form of a translator graph, parsed and written.
//!
//! ```text
//! # comment
//! volume demo-posix
//!     type storage/posix
//!     option directory /srv/weft/brick1
//! end-volume
//!
//! volume demo-trace
//!     type debug/trace
//!     subvolumes demo-posix
//! end-volume
//! ```
//! Keywords are `volume NAME`, `type TYPE`, `option KEY VALUE` (the value is the rest of the
//! line), `subvolumes NAME...` and `end-volume`. Subvolumes may be declared before or after
//! the volume that uses them; the last volume declared is the top of the graph. This module
//! checks structure (syntax, duplicates, undefined subvolumes, cycles); types and options are
//! checked against the translator registry by [`crate::graph`].

use std::collections::HashMap;
use std::fmt;

/// Why a volfile was refused, with the 1-based line it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volfile line {line}: {reason}")]
pub struct VolfileError {
    /// The line the problem was found on (1-based).
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> VolfileError {
    VolfileError {
        line,
        reason: reason.into(),
    }
}

/// One `option KEY VALUE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionLine {
    /// The key.
    pub key: String,
    /// The raw value text.
    pub value: String,
    /// Its line.
    pub line: usize,
}

/// One `volume ... end-volume` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDecl {
    /// The translator instance's name.
    pub name: String,
    /// The translator type, e.g. `storage/posix`.
    pub type_name: String,
    /// Options in the order written.
    pub options: Vec<OptionLine>,
    /// Names of the subvolumes, in order.
    pub subvolumes: Vec<String>,
    /// Line of the `volume` keyword.
    pub line: usize,
    /// Line of the `type` keyword.
    pub type_line: usize,
    /// Line of the `subvolumes` keyword (0 if none).
    pub subvolumes_line: usize,
}

impl VolumeDecl {
    /// A declaration with no options or subvolumes, for building volfiles in code.
    pub fn new(name: &str, type_name: &str) -> VolumeDecl {
        VolumeDecl {
            name: name.into(),
            type_name: type_name.into(),
            options: Vec::new(),
            subvolumes: Vec::new(),
            line: 0,
            type_line: 0,
            subvolumes_line: 0,
        }
    }

    /// Adds an option (builder style).
    pub fn option(mut self, key: &str, value: impl fmt::Display) -> VolumeDecl {
        self.options.push(OptionLine {
            key: key.into(),
            value: value.to_string(),
            line: 0,
        });
        self
    }

    /// Adds subvolumes (builder style).
    pub fn subvolumes<S: AsRef<str>>(mut self, names: &[S]) -> VolumeDecl {
        self.subvolumes
            .extend(names.iter().map(|s| s.as_ref().to_string()));
        self
    }
}

/// A parsed, structurally valid volfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Volfile {
    /// Volumes in declaration order; the last is the top of the graph.
    pub volumes: Vec<VolumeDecl>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl Volfile {
    /// Parses and structurally checks volfile text.
    pub fn parse(text: &str) -> Result<Volfile, VolfileError> {
        let mut volumes: Vec<VolumeDecl> = Vec::new();
        let mut cur: Option<VolumeDecl> = None;
        let mut last_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            last_line = line;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (kw, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let rest = rest.trim();
            match (kw, cur.as_mut()) {
                ("volume", None) => {
                    if !valid_name(rest) {
                        return Err(err(line, format!("bad volume name {rest:?}")));
                    }
                    if volumes.iter().any(|v| v.name == rest) {
                        return Err(err(line, format!("volume {rest:?} is declared twice")));
                    }
                    let mut v = VolumeDecl::new(rest, "");
                    v.line = line;
                    cur = Some(v);
                }
                ("volume", Some(v)) => {
                    return Err(err(line, format!("volume {:?} has no end-volume", v.name)));
                }
                ("type", Some(v)) => {
                    if !v.type_name.is_empty() {
                        return Err(err(line, "type given twice"));
                    }
                    if rest.is_empty() || rest.contains(char::is_whitespace) {
                        return Err(err(line, format!("bad type {rest:?}")));
                    }
                    v.type_name = rest.to_string();
                    v.type_line = line;
                }
                ("option", Some(v)) => {
                    let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    if key.is_empty() {
                        return Err(err(line, "option without a key"));
                    }
                    if value.trim().is_empty() {
                        return Err(err(line, format!("option {key:?} has no value")));
                    }
                    if v.options.iter().any(|o| o.key == key) {
                        return Err(err(line, format!("option {key:?} given twice")));
                    }
                    v.options.push(OptionLine {
                        key: key.to_string(),
                        value: value.trim().to_string(),
                        line,
                    });
                }
                ("subvolumes", Some(v)) => {
                    if !v.subvolumes.is_empty() {
                        return Err(err(line, "subvolumes given twice"));
                    }
                    if rest.is_empty() {
                        return Err(err(line, "subvolumes names no volume"));
                    }
                    for s in rest.split_whitespace() {
                        if v.subvolumes.iter().any(|x| x == s) {
                            return Err(err(line, format!("subvolume {s:?} listed twice")));
                        }
                        v.subvolumes.push(s.to_string());
                    }
                    v.subvolumes_line = line;
                }
                ("end-volume", Some(_)) => {
                    let Some(v) = cur.take() else { continue };
                    if v.type_name.is_empty() {
                        return Err(err(line, format!("volume {:?} has no type", v.name)));
                    }
                    volumes.push(v);
                }
                ("type" | "option" | "subvolumes" | "end-volume", None) => {
                    return Err(err(line, format!("{kw:?} outside a volume block")));
                }
                (other, _) => return Err(err(line, format!("unknown keyword {other:?}"))),
            }
        }
        if let Some(v) = cur {
            return Err(err(
                last_line,
                format!("volume {:?} has no end-volume", v.name),
            ));
        }
        if volumes.is_empty() {
            return Err(err(last_line.max(1), "no volumes declared"));
        }
        let vf = Volfile { volumes };
        vf.check_references()?;
        Ok(vf)
    }

    /// Checks that every subvolume exists and that the graph has no cycle.
    pub fn check_references(&self) -> Result<(), VolfileError> {
        let index: HashMap<&str, usize> = self
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), i))
            .collect();
        for v in &self.volumes {
            for s in &v.subvolumes {
                if !index.contains_key(s.as_str()) {
                    return Err(err(
                        v.subvolumes_line,
                        format!(
                            "volume {:?} names subvolume {s:?}, which is not declared",
                            v.name
                        ),
                    ));
                }
            }
        }
        // Depth-first search with colours: 0 = unseen, 1 = on the stack, 2 = done.
        let mut colour = vec![0u8; self.volumes.len()];
        for start in 0..self.volumes.len() {
            if colour[start] != 0 {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            colour[start] = 1;
            while let Some((node, next)) = stack.pop() {
                let subs = &self.volumes[node].subvolumes;
                if next < subs.len() {
                    stack.push((node, next + 1));
                    let child = index[subs[next].as_str()];
                    match colour[child] {
                        0 => {
                            colour[child] = 1;
                            stack.push((child, 0));
                        }
                        1 => {
                            let v = &self.volumes[node];
                            return Err(err(
                                v.subvolumes_line,
                                format!("cycle: {:?} leads back to {:?}", v.name, subs[next]),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                }
            }
        }
        Ok(())
    }

    /// The volume declared under `name`.
    pub fn get(&self, name: &str) -> Option<&VolumeDecl> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// The top of the graph (the last volume declared).
    pub fn top(&self) -> Option<&VolumeDecl> {
        self.volumes.last()
    }

    /// The graph under volume `name`: it and every volume it reaches through subvolumes,
    /// in file order with `name` last (so it is the top). `None` if `name` is not declared.
    /// A server volfile holds several such graphs, one per brick.
    pub fn subgraph(&self, name: &str) -> Option<Volfile> {
        let top = self.get(name)?;
        let mut keep = std::collections::HashSet::new();
        let mut stack = vec![top.name.as_str()];
        while let Some(n) = stack.pop() {
            if keep.insert(n.to_string()) {
                if let Some(v) = self.get(n) {
                    stack.extend(v.subvolumes.iter().map(String::as_str));
                }
            }
        }
        let mut volumes: Vec<VolumeDecl> = self
            .volumes
            .iter()
            .filter(|v| keep.contains(&v.name) && v.name != name)
            .cloned()
            .collect();
        volumes.push(top.clone());
        Some(Volfile { volumes })
    }
}

impl fmt::Display for Volfile {
    /// Writes the canonical text form, which [`Volfile::parse`] reads back unchanged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.volumes.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "volume {}", v.name)?;
            writeln!(f, "    type {}", v.type_name)?;
            for o in &v.options {
                writeln!(f, "    option {} {}", o.key, o.value)?;
            }
            if !v.subvolumes.is_empty() {
                writeln!(f, "    subvolumes {}", v.subvolumes.join(" "))?;
            }
            writeln!(f, "end-volume")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# demo\nvolume p\n  type storage/posix\n  option directory /b\nend-volume\n\nvolume t\n  type debug/trace\n  subvolumes p\nend-volume\n";

    #[test]
    fn parses_and_round_trips() {
        let v = Volfile::parse(GOOD).unwrap();
        assert_eq!(v.volumes.len(), 2);
        assert_eq!(v.top().unwrap().name, "t");
        assert_eq!(v.get("p").unwrap().options[0].line, 4);
        let text = v.to_string();
        let again = Volfile::parse(&text).unwrap();
        assert_eq!(again.to_string(), text);
    }

    fn line_of(text: &str) -> (usize, String) {
        let e = Volfile::parse(text).unwrap_err();
        (e.line, e.reason)
    }

    #[test]
    fn each_error_names_its_line() {
        let (l, r) = line_of("volume a\n type x/y\n subvolumes b\nend-volume\n");
        assert_eq!(l, 3);
        assert!(r.contains("not declared"), "{r}");
        let (l, r) = line_of("volume a\n type x\n subvolumes b\nend-volume\nvolume b\n type x\n subvolumes a\nend-volume\n");
        assert!(r.contains("cycle"), "{r}");
        assert!(l == 3 || l == 7);
        let (l, r) = line_of("volume a\n type x\n subvolumes a\nend-volume\n");
        assert_eq!(l, 3);
        assert!(r.contains("cycle"));
        let (l, r) = line_of("volume a\n type x\n");
        assert_eq!(l, 2);
        assert!(r.contains("no end-volume"));
        let (l, r) = line_of("volume a\nend-volume\n");
        assert_eq!(l, 2);
        assert!(r.contains("no type"));
        let (l, r) = line_of("volume a\n type x\n frobnicate\nend-volume\n");
        assert_eq!(l, 3);
        assert!(r.contains("unknown keyword"));
        let (l, _) = line_of("option a b\n");
        assert_eq!(l, 1);
        let (l, r) = line_of("volume a\n type x\n option k\nend-volume\n");
        assert_eq!(l, 3);
        assert!(r.contains("no value"));
        let (l, r) = line_of("volume a\n type x\nend-volume\nvolume a\n type x\nend-volume\n");
        assert_eq!(l, 4);
        assert!(r.contains("twice"));
        assert!(Volfile::parse("").is_err());
        assert!(Volfile::parse("volume a b\n type x\nend-volume\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(s in "\\PC*") {
            let _ = Volfile::parse(&s);
        }
    }
}
