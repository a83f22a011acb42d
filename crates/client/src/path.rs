//! Resolving volume paths to locations, one lookup per component from the root.
//!
//! Paths are bytes: any byte but `/` and NUL may appear in a name, UTF-8 or not. The rules
//! (POSIX path resolution, without symlinks):
//! - a path must be absolute (start with `/`) and hold no NUL byte, else EINVAL;
//! - empty components (`//`) and `.` are skipped;
//! - `..` goes back to the directory the walk came from (the parent: with no symlinks to
//!   follow and one lookup per component from the root, that is the directory's real
//!   parent); the component it leaves must exist and be a directory; `..` of the root is the
//!   root;
//! - a name longer than 255 bytes is ENAMETOOLONG;
//! - every component the walk goes through must be a directory, else ENOTDIR (a symlink
//!   included: symlinks are never followed);
//! - a trailing slash, or a final `.` or `..`, means the final component must be a
//!   directory: ENOTDIR otherwise.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use weft_core::{Errno, Iatt, Loc, Xdata};

use crate::Volume;

/// The longest name (one component) in bytes, as Linux's NAME_MAX.
pub(crate) const NAME_MAX: usize = 255;

/// One step of a walk from the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'a> {
    /// Into the entry of this name.
    Name(&'a [u8]),
    /// Back to the parent (`..`).
    Up,
}

/// What a path's final component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Last {
    /// A name: the path names an entry of a directory.
    Name,
    /// Nothing: the path is the root (`/`, `//`).
    Root,
    /// `.`.
    Dot,
    /// `..`.
    DotDot,
}

/// A parsed path.
#[derive(Debug)]
struct Parsed<'a> {
    steps: Vec<Step<'a>>,
    last: Last,
    /// A slash after the final name (`/a/b/`).
    slash: bool,
}

/// Parses an absolute volume path.
fn parse(path: &Path) -> Result<Parsed<'_>, Errno> {
    let b = path.as_os_str().as_bytes();
    if b.first() != Some(&b'/') || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    let mut steps = Vec::new();
    let mut last = Last::Root;
    for c in b.split(|&x| x == b'/') {
        match c {
            b"" => {}
            b"." => last = Last::Dot,
            b".." => {
                steps.push(Step::Up);
                last = Last::DotDot;
            }
            n if n.len() > NAME_MAX => return Err(Errno::ENAMETOOLONG),
            n => {
                steps.push(Step::Name(n));
                last = Last::Name;
            }
        }
    }
    let slash = last == Last::Name && b.ends_with(b"/");
    Ok(Parsed { steps, last, slash })
}

/// The directories (and final entry) a walk went through, root first.
struct Walk<'a> {
    /// Location and attributes of each node; `nodes[0]` is the root.
    nodes: Vec<(Loc, Iatt)>,
    /// The name of each node after the root.
    names: Vec<&'a [u8]>,
}

impl Walk<'_> {
    fn top(&self) -> &(Loc, Iatt) {
        // Never empty: the root is pushed first and never popped.
        &self.nodes[self.nodes.len() - 1]
    }

    /// The path from the root to the top, with `name` after it if given.
    fn path(&self, name: Option<&[u8]>) -> PathBuf {
        let mut p = Vec::new();
        for n in self.names.iter().copied().chain(name) {
            p.push(b'/');
            p.extend_from_slice(n);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        PathBuf::from(OsString::from_vec(p))
    }
}

/// Walks `steps` from the root, one lookup per name.
async fn walk<'a>(vol: &Volume, steps: &[Step<'a>]) -> Result<Walk<'a>, Errno> {
    let root = Loc::root();
    let (ia, _) = vol.top().lookup(vol.ctx(), &root, Xdata::new()).await?;
    let mut w = Walk {
        nodes: vec![(root, ia)],
        names: Vec::new(),
    };
    for step in steps {
        let cur = w.top().1;
        if !cur.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        match *step {
            Step::Up => {
                if w.nodes.len() > 1 {
                    w.nodes.pop();
                    w.names.pop();
                }
            }
            Step::Name(n) => {
                let l = Loc::entry(cur.gfid, OsStr::from_bytes(n)).with_path(w.path(Some(n)));
                let (next, _) = vol.top().lookup(vol.ctx(), &l, Xdata::new()).await?;
                w.nodes.push((l.with_gfid(next.gfid), next));
                w.names.push(n);
            }
        }
    }
    Ok(w)
}

/// An existing entry a path resolved to.
pub(crate) struct Resolved {
    /// Its location: gfid, path, and (but for the root) parent and name.
    pub loc: Loc,
    /// Its attributes.
    pub ia: Iatt,
    /// What the path's final component was.
    pub last: Last,
    /// The path ended in a slash after a name.
    pub slash: bool,
}

