//! Moving FOP arguments and results between Rust and Python.
//!
//! **Names and paths** (entry names, `Loc.path`, `ctx.path`, `Fd.path`, symlink targets,
//! `Dirent.name`) reach Python as `str`: their bytes decoded as UTF-8 with the
//! `surrogateescape` error handler, so a byte that is not part of valid UTF-8 becomes a lone
//! surrogate (`b"caf\xe9"` is `"caf\udce9"`). That is `os.fsdecode` in Weft's interpreter,
//! which runs in UTF-8 mode ([`crate::interpreter`]). Going back, a translator may give a
//! `str` (encoded the same way: `name.encode("utf-8", "surrogateescape")`, `os.fsencode`)
//! or `bytes`; every byte string round-trips unchanged ([`name_to_py`], [`name_from_py`]).
//!
//! - [`PyArg`]: an argument's Python form and back (a `ctx.wind(args)` reads them back);
//! - [`PyOut`]: a FOP's result value and back, with the Python type a method must return;
//! - [`Own`] / [`Lend`]: from the borrowed argument a FOP receives to the owned value a
//!   Python call keeps, and back to the borrowed form to call the child with.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use weft_core::{Dirent, FdRef, Gfid, Iatt, Loc, SeekWhat, SetAttr, StatVfs, XattrMap, Xdata};

use crate::types::{PyDirent, PyFd, PyIatt, PyLoc, PySetAttr, PyStatVfs};

/// A name's or path's Python form: `bytes` decoded as UTF-8 with `surrogateescape`.
pub fn name_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = isize::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("name too long"))?;
    // SAFETY: the pointer and length describe `bytes`, which outlives the call; both
    // C strings are NUL-terminated; the result is a new reference or NULL with an
    // exception set, which from_owned_ptr_or_err turns into a PyErr.
    unsafe {
        let ob = pyo3::ffi::PyUnicode_DecodeUTF8(
            bytes.as_ptr().cast(),
            len,
            c"surrogateescape".as_ptr(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, ob)?.downcast_into_unchecked())
    }
}

/// A name's or path's bytes from Python: `bytes` as they are, or a `str` encoded as UTF-8
/// with `surrogateescape` (a `UnicodeEncodeError` for a surrogate that no byte decodes
/// to); anything else is a `TypeError`.
pub fn name_from_py(ob: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = ob.downcast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let s = ob.downcast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "a name or path must be str or bytes, not {}",
            ob.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    // SAFETY: `s` is a live str; both C strings are NUL-terminated; the result is a new
    // reference (a bytes object) or NULL with an exception set.
    let encoded = unsafe {
        let ob = pyo3::ffi::PyUnicode_AsEncodedString(
            s.as_ptr(),
            c"utf-8".as_ptr(),
            c"surrogateescape".as_ptr(),
        );
        Bound::from_owned_ptr_or_err(s.py(), ob)?
    };
    Ok(encoded.downcast::<PyBytes>()?.as_bytes().to_vec())
}

/// A name or path a Python caller gives (`str` or `bytes`, see [`name_from_py`]), for
/// `#[pyfunction]` arguments and setters.
pub struct FsName(pub OsString);

impl<'py> FromPyObject<'py> for FsName {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(FsName(OsString::from_vec(name_from_py(ob)?)))
    }
}

/// The Python form of an optional name or path (`None` stays `None`).
pub fn opt_name_to_py<'py>(py: Python<'py>, name: Option<&OsStr>) -> PyResult<Bound<'py, PyAny>> {
    match name {
        Some(n) => Ok(name_to_py(py, n.as_bytes())?.into_any()),
        None => Ok(py.None().into_bound(py)),
    }
}

/// One FOP argument as Python sees it.
pub trait PyArg: Sized {
    /// The Python value.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    /// Back from Python; a wrong type is a `TypeError`.
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self>;
    /// The inode (gfid, path) this argument names, for `Context.gfid` and `Context.path`.
    fn target(&self) -> Option<(Option<Gfid>, Option<PathBuf>)> {
        None
    }
}

