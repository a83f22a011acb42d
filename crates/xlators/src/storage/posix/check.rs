//! An offline check of a brick: every entry has a gfid, its handle stands for it, no two
//! live inodes share a gfid, and no handle is left without its inode. With `repair`, each
//! problem is fixed the way a lookup fixes it (a fresh gfid, a recreated handle) and stale
//! handles are removed. Run it while no brick server serves the brick.
//!
//! The walk reaches every entry through directory descriptors beneath the brick root, never
//! following a symlink (the same rule as the brick itself, see [`super::sys`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, OFlags};
use weft_core::Gfid;

use super::brick::{Brick, PRIVATE_DIR};
use super::sys::{open_beneath, Pin};

/// One thing found wrong on a brick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An entry without a (valid) gfid: put on the brick by hand.
    NoGfid,
    /// The entry's gfid has no handle.
    NoHandle(Gfid),
    /// The entry's gfid has a handle that stands for another place or nothing live.
    WrongHandle(Gfid),
    /// Another live inode (at the path given) already has this entry's gfid: a copy made
    /// inside the brick.
    DuplicateGfid(Gfid, PathBuf),
    /// A handle whose inode has no name left on the brick.
    StaleHandle(Gfid),
}

/// A problem and where: a path relative to the brick root (for a stale handle, the
/// handle's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where, relative to the brick root.
    pub path: PathBuf,
    /// What.
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.problem {
            Problem::NoGfid => write!(f, "{p}: no gfid (placed on the brick by hand)"),
            Problem::NoHandle(g) => write!(f, "{p}: gfid {g} has no handle"),
            Problem::WrongHandle(g) => write!(f, "{p}: the handle of gfid {g} is stale"),
            Problem::DuplicateGfid(g, other) => write!(
                f,
                "{p}: gfid {g} is also the gfid of {} (a copy made inside the brick)",
                other.display()
            ),
            Problem::StaleHandle(g) => write!(f, "{p}: handle of gfid {g} has no inode left"),
        }
    }
}

/// What a check found, and how many entries it looked at.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries (files, directories, links...) walked, the root excluded.
    pub entries: u64,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
    /// Whether the problems were repaired.
    pub repaired: bool,
}

/// Checks the brick at `root` (and repairs it with `repair`). The error is a sentence for
/// the operator (the brick cannot be opened).
pub fn check(root: &Path, repair: bool) -> Result<Report, String> {
    let brick = Brick::open(root)?;
    let mut report = Report {
        repaired: repair,
        ..Report::default()
    };
    // gfid -> (dev, ino, path) of the first live inode seen with it.
    let mut owners: HashMap<Gfid, (u64, u64, PathBuf)> = HashMap::new();
    let mut stack: Vec<(Gfid, PathBuf)> = vec![(Gfid::ROOT, PathBuf::new())];
    while let Some((dir_gfid, rel)) = stack.pop() {
        let dir = match open_beneath(
            brick.root_fd(),
            rel.as_os_str().as_bytes(),
            OFlags::RDONLY | OFlags::DIRECTORY,
        ) {
            Ok(d) => d,
            Err(_) => continue, // gone meanwhile
        };
        let names: Vec<Vec<u8>> = match rfs::Dir::read_from(&dir) {
            Ok(mut d) => {
                let mut v = Vec::new();
                while let Some(Ok(e)) = d.read() {
                    let n = e.file_name().to_bytes();
                    if n != b"."
                        && n != b".."
                        && !(rel.as_os_str().is_empty() && n == PRIVATE_DIR.as_bytes())
                    {
                        v.push(n.to_vec());
                    }
                }
                v
            }
            Err(_) => continue,
        };
        for name in names {
            let name = OsStr::from_bytes(&name);
            let path = rel.join(name);
            let Ok(pin) = Pin::at(dir.as_fd(), name) else {
                continue;
            };
            report.entries += 1;
            let id = (pin.st.st_dev, pin.st.st_ino);
            let found = match pin.gfid() {
                None => Some(Problem::NoGfid),
                Some(g) => match owners.get(&g) {
                    Some((dev, ino, other)) if (*dev, *ino) != id => {
                        Some(Problem::DuplicateGfid(g, other.clone()))
                    }
                    Some(_) => None, // another name of the same inode
                    None => {
                        owners.insert(g, (id.0, id.1, path.clone()));
                        if brick.handle_is_true(&g, &pin, &dir_gfid, name) {
                            None
                        } else if brick.handle_is_of(&g, &pin) || pin.is_dir() {
                            Some(Problem::WrongHandle(g))
                        } else {
                            Some(Problem::NoHandle(g))
                        }
                    }
                },
            };
            let mut gfid = pin.gfid();
            if let Some(problem) = found {
                if repair {
                    // What a lookup does: a gfid for an entry without one, the handle made
                    // true, a fresh gfid for a copy.
                    if let Ok(g) = brick.ensure_gfid(&pin, &dir_gfid, name) {
                        if let Some(old) = gfid {
                            if old != g {
                                // The copy got a fresh gfid: the first owner keeps the old.
                                owners.entry(g).or_insert((id.0, id.1, path.clone()));
                            }
                        } else {
                            owners.insert(g, (id.0, id.1, path.clone()));
                        }
                        gfid = Some(g);
                    }
                }
                report.findings.push(Finding {
                    path: path.clone(),
                    problem,
                });
            }
            if pin.is_dir() {
                if let Some(g) = gfid {
                    stack.push((g, path));
                }
            }
        }
    }
    // Handles whose gfid no live entry carries.
    for g in brick.handle_gfids() {
        if g.is_root() || owners.contains_key(&g) {
            continue;
        }
        report.findings.push(Finding {
            path: PathBuf::from(".weft/handles").join(Brick::handle_rel(&g)),
            problem: Problem::StaleHandle(g),
        });
        if repair {
            brick.remove_handle(&g);
        }
    }
    Ok(report)
}
