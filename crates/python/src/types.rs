//! The value classes of the `weft` Python module: `Loc`, `Fd`, `Iatt`, `SetAttr`,
//! `Dirent`, `StatVfs`, `Init`.
//!
//! Each mirrors one `weft_core` type field for field, so a value Python passes on unchanged
//! comes back to Rust unchanged: names and paths travel as `str` decoded from UTF-8 with
//! `surrogateescape` (and may be set to `str` or `bytes`; see [`crate::convert`]), times
//! as integer nanoseconds (as `os.stat_result.st_mtime_ns`), gfids as their 36-character
//! text, file types as their `S_IFMT` bits (`stat.S_IFDIR`, ...).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use weft_core::{Dirent, FdRef, FileType, Gfid, Iatt, Loc, SetAttr, SetTime, StatVfs, Timespec};

use crate::convert::{name_to_py, opt_name_to_py, FsName};

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
#[pyclass(module = "weft", name = "Loc")]
#[derive(Clone, Default)]
pub struct PyLoc {
    /// The inode's gfid, or None.
    #[pyo3(get, set)]
    pub gfid: Option<String>,
    /// The parent directory's gfid, or None.
    #[pyo3(get, set)]
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
        name: Option<FsName>,
        path: Option<FsName>,
    ) -> PyLoc {
        PyLoc {
            gfid,
            parent,
            name: name.map(|n| n.0),
            path: path.map(|p| p.0),
        }
    }

    /// The entry's name (str, see the module docs), or None.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_name_to_py(py, self.name.as_deref())
    }

    /// Sets the name: str, bytes or None.
    #[setter]
    fn set_name(&mut self, name: Option<FsName>) {
        self.name = name.map(|n| n.0);
    }

    /// The path from the volume root (str), or None.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_name_to_py(py, self.path.as_deref())
    }

    /// Sets the path: str, bytes or None.
    #[setter]
    fn set_path(&mut self, path: Option<FsName>) {
        self.path = path.map(|p| p.0);
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
    /// The file's path from the volume root as it is now (it follows renames of the file
    /// and of its directories), where the front end knows it; else None.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_name_to_py(py, self.0.path().as_deref().map(|p| p.as_os_str()))
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

// ==== Dirent ====

/// The longest entry name a `Dirent` may carry (NAME_MAX).
const NAME_MAX: usize = 255;

/// One directory entry, as readdir and readdirp return them.
#[pyclass(module = "weft", name = "Dirent")]
pub struct PyDirent {
    name: Vec<u8>,
    /// The cookie the next readdir passes as `offset` to continue after this entry.
    #[pyo3(get, set)]
    pub offset: u64,
    /// The entry's type as `S_IFMT` bits (`stat.S_IFREG`, `stat.S_IFDIR`, ...).
    #[pyo3(get, set)]
    pub kind: u32,
    /// The inode number the brick reports (used when `iatt` is None).
    #[pyo3(get, set)]
    pub ino: u64,
    /// The entry's attributes (readdirp fills them, except for `.` and `..`), or None.
    #[pyo3(get, set)]
    pub iatt: Option<Py<PyIatt>>,
}

#[pymethods]
impl PyDirent {
    #[new]
    #[pyo3(signature = (name, offset=0, kind=libc::S_IFREG, ino=0, iatt=None))]
    fn new(name: FsName, offset: u64, kind: u32, ino: u64, iatt: Option<Py<PyIatt>>) -> PyDirent {
        PyDirent {
            name: name.0.into_encoded_bytes(),
            offset,
            kind,
            ino,
            iatt,
        }
    }

    /// The entry's name (str, see the module docs).
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyString>> {
        name_to_py(py, &self.name)
    }

    /// Sets the name: str or bytes.
    #[setter]
    fn set_name(&mut self, name: FsName) {
        self.name = name.0.into_encoded_bytes();
    }

    /// True for a directory.
    #[getter]
    fn is_dir(&self) -> bool {
        self.kind & libc::S_IFMT == libc::S_IFDIR
    }

    fn __repr__(&self) -> String {
        format!(
            "Dirent(name={:?}, offset={}, kind={:#o}, ino={})",
            String::from_utf8_lossy(&self.name),
            self.offset,
            self.kind,
            self.ino
        )
    }
}

impl PyDirent {
    /// The Python form of `d`.
    pub fn from_dirent(py: Python<'_>, d: &Dirent) -> PyResult<PyDirent> {
        Ok(PyDirent {
            name: d.name.clone(),
            offset: d.offset,
            kind: d.kind.mode_bits(),
            ino: d.ino,
            iatt: d
                .iatt
                .as_ref()
                .map(|ia| Py::new(py, PyIatt::from_iatt(ia)))
                .transpose()?,
        })
    }

    /// Back to a [`Dirent`]; a name that is empty, too long or holds `/` or NUL, an
    /// unknown type or bad attributes are a `ValueError`.
    pub fn to_dirent(&self, py: Python<'_>) -> PyResult<Dirent> {
        let n = &self.name;
        if n.is_empty() || n.len() > NAME_MAX || n.contains(&b'/') || n.contains(&0) {
            return Err(PyValueError::new_err(format!(
                "not a directory entry name: {:?}",
                std::ffi::OsStr::from_bytes(n)
            )));
        }
        let kind = FileType::from_mode(self.kind)
            .ok_or_else(|| PyValueError::new_err(format!("not a file type: {:#o}", self.kind)))?;
        Ok(Dirent {
            name: n.clone(),
            offset: self.offset,
            kind,
            ino: self.ino,
            iatt: self
                .iatt
                .as_ref()
                .map(|ia| ia.bind(py).borrow().to_iatt())
                .transpose()?,
        })
    }
}

// ==== StatVfs ====

/// Filesystem statistics, as `statvfs` reports them (`df` shows blocks × `frsize`).
#[pyclass(module = "weft", name = "StatVfs", get_all, set_all)]
#[derive(Clone, Default)]
pub struct PyStatVfs {
    /// Block size for the block counts.
    pub bsize: u64,
    /// Fragment size (the unit of `blocks`, `bfree`, `bavail`).
    pub frsize: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest file name.
    pub namemax: u64,
}

#[pymethods]
impl PyStatVfs {
    #[new]
    #[pyo3(signature = (bsize=4096, frsize=4096, blocks=0, bfree=0, bavail=0, files=0, ffree=0, namemax=255))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        bsize: u64,
        frsize: u64,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        namemax: u64,
    ) -> PyStatVfs {
        PyStatVfs {
            bsize,
            frsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            namemax,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "StatVfs(bsize={}, frsize={}, blocks={}, bfree={}, bavail={}, files={}, ffree={}, namemax={})",
            self.bsize, self.frsize, self.blocks, self.bfree, self.bavail, self.files,
            self.ffree, self.namemax
        )
    }
}

impl PyStatVfs {
    /// The Python form of `s`.
    pub fn from_statvfs(s: &StatVfs) -> PyStatVfs {
        PyStatVfs {
            bsize: s.bsize,
            frsize: s.frsize,
            blocks: s.blocks,
            bfree: s.bfree,
            bavail: s.bavail,
            files: s.files,
            ffree: s.ffree,
            namemax: s.namemax,
        }
    }

    /// Back to a [`StatVfs`].
    pub fn to_statvfs(&self) -> StatVfs {
        StatVfs {
            bsize: self.bsize,
            frsize: self.frsize,
            blocks: self.blocks,
            bfree: self.bfree,
            bavail: self.bavail,
            files: self.files,
            ffree: self.ffree,
            namemax: self.namemax,
        }
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
