//! Moving FOP arguments and results between Rust and Python.
//!
//! - [`PyArg`]: an argument's Python form and back (a `ctx.wind(args)` reads them back);
//! - [`PyOut`]: a FOP's result value and back, with the Python type a method must return;
//! - [`Own`] / [`Lend`]: from the borrowed argument a FOP receives to the owned value a
//!   Python call keeps, and back to the borrowed form to call the child with.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use weft_core::{FdRef, Gfid, Iatt, Loc, SetAttr, XattrMap, Xdata};

use crate::types::{PyFd, PyIatt, PyLoc, PySetAttr};

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
        Some((Some(self.gfid), None))
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
        Ok(self.as_os_str().into_pyobject(py)?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(ob.extract::<OsString>()?.into())
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
    /// Back from what a method returned; `None` when it is of the wrong type.
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self>;
}

impl PyOut for Iatt {
    const EXPECTED: &'static str = "weft.Iatt";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, PyIatt::from_iatt(self))?.into_any())
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        ob.downcast::<PyIatt>().ok()?.borrow().to_iatt().ok()
    }
}

impl PyOut for () {
    const EXPECTED: &'static str = "None";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(py.None().into_bound(py))
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        ob.is_none().then_some(())
    }
}

impl PyOut for Bytes {
    const EXPECTED: &'static str = "bytes";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        <Bytes as PyArg>::from_py(ob).ok()
    }
}

impl PyOut for u64 {
    const EXPECTED: &'static str = "int";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        // bool is an int subclass in Python; a True/False result is a mistake.
        if ob.is_instance_of::<pyo3::types::PyBool>() {
            return None;
        }
        ob.extract().ok()
    }
}

impl PyOut for XattrMap {
    const EXPECTED: &'static str = "dict[str, bytes]";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        <XattrMap as PyArg>::from_py(ob).ok()
    }
}

impl PyOut for PathBuf {
    const EXPECTED: &'static str = "str";
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyArg::to_py(self, py)
    }
    fn from_py(ob: &Bound<'_, PyAny>) -> Option<Self> {
        <PathBuf as PyArg>::from_py(ob).ok()
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
by_value!(u32, u64, i32, bool, Bytes);

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
