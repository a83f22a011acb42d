//! Loading a translator class: import the module from `option path`, find the class, build
//! one instance, and decide once which FOPs it overrides.
//!
//! Everything that can be found wrong before serving is found here, at graph build time:
//! a missing folder, a syntax error, an import-time exception, a missing class, a failing
//! constructor, a method for a FOP that cannot be overridden.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::error::LoadError;
use crate::fops::{Methods, UNSUPPORTED};
use crate::module::{format_exception, weft_module};
use crate::types::PyInit;

/// What the volfile asks for.
pub struct Spec {
    /// The translator's volfile name.
    pub name: String,
    /// The module to import.
    pub module: String,
    /// The folder put first on `sys.path`.
    pub path: PathBuf,
    /// The class in the module.
    pub class: String,
    /// `option config`, raw.
    pub config: String,
}

/// A loaded class: its instance and the FOPs it overrides.
pub struct Loaded {
    /// The instance (the bound methods keep it alive too).
    pub instance: Py<PyAny>,
    /// The overridden FOPs.
    pub methods: Methods,
    /// The file the module came from, for statedumps.
    pub file: String,
}

/// Parses `option config`: `key=value` pairs separated by whitespace.
pub fn parse_config(raw: &str) -> Result<BTreeMap<String, String>, LoadError> {
    let mut m = BTreeMap::new();
    for pair in raw.split_whitespace() {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                if m.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(LoadError::Config(format!("{k:?} given twice")));
                }
            }
            _ => {
                return Err(LoadError::Config(format!(
                    "{pair:?} is not key=value (pairs are separated by spaces)"
                )))
            }
        }
    }
    Ok(m)
}

fn valid_module(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut c = part.chars();
            c.next().is_some_and(|f| f.is_alphabetic() || f == '_')
                && c.all(|ch| ch.is_alphanumeric() || ch == '_')
        })
}

/// Loads the class `spec` names.
pub fn load(spec: &Spec) -> Result<Loaded, LoadError> {
    if !spec.path.is_dir() {
        return Err(LoadError::NoPath(spec.path.clone()));
    }
    if !valid_module(&spec.module) {
        return Err(LoadError::BadModule(spec.module.clone()));
    }
    let config = parse_config(&spec.config)?;
    crate::interpreter::ensure();
    Python::with_gil(|py| {
        let other = |e: PyErr| LoadError::Python(format_exception(py, &e));
        weft_module(py).map_err(other)?;
        let sys_path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .map_err(other)?;
        let dir = spec.path.to_string_lossy().into_owned();
        if !sys_path.contains(&dir).map_err(other)? {
            sys_path.call_method1("insert", (0, &dir)).map_err(other)?;
        }
        let module = py
            .import(spec.module.as_str())
            .map_err(|e| LoadError::Import {
                module: spec.module.clone(),
                path: spec.path.clone(),
                detail: format_exception(py, &e),
            })?;
        let file = module
            .getattr("__file__")
            .and_then(|f| f.extract::<String>())
            .unwrap_or_default();
        let class = find_class(&module, spec)?;
        let init = PyInit {
            name: spec.name.clone(),
            config,
        };
        let instance = class.call1((init,)).map_err(|e| LoadError::Init {
            class: spec.class.clone(),
            detail: format_exception(py, &e),
        })?;
        let methods_err = |reason: String| LoadError::Methods {
            class: spec.class.clone(),
            reason,
        };
        let unsupported: Vec<&str> = UNSUPPORTED
            .iter()
            .copied()
            .filter(|f| instance.hasattr(*f).unwrap_or(false))
            .collect();
        if !unsupported.is_empty() {
            return Err(methods_err(format!(
                "defines {}, which Python translators cannot override yet (they can: {})",
                unsupported.join(", "),
                Methods::NAMES.join(" ")
            )));
        }
        let methods = Methods::find(&instance).map_err(methods_err)?;
        Ok(Loaded {
            instance: instance.unbind(),
            methods,
            file,
        })
    })
}

fn find_class<'py>(
    module: &Bound<'py, PyModule>,
    spec: &Spec,
) -> Result<Bound<'py, PyType>, LoadError> {
    let found = || {
        let mut names: Vec<String> = module
            .dict()
            .iter()
            .filter(|(_, v)| v.is_instance_of::<PyType>())
            .filter_map(|(k, _)| k.extract::<String>().ok())
            .filter(|k| !k.starts_with('_'))
            .collect();
        names.sort();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let no_class = || LoadError::NoClass {
        module: spec.module.clone(),
        class: spec.class.clone(),
        found: found(),
    };
    let obj = module
        .getattr(spec.class.as_str())
        .map_err(|_| no_class())?;
    obj.downcast_into::<PyType>().map_err(|_| no_class())
}

/// The callable attribute `name` of `obj`, if it has one; a non-callable one is an error.
pub fn method(obj: &Bound<'_, PyAny>, name: &str) -> Result<Option<Py<PyAny>>, String> {
    match obj.getattr(name) {
        Err(_) => Ok(None),
        Ok(m) if m.is_callable() => Ok(Some(m.unbind())),
        Ok(_) => Err(format!("{name} is not a method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_and_module_names() {
        let c = parse_config(" log=/tmp/a  prefix=/ro ").unwrap();
        assert_eq!(c["log"], "/tmp/a");
        assert_eq!(c["prefix"], "/ro");
        assert!(parse_config("novalue").is_err());
        assert!(parse_config("a=1 a=2").is_err());
        assert!(parse_config("").unwrap().is_empty());
        assert!(valid_module("audit") && valid_module("pkg.audit_2"));
        assert!(!valid_module("") && !valid_module("a-b") && !valid_module("../x"));
        assert!(!valid_module("a..b") && !valid_module("2a"));
    }
}