/// Resolves `path` to the entry it names; a trailing slash or final `.`/`..` on a
/// non-directory is ENOTDIR.
pub(crate) async fn resolve(vol: &Volume, path: &Path) -> Result<Resolved, Errno> {
    let r = resolve_any(vol, path).await?;
    if r.slash && !r.ia.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(r)
}

/// As [`resolve`], but a slash after the final name does not require a directory (the
/// caller decides); a final `.` or `..` still does.
pub(crate) async fn resolve_any(vol: &Volume, path: &Path) -> Result<Resolved, Errno> {
    let p = parse(path)?;
    let mut w = walk(vol, &p.steps).await?;
    let (loc, ia) = w.nodes.pop().ok_or(Errno::EIO)?;
    if p.last != Last::Name && !ia.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(Resolved {
        loc,
        ia,
        last: p.last,
        slash: p.slash,
    })
}

/// The errno an operation gives when a path's final component is not a name.
pub(crate) struct NotNamed {
    /// For the root.
    pub root: Errno,
    /// For a final `.`.
    pub dot: Errno,
    /// For a final `..`.
    pub dotdot: Errno,
}

impl NotNamed {
    /// The same errno for all three.
    pub(crate) const fn all(e: Errno) -> NotNamed {
        NotNamed {
            root: e,
            dot: e,
            dotdot: e,
        }
    }

    fn errno(&self, last: Last) -> Errno {
        match last {
            Last::Root => self.root,
            Last::Dot => self.dot,
            Last::DotDot | Last::Name => self.dotdot,
        }
    }
}

/// The location of the (possibly not yet existing) entry `path` names: its parent
/// resolved (a directory, else ENOTDIR), its name, and whether a slash followed the name.
/// A path whose final component is not a name (the root, `.`, `..`) is resolved whole
/// (its errors first) and then fails with `nn`'s errno.
pub(crate) async fn parent_loc(
    vol: &Volume,
    path: &Path,
    nn: &NotNamed,
) -> Result<(Loc, bool), Errno> {
    let p = parse(path)?;
    let (Last::Name, Some((Step::Name(name), up))) = (p.last, p.steps.split_last()) else {
        let w = walk(vol, &p.steps).await?;
        if !w.top().1.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        return Err(nn.errno(p.last));
    };
    let w = walk(vol, up).await?;
    let parent = w.top().1;
    if !parent.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let loc = Loc::entry(parent.gfid, OsStr::from_bytes(name)).with_path(w.path(Some(name)));
    Ok((loc, p.slash))
}

/// The location of the existing entry `path` names, with parent, name and gfid, and its
/// attributes; a final component that is not a name fails with `nn`'s errno (after the
/// path resolved). A trailing slash on a non-directory is ENOTDIR unless `slash_any`.
pub(crate) async fn entry_loc(
    vol: &Volume,
    path: &Path,
    nn: &NotNamed,
    slash_any: bool,
) -> Result<Resolved, Errno> {
    let r = if slash_any {
        resolve_any(vol, path).await?
    } else {
        resolve(vol, path).await?
    };
    if r.last != Last::Name {
        return Err(nn.errno(r.last));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(p: &[u8]) -> Result<(Vec<Step<'_>>, Last, bool), Errno> {
        parse(Path::new(OsStr::from_bytes(p))).map(|p| (p.steps, p.last, p.slash))
    }

    #[test]
    fn parses_posix_paths() {
        use Step::*;
        assert_eq!(steps(b"/").unwrap(), (vec![], Last::Root, false));
        assert_eq!(steps(b"//").unwrap(), (vec![], Last::Root, false));
        assert_eq!(
            steps(b"//a/./b//").unwrap(),
            (vec![Name(b"a"), Name(b"b")], Last::Name, true)
        );
        assert_eq!(
            steps(b"/a/.").unwrap(),
            (vec![Name(b"a")], Last::Dot, false)
        );
        assert_eq!(
            steps(b"/a/../b").unwrap(),
            (vec![Name(b"a"), Up, Name(b"b")], Last::Name, false)
        );
        assert_eq!(steps(b"/..").unwrap(), (vec![Up], Last::DotDot, false));
        assert_eq!(
            steps(b"/caf\xe9/...").unwrap(),
            (vec![Name(b"caf\xe9"), Name(b"...")], Last::Name, false)
        );
        assert_eq!(steps(b"a/b").unwrap_err(), Errno::EINVAL);
        assert_eq!(steps(b"").unwrap_err(), Errno::EINVAL);
        assert_eq!(steps(b"/a\0b").unwrap_err(), Errno::EINVAL);
        let long = [b'x'; NAME_MAX + 1];
        let mut p = b"/".to_vec();
        p.extend_from_slice(&long);
        assert_eq!(steps(&p).unwrap_err(), Errno::ENAMETOOLONG);
        p.pop();
        assert!(steps(&p).is_ok());
    }
}