macro_rules! plain_arg {
    ($($t:ty),*) => {$(
        impl PyArg for $t {
            fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                Ok(self.clone().into_pyobject(py)?.to_owned().into_any())
            }
            fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
                ob.extract()
            }
        }
    )*};
}
plain_arg!(u32, u64, i32, bool, String, Option<String>);

impl PyArg for Loc {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PyLoc::from_loc(self))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        ob.downcast::<PyLoc>()?.borrow().to_loc()
    }
    fn target(&self) -> Option<(Option<Gfid>, Option<PathBuf>)> {
        Some((self.gfid, self.path.clone()))
    }
}

impl PyArg for FdRef {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PyFd(self.clone()))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(ob.downcast::<PyFd>()?.get().0.clone())
    }
    fn target(&self) -> Option<(Option<Gfid>, Option<PathBuf>)> {
        Some((Some(self.gfid), self.path()))
    }
}

impl PyArg for SetAttr {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PySetAttr::from_setattr(self))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        ob.downcast::<PySetAttr>()?.borrow().to_setattr()
    }
}

impl PyArg for PathBuf {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(name_to_py(py, self.as_os_str().as_bytes())?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(OsString::from_vec(name_from_py(ob)?).into())
    }
}

/// `seek`'s `what` is `os.SEEK_DATA` or `os.SEEK_HOLE`.
impl PyArg for SeekWhat {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let n = match self {
            SeekWhat::Data => libc::SEEK_DATA,
            SeekWhat::Hole => libc::SEEK_HOLE,
        };
        PyArg::to_py(&n, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        match ob.extract::<i32>()? {
            libc::SEEK_DATA => Ok(SeekWhat::Data),
            libc::SEEK_HOLE => Ok(SeekWhat::Hole),
            n => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "seek's what must be os.SEEK_DATA or os.SEEK_HOLE, not {n}"
            ))),
        }
    }
}

impl PyArg for Bytes {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyBytes::new(py, self).into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Bytes::copy_from_slice(ob.downcast::<PyBytes>()?.as_bytes()))
    }
}

impl PyArg for XattrMap {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = PyDict::new(py);
        for (k, v) in self {
            d.set_item(k, PyBytes::new(py, v))?;
        }
        Ok(d.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        let d = ob.downcast::<PyDict>()?;
        let mut m = XattrMap::new();
        for (k, v) in d.iter() {
            let v = v
                .downcast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err(format!("the value of {k} must be bytes")))?;
            m.insert(k.extract()?, v.as_bytes().to_vec());
        }
        Ok(m)
    }
}

impl PyArg for Xdata {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(&self.0, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Xdata(<XattrMap as PyArg>::from_py(ob)?))
    }
}

// ==== results ====

/// A FOP's result value as Python sees it.
pub trait PyOut: Sized + Send + 'static {
    /// The Python type a method must return, for error messages.
    const EXPECTED: &'static str;
    /// The Python value.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    /// Back from what a method returned.
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult>;
}

/// Why what a method returned is not a valid result of its FOP.
#[derive(Debug)]
pub enum BadResult {
    /// Not of the FOP's result type at all.
    Type,
    /// Of the right type but not valid (the reason, e.g. a bad name in a `Dirent`).
    Invalid(String),
}

impl From<PyErr> for BadResult {
    fn from(e: PyErr) -> BadResult {
        BadResult::Invalid(e.to_string())
    }
}

impl PyOut for Iatt {
    const EXPECTED: &'static str = "weft.Iatt";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PyIatt::from_iatt(self))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        Ok(ob
            .downcast::<PyIatt>()
            .map_err(|_| BadResult::Type)?
            .borrow()
            .to_iatt()?)
    }
}

impl PyOut for () {
    const EXPECTED: &'static str = "None";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(py.None().into_bound(py))
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        if ob.is_none() {
            Ok(())
        } else {
            Err(BadResult::Type)
        }
    }
}

impl PyOut for Bytes {
    const EXPECTED: &'static str = "bytes";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        <Bytes as PyArg>::from_py(ob).map_err(|_| BadResult::Type)
    }
}

