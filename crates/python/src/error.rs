//! Why a Python translator could not be loaded. Each message is meant for the operator who
//! wrote the volfile: it names the module, class or option and carries Python's own text
//! (a syntax error's file, line and caret; a traceback).

use std::path::PathBuf;

/// A Python translator that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `option path` is not a directory.
    #[error(
        "python path {0} is not a directory (set `option path` to the folder holding the module)"
    )]
    NoPath(PathBuf),
    /// `option module` is not a plain module name.
    #[error(
        "bad python module name {0:?} (a dotted Python module name, e.g. audit or mypkg.audit)"
    )]
    BadModule(String),
    /// Importing the module failed (a syntax error, a missing file, an exception).
    #[error("cannot import python module {module:?} from {path}:\n{detail}")]
    Import {
        /// The module name.
        module: String,
        /// The folder searched first.
        path: PathBuf,
        /// Python's error text with its traceback.
        detail: String,
    },
    /// The module has no such class.
    #[error("python module {module:?} has no class {class:?} (classes there: {found})")]
    NoClass {
        /// The module name.
        module: String,
        /// The class asked for.
        class: String,
        /// The classes the module does define.
        found: String,
    },
    /// The class's constructor raised.
    #[error("python class {class:?} failed to start:\n{detail}")]
    Init {
        /// The class name.
        class: String,
        /// Python's error text with its traceback.
        detail: String,
    },
    /// The class defines FOP methods that cannot be overridden, or a FOP name that is not
    /// callable.
    #[error("python class {class:?}: {reason}")]
    Methods {
        /// The class name.
        class: String,
        /// What is wrong.
        reason: String,
    },
    /// `option config` is not `key=value` pairs.
    #[error("bad option config: {0}")]
    Config(String),
    /// Any other failure of the interpreter.
    #[error("python: {0}")]
    Python(String),
}
