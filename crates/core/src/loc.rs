//! How a FOP names its target: by gfid, by parent gfid and name, and by path where known.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::Gfid;

/// The caller of a FOP: who asks, on whose behalf, with which lock owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ctx {
    /// Effective user id of the calling process.
    pub uid: u32,
    /// Effective group id of the calling process.
    pub gid: u32,
    /// Process id of the caller (0 for internal work).
    pub pid: u32,
    /// Opaque lock owner (FUSE's lock_owner, a client-chosen id elsewhere).
    pub lk_owner: u64,
    /// Which client connection the call came through, set by the brick server (0 for calls
    /// made in this process). Lock owners are only compared within one client, since two
    /// clients may pick the same `lk_owner`.
    pub client: u64,
}

/// The pid in a [`Ctx`] of self-heal's FOPs (no process has it: Linux pids stay below
/// 2^22).
pub const HEAL_PID: u32 = u32::MAX - 6;

impl Ctx {
    /// The context of work Weft does for itself (root, pid 0).
    pub fn internal() -> Ctx {
        Ctx::default()
    }

    /// The context of self-heal's FOPs (root, [`HEAL_PID`]). Bricks recall no directory
    /// lease for them: a heal works on what reached the bricks, which is all a lease
    /// holder's changes behind it have to agree with (see `features/upcall`).
    pub fn heal() -> Ctx {
        Ctx {
            pid: HEAL_PID,
            ..Ctx::default()
        }
    }

    /// Whether this is self-heal's context ([`Ctx::heal`]).
    pub fn is_heal(&self) -> bool {
        self.pid == HEAL_PID
    }
}

/// Where a FOP acts. An inode FOP (stat, open, ...) needs `gfid`; an entry FOP (lookup,
/// create, mkdir, unlink, the target of rename/link) needs `parent` and `name`, and also
/// `gfid` when the entry already exists and is known. `path` is informational (for logs,
/// tracing and Python translators): translators must not rely on it for correctness.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Loc {
    /// The inode itself, when known.
    pub gfid: Option<Gfid>,
    /// The directory holding the entry.
    pub parent: Option<Gfid>,
    /// The entry's name inside `parent` (one component, no slash).
    pub name: Option<OsString>,
    /// The path from the volume root, when the caller knows it (any bytes on the wire).
    #[serde(with = "crate::bytes_path::opt", default)]
    pub path: Option<PathBuf>,
}

impl Loc {
    /// A location naming an inode by gfid only.
    pub fn inode(gfid: Gfid) -> Loc {
        Loc {
            gfid: Some(gfid),
            ..Loc::default()
        }
    }

    /// A location naming the entry `name` in directory `parent`.
    pub fn entry(parent: Gfid, name: impl AsRef<OsStr>) -> Loc {
        Loc {
            parent: Some(parent),
            name: Some(name.as_ref().to_owned()),
            ..Loc::default()
        }
    }

    /// The volume root.
    pub fn root() -> Loc {
        Loc {
            gfid: Some(Gfid::ROOT),
            path: Some(PathBuf::from("/")),
            ..Loc::default()
        }
    }

    /// This location with its path set.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Loc {
        self.path = Some(path.into());
        self
    }

    /// This location with its gfid set.
    pub fn with_gfid(mut self, gfid: Gfid) -> Loc {
        self.gfid = Some(gfid);
        self
    }

    /// The path if known, else a `<gfid:...>/name` form, for messages.
    pub fn describe(&self) -> String {
        if let Some(p) = &self.path {
            return p.display().to_string();
        }
        match (&self.parent, &self.name, &self.gfid) {
            (Some(p), Some(n), _) => format!("<gfid:{p}>/{}", n.to_string_lossy()),
            (_, _, Some(g)) => format!("<gfid:{g}>"),
            _ => "<nowhere>".to_string(),
        }
    }
}