impl PyOut for u64 {
    const EXPECTED: &'static str = "int";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        // bool is an int subclass in Python; a True/False result is a mistake.
        if ob.is_instance_of::<pyo3::types::PyBool>() {
            return Err(BadResult::Type);
        }
        ob.extract().map_err(|e| {
            if ob.is_instance_of::<pyo3::types::PyInt>() {
                BadResult::from(e)
            } else {
                BadResult::Type
            }
        })
    }
}

impl PyOut for XattrMap {
    const EXPECTED: &'static str = "dict[str, bytes]";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        if !ob.is_instance_of::<PyDict>() {
            return Err(BadResult::Type);
        }
        Ok(<XattrMap as PyArg>::from_py(ob)?)
    }
}

impl PyOut for PathBuf {
    const EXPECTED: &'static str = "str";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        if !ob.is_instance_of::<PyString>() && !ob.is_instance_of::<PyBytes>() {
            return Err(BadResult::Type);
        }
        Ok(<PathBuf as PyArg>::from_py(ob)?)
    }
}

impl PyOut for StatVfs {
    const EXPECTED: &'static str = "weft.StatVfs";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PyStatVfs::from_statvfs(self))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        Ok(ob
            .downcast::<PyStatVfs>()
            .map_err(|_| BadResult::Type)?
            .borrow()
            .to_statvfs())
    }
}

/// readdir and readdirp answer a list of `weft.Dirent` (any iterable of them is taken).
impl PyOut for Vec<Dirent> {
    const EXPECTED: &'static str = "list[weft.Dirent]";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self
            .iter()
            .map(|d| Bound::new(py, PyDirent::from_dirent(py, d)?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(pyo3::types::PyList::new(py, items)?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Result<Self, BadResult> {
        if ob.is_instance_of::<PyString>() || ob.is_instance_of::<PyBytes>() {
            return Err(BadResult::Type);
        }
        let it = ob.try_iter().map_err(|_| BadResult::Type)?;
        let mut out = Vec::new();
        for item in it {
            let item = item?;
            let d = item.downcast::<PyDirent>().map_err(|_| {
                BadResult::Invalid(format!(
                    "an item is a {}, not a weft.Dirent",
                    item.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            out.push(d.borrow().to_dirent(ob.py())?);
        }
        Ok(out)
    }
}

// ==== owning and lending FOP arguments ====

/// From the borrowed form a FOP method receives to an owned value.
pub trait Own {
    /// The owned form.
    type Owned;
    /// Copies (or reference-counts) the value.
    fn own(self) -> Self::Owned;
}

/// From an owned value back to the borrowed form the child's FOP method takes.
pub trait Lend<'a> {
    /// The borrowed form.
    type Lent;
    /// Borrows (or cheaply copies) the value.
    fn lend(&'a self) -> Self::Lent;
}

macro_rules! by_ref {
    ($($o:ty => $b:ty),*) => {$(
        impl Own for &$b {
            type Owned = $o;
            fn own(self) -> $o { self.to_owned() }
        }
        impl<'a> Lend<'a> for $o {
            type Lent = &'a $b;
            fn lend(&'a self) -> &'a $b { self }
        }
    )*};
}
by_ref!(Loc => Loc, FdRef => FdRef, XattrMap => XattrMap, SetAttr => SetAttr,
    PathBuf => Path, String => str);

macro_rules! by_value {
    ($($t:ty),*) => {$(
        impl Own for $t {
            type Owned = $t;
            fn own(self) -> $t { self }
        }
        impl<'a> Lend<'a> for $t {
            type Lent = $t;
            fn lend(&'a self) -> $t { self.clone() }
        }
    )*};
}
by_value!(u32, u64, i32, bool, Bytes, SeekWhat);

impl Own for Option<&str> {
    type Owned = Option<String>;
    fn own(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

impl<'a> Lend<'a> for Option<String> {
    type Lent = Option<&'a str>;
    fn lend(&'a self) -> Option<&'a str> {
        self.as_deref()
    }
}
