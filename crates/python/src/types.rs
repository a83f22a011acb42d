//! The value classes of the `weft` Python module: `Loc`, `Fd`, `Iatt`, `SetAttr`, `Init`.
//!
//! Each mirrors one `weft_core` type field for field, so a value Python passes on unchanged
//! comes back to Rust unchanged: names and paths travel as `str` with the filesystem
//! encoding (undecodable bytes as surrogates, as `os.fsdecode` does), times as integer
//! nanoseconds (as `os.stat_result.st_mtime_ns`), gfids as their 36-character text.

use std::collections::BTreeMap;
use std::ffi::OsString;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use weft_core::{FdRef, Gfid, Iatt, Loc, SetAttr, SetTime, Timespec};

/// Parses a gfid given by Python, as a `ValueError` when it is not one.
pub fn parse_gfid(s: &str) -> PyResult<Gfid> {
    s.parse::<Gfid>()
        .map_err(|_| PyValueError::new_err(format!("not a gfid: {s:?}")))
}

fn ns(t: Timespec) -> i128 {
    i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec)
}

fn timespec(ns: i128) -> PyResult<Timespec> {
    let sec = i64::try_from(ns.div_euclid(1_000_000_000))
        .map_err(|_| PyValueError::new_err("time out of range"))?;
    // rem_euclid of 1e9 always fits in u32.
    let nsec = ns.rem_euclid(1_000_000_000) as u32;
    Ok(Timespec { sec, nsec })
}

// ==== Loc ====

/// Where a FOP acts: `gfid` (an existing inode), or `parent` + `name` (an entry); `path`
/// (from the volume root) where the caller knows it, for information only.
#[pyclass(module = "weft", name = "Loc", get_all, set_all)]
#[derive(Clone, Default)]
pub struct PyLoc {
    /// The inode's gfid, or None.
    pub gfid: Option<String>,
    /// The parent directory's gfid, or None.
    pub parent: Option<String>,
    /// The entry's name in `parent`, or None.
    pub name: Option<OsString>,
    /// The path from the volume root, or None.
    pub path: Option<OsString>,
}

#[pymethods]
impl PyLoc {
    #[new]
    #[pyo3(signature = (gfid=None, parent=None, name=None, path=None))]
    fn new(
        gfid: Option<String>,
        parent: Option<String>,
        name: Option<OsString>,
        path: Option<OsString>,
    ) -> PyLoc {
        PyLoc {
            gfid,
            parent,
            name,
            path,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Loc(gfid={:?}, parent={:?}, name={:?}, path={:?})",
            self.gfid, self.parent, self.name, self.path
        )
    }
}

impl PyLoc {
    /// The Python form of `l`.
    pub fn from_loc(l: &Loc) -> PyLoc {
        PyLoc {
            gfid: l.gfid.map(|g| g.to_string()),
            parent: l.parent.map(|g| g.to_string()),
            name: l.name.clone(),
            path: l.path.clone().map(|p| p.into_os_string()),
        }
    }

    /// Back to a [`Loc`]; a bad gfid is a `ValueError`.
    pub fn to_loc(&self) -> PyResult<Loc> {
        Ok(Loc {
            gfid: self.gfid.as_deref().map(parse_gfid).transpose()?,
            parent: self.parent.as_deref().map(parse_gfid).transpose()?,
            name: self.name.clone(),
            path: self.path.clone().map(Into::into),
        })
    }
}

// ==== Fd ====

/// An open file or directory. Python can look at it and pass it on, not change it.
#[pyclass(module = "weft", name = "Fd", frozen)]
pub struct PyFd(pub FdRef);

#[pymethods]
impl PyFd {
    /// Unique within the process.
    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    /// The open inode's gfid.
    #[getter]
    fn gfid(&self) -> String {
        self.0.gfid.to_string()
    }
    /// The open(2) flags.
    #[getter]
    fn flags(&self) -> i32 {
        self.0.flags
    }
    /// True for a directory.
    #[getter]
    fn is_dir(&self) -> bool {
        self.0.is_dir
    }
    fn __repr__(&self) -> String {
        format!("{:?}", self.0)
    }
}

// ==== Iatt ====

/// The attributes of an inode, as `stat` reports them (times in nanoseconds).
#[pyclass(module = "weft", name = "Iatt", get_all, set_all)]
#[derive(Clone)]
pub struct PyIatt {
    /// The inode's gfid.
    pub gfid: String,
    /// Inode number shown to applications.
    pub ino: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device file.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Last access, ns since the epoch.
    pub atime_ns: i128,
    /// Last data change, ns since the epoch.
    pub mtime_ns: i128,
    /// Last status change, ns since the epoch.
    pub ctime_ns: i128,
}

