//! Starting the embedded interpreter: once per process, in UTF-8 mode.
//!
//! Names and paths reach Python as `str` decoded from UTF-8 with `surrogateescape` (see
//! [`crate::convert::name_to_py`]). Starting the interpreter in UTF-8 mode (PEP 540) makes
//! its filesystem encoding UTF-8 with `surrogateescape` whatever the process's locale (a
//! mount started by systemd or with `LANG` unset runs in the C locale, where Python would
//! otherwise pick ASCII), so `os.fsencode(name)` gives a name's bytes back and
//! `open(ctx.path)`-style calls mean the same bytes a FOP carried.

use std::sync::Once;

use pyo3::ffi;

static INIT: Once = Once::new();

/// Initialises the interpreter (in UTF-8 mode) unless it is running already. Call before
/// the first `Python::with_gil`; later calls do nothing. If something else in the process
/// started Python first, its settings stay (names are still decoded as UTF-8 by Weft; only
/// `os.fsencode` may then differ).
pub fn ensure() {
    INIT.call_once(|| {
        // SAFETY: Py_IsInitialized may be called at any time. Pre-initialisation only runs
        // before the interpreter exists (checked just above, under the Once, and pyo3's own
        // initialisation happens right after, on this thread), with a config initialised
        // by PyPreConfig_InitPythonConfig.
        unsafe {
            if ffi::Py_IsInitialized() == 0 {
                let mut pre = std::mem::MaybeUninit::<ffi::PyPreConfig>::uninit();
                ffi::PyPreConfig_InitPythonConfig(pre.as_mut_ptr());
                let mut pre = pre.assume_init();
                pre.parse_argv = 0;
                pre.utf8_mode = 1;
                // Never touch the process environment (LC_CTYPE) from here.
                pre.coerce_c_locale = 0;
                pre.coerce_c_locale_warn = 0;
                let status = ffi::Py_PreInitialize(&pre);
                if ffi::PyStatus_Exception(status) != 0 {
                    tracing::warn!(target: "weft::python", "could not start Python in UTF-8 mode; using its defaults");
                }
            }
        }
        pyo3::prepare_freethreaded_python();
    });
}
