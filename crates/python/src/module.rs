//! The `weft` Python module that translator classes import.
//!
//! Built in Rust once per process and put in `sys.modules`, so `import weft` works without
//! any file on disk. It holds the value classes ([`crate::types`]), [`Context`] and
//! `weft.Error`, the exception that fails a FOP with an errno.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyModule, PyType};
use weft_core::Errno;

use crate::context::Context;
use crate::types::{PyDirent, PyFd, PyIatt, PyInit, PyLoc, PySetAttr, PyStatVfs};

/// Python source of the parts of the module easiest to write in Python.
const PY_SOURCE: &std::ffi::CStr = c"
import os as _os

class Error(Exception):
    '''Fails the FOP with an errno: raise weft.Error(errno.EROFS).

    ctx.wind() and the ctx helpers raise it when the call down the graph fails.'''

    def __init__(self, errno, message=None):
        super().__init__(errno, message or _os.strerror(errno))
        self.errno = errno

    def __str__(self):
        return '[Errno %d] %s' % (self.errno, self.args[1])
";

static MODULE: GILOnceCell<Py<PyModule>> = GILOnceCell::new();
static ERROR: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// The `weft` module, built and registered in `sys.modules` on first use.
pub fn weft_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    let m = MODULE.get_or_try_init(py, || -> PyResult<Py<PyModule>> {
        let m = PyModule::new(py, "weft")?;
        m.add_class::<Context>()?;
        m.add_class::<PyLoc>()?;
        m.add_class::<PyFd>()?;
        m.add_class::<PyIatt>()?;
        m.add_class::<PySetAttr>()?;
        m.add_class::<PyDirent>()?;
        m.add_class::<PyStatVfs>()?;
        m.add_class::<PyInit>()?;
        py.run(PY_SOURCE, Some(&m.dict()), None)?;
        py.import("sys")?.getattr("modules")?.set_item("weft", &m)?;
        Ok(m.unbind())
    })?;
    Ok(m.bind(py))
}

/// The `weft.Error` class.
pub fn error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let t = ERROR.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        Ok(weft_module(py)?
            .getattr("Error")?
            .downcast_into::<PyType>()?
            .unbind())
    })?;
    Ok(t.bind(py))
}

/// A `weft.Error` for `e`, to raise in Python.
pub fn error_for(py: Python<'_>, e: Errno) -> PyErr {
    match error_type(py).and_then(|t| t.call1((e.0,))) {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    }
}

/// The errno a `weft.Error` carries; `None` for any other exception (or a bad errno).
pub fn errno_of(py: Python<'_>, err: &PyErr) -> Option<Errno> {
    let t = error_type(py).ok()?;
    if !err.value(py).is_instance(t).ok()? {
        return None;
    }
    let n: i32 = err.value(py).getattr("errno").ok()?.extract().ok()?;
    (n > 0).then_some(Errno(n))
}

/// `err` with its traceback, as Python prints it.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let text = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let s: Vec<String> = lines.extract()?;
        Ok(s.concat())
    });
    match text {
        Ok(t) => t.trim_end().to_string(),
        Err(_) => err.to_string(),
    }
}
