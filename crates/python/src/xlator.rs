//! The `features/python` translator and its type (options, build).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use weft_core::options::{OptionKind, OptionSpec};
use weft_core::{Ctx, Fop, Xlator, XlatorInit, XlatorRef, XlatorType};

use crate::call::Job;
use crate::fops::{FopArgs, Methods};
use crate::loader::{load, Spec};

/// Where modules are looked for when the volfile sets no `option path`: the `python`
/// folder of Weft's working directory `/var/lib/weft`.
pub const DEFAULT_PATH: &str = "/var/lib/weft/python";

/// Counters shown in statedumps.
#[derive(Default)]
pub struct Stats {
    /// FOPs that ran a Python method.
    pub calls: AtomicU64,
    /// Of those, how many ended in EIO (exceptions, wrong types, EIO from below).
    pub failures: AtomicU64,
}

/// A translator whose overridden FOPs run methods of a Python object.
pub struct PythonXlator {
    name: String,
    children: Vec<XlatorRef>,
    methods: Methods,
    // Held so the object lives as long as the translator, even with no FOP methods.
    _instance: Py<PyAny>,
    module: String,
    class: String,
    file: String,
    stats: Arc<Stats>,
}

impl PythonXlator {
    /// The volfile name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The single child.
    pub fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    /// The FOPs the class overrides.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// Runs Python method `m` for one FOP.
    pub async fn call<A: FopArgs>(&self, m: &Arc<Py<PyAny>>, ctx: &Ctx, args: A) -> Fop<A::Out> {
        let job = Job {
            name: self.name.clone(),
            method: m.clone(),
            child: Xlator::child(self)?.clone(),
            ctx: ctx.clone(),
            args,
            stats: self.stats.clone(),
        };
        job.run().await
    }

    /// Module, class, overridden FOPs and counters.
    pub fn dump_state(&self) -> String {
        format!(
            "module = {} ({})\nclass = {}\noverridden = {}\npython calls = {}\nEIO = {}\n",
            self.module,
            self.file,
            self.class,
            self.methods.overridden().join(" "),
            self.stats.calls.load(Ordering::Relaxed),
            self.stats.failures.load(Ordering::Relaxed),
        )
    }
}

/// The `features/python` type for the registry.
pub struct PythonType;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "module",
        kind: OptionKind::Str,
        default: None,
        description: "The Python module to import (a file MODULE.py in `path`).",
    },
    OptionSpec {
        key: "path",
        kind: OptionKind::Path,
        default: Some(DEFAULT_PATH),
        description: "The folder searched first for the module.",
    },
    OptionSpec {
        key: "class",
        kind: OptionKind::Str,
        default: Some("Translator"),
        description: "The class in the module whose methods are named after FOPs.",
    },
    OptionSpec {
        key: "config",
        kind: OptionKind::Str,
        default: Some(""),
        description: "key=value pairs (space-separated) handed to the class as init.config.",
    },
];

impl XlatorType for PythonType {
    fn type_name(&self) -> &'static str {
        "features/python"
    }
    fn description(&self) -> &'static str {
        "Runs a Python class whose methods are named after the FOPs they override."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let spec = Spec {
            name: init.name.clone(),
            module: init.options.str("module").to_string(),
            path: init.options.path("path"),
            class: init.options.str("class").to_string(),
            config: init.options.str("config").to_string(),
        };
        let loaded = load(&spec).map_err(|e| e.to_string())?;
        tracing::info!(target: "weft::python", "python translator {}: loaded {}.{} from {}; overrides: {}",
            spec.name, spec.module, spec.class, loaded.file, loaded.methods.overridden().join(" "));
        Ok(Arc::new(PythonXlator {
            name: init.name,
            children: init.children,
            methods: loaded.methods,
            _instance: loaded.instance,
            module: spec.module,
            class: spec.class,
            file: loaded.file,
            stats: Arc::new(Stats::default()),
        }))
    }
}