#[pymethods]
impl PyIatt {
    /// True for a directory.
    #[getter]
    fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    /// True for a regular file.
    #[getter]
    fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    fn __repr__(&self) -> String {
        format!(
            "Iatt(gfid={:?}, mode={:#o}, size={}, uid={}, gid={})",
            self.gfid, self.mode, self.size, self.uid, self.gid
        )
    }
}

impl PyIatt {
    /// The Python form of `ia`.
    pub fn from_iatt(ia: &Iatt) -> PyIatt {
        PyIatt {
            gfid: ia.gfid.to_string(),
            ino: ia.ino,
            mode: ia.mode,
            nlink: ia.nlink,
            uid: ia.uid,
            gid: ia.gid,
            rdev: ia.rdev,
            size: ia.size,
            blksize: ia.blksize,
            blocks: ia.blocks,
            atime_ns: ns(ia.atime),
            mtime_ns: ns(ia.mtime),
            ctime_ns: ns(ia.ctime),
        }
    }

    /// Back to an [`Iatt`]; a bad gfid or time is a `ValueError`.
    pub fn to_iatt(&self) -> PyResult<Iatt> {
        Ok(Iatt {
            gfid: parse_gfid(&self.gfid)?,
            ino: self.ino,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            size: self.size,
            blksize: self.blksize,
            blocks: self.blocks,
            atime: timespec(self.atime_ns)?,
            mtime: timespec(self.mtime_ns)?,
            ctime: timespec(self.ctime_ns)?,
        })
    }
}

// ==== SetAttr ====

/// What a setattr changes; None leaves a field alone. A time is ns since the epoch, or the
/// server's current time when `atime_now` / `mtime_now` is true.
#[pyclass(module = "weft", name = "SetAttr", get_all, set_all)]
#[derive(Clone, Default)]
pub struct PySetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (a truncate).
    pub size: Option<u64>,
    /// New access time in ns.
    pub atime_ns: Option<i128>,
    /// New modification time in ns.
    pub mtime_ns: Option<i128>,
    /// Set the access time to now.
    pub atime_now: bool,
    /// Set the modification time to now.
    pub mtime_now: bool,
}

#[pymethods]
impl PySetAttr {
    fn __repr__(&self) -> String {
        format!(
            "SetAttr(mode={:?}, uid={:?}, gid={:?}, size={:?}, atime_ns={:?}, mtime_ns={:?}, atime_now={}, mtime_now={})",
            self.mode, self.uid, self.gid, self.size, self.atime_ns, self.mtime_ns,
            self.atime_now, self.mtime_now
        )
    }
}

fn time_to_py(t: Option<SetTime>) -> (Option<i128>, bool) {
    match t {
        None => (None, false),
        Some(SetTime::Now) => (None, true),
        Some(SetTime::At(t)) => (Some(ns(t)), false),
    }
}

fn time_from_py(ns: Option<i128>, now: bool) -> PyResult<Option<SetTime>> {
    Ok(match (ns, now) {
        (_, true) => Some(SetTime::Now),
        (Some(n), false) => Some(SetTime::At(timespec(n)?)),
        (None, false) => None,
    })
}

impl PySetAttr {
    /// The Python form of `a`.
    pub fn from_setattr(a: &SetAttr) -> PySetAttr {
        let (atime_ns, atime_now) = time_to_py(a.atime);
        let (mtime_ns, mtime_now) = time_to_py(a.mtime);
        PySetAttr {
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            atime_ns,
            mtime_ns,
            atime_now,
            mtime_now,
        }
    }

    /// Back to a [`SetAttr`].
    pub fn to_setattr(&self) -> PyResult<SetAttr> {
        Ok(SetAttr {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            atime: time_from_py(self.atime_ns, self.atime_now)?,
            mtime: time_from_py(self.mtime_ns, self.mtime_now)?,
        })
    }
}

// ==== Init ====

/// What the class's constructor receives: the translator's name and its `config` option.
#[pyclass(module = "weft", name = "Init", frozen, get_all)]
pub struct PyInit {
    /// The translator's volfile name.
    pub name: String,
    /// `option config` parsed: `key=value` pairs separated by spaces.
    pub config: BTreeMap<String, String>,
}

#[pymethods]
impl PyInit {
    fn __repr__(&self) -> String {
        format!("Init(name={:?}, config={:?})", self.name, self.config)
    }
}
