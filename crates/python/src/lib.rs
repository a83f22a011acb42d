//! `features/python`: Weft translators written in Python.
//!
//! A volfile names a module and a class; the class's methods are named after the FOPs they
//! override (`lookup`, `stat`, `open`, `readv`, `writev`, `create`, `mkdir`, `unlink`,
//! `getxattr`, `setxattr`, ... see [`fops::Methods::NAMES`]). Which FOPs a class overrides
//! is decided once, at load time: every other FOP goes straight to the child, with no GIL
//! and no thread hop, so Python never sits in a path that does not use it.
//!
//! ```text
//! volume vol-audit
//!     type features/python
//!     option module audit          # audit.py ...
//!     option path /etc/weft/python # ... in this folder (default /var/lib/weft/python)
//!     option class Audit           # default Translator
//!     option config log=/var/log/weft/audit.log
//!     subvolumes vol-posix
//! end-volume
//! ```
//!
//! A method receives `(ctx, args)`: a [`context::Context`] (caller, target, calls down the
//! graph) and the FOP's arguments as attributes. It may pass the call on (`return
//! ctx.wind()`), change `args` first, look at or change the result of `ctx.wind()`, answer
//! itself, or `raise weft.Error(errno.EROFS)`. Anything else it raises fails that one FOP
//! with EIO and is logged with its traceback (see [`call`]). The tutorial is
//! docs/PYTHON-TRANSLATORS.md; type stubs are in `crates/python/stubs/weft.pyi`.
//!
//! Principal pieces: [`xlator::PythonType`] (options, build), [`interpreter`] (starting
//! Python, in UTF-8 mode), [`loader`] (import, class, overridden FOPs), [`fops`] (the FOP
//! list and the translator), [`call`] (threads, GIL, outcomes), [`convert`] (arguments,
//! results, and the rule for names: `str` decoded from UTF-8 with `surrogateescape`),
//! [`context`] and [`types`] (the Python API), [`module`] (`import weft`).

pub mod call;
pub mod context;
pub mod convert;
pub mod error;
pub mod fops;
pub mod interpreter;
pub mod loader;
pub mod module;
pub mod types;
pub mod xlator;

use std::sync::Arc;

pub use error::LoadError;
pub use xlator::{PythonType, PythonXlator, DEFAULT_PATH};

/// Adds `features/python` to `r`.
pub fn register(r: &mut weft_core::Registry) {
    r.register(Arc::new(PythonType));
}
