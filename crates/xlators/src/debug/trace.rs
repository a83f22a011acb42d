//! `debug/trace`: logs every FOP with its arguments, its result and how long it took.
//!
//! Lines go to the process log (tracing target `weft::trace`) at the level the `log-level`
//! option names, so a trace can be put anywhere in a graph and read beside other logs.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use weft_core::options::{OptionKind, OptionSpec};
use weft_core::*;

/// The trace translator.
pub struct Trace {
    name: String,
    children: Vec<XlatorRef>,
    level: tracing::Level,
    next_id: AtomicU64,
}

impl Trace {
    async fn observed<T: Debug>(
        &self,
        fop: &'static str,
        args: String,
        fut: impl Future<Output = Fop<T>>,
    ) -> Fop<T> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.log(format_args!("{}: #{id} {fop}({args})", self.name));
        let t = Instant::now();
        let r = fut.await;
        let us = t.elapsed().as_micros();
        match &r {
            Ok((v, xd)) => {
                let v = super::clip(format!("{v:?}"));
                self.log(format_args!(
                    "{}: #{id} {fop} -> {v} xdata={xd:?} ({us} µs)",
                    self.name
                ))
            }
            Err(e) => self.log(format_args!("{}: #{id} {fop} -> {e} ({us} µs)", self.name)),
        }
        r
    }

    fn log(&self, msg: std::fmt::Arguments<'_>) {
        match self.level {
            tracing::Level::ERROR => tracing::error!(target: "weft::trace", "{msg}"),
            tracing::Level::WARN => tracing::warn!(target: "weft::trace", "{msg}"),
            tracing::Level::INFO => tracing::info!(target: "weft::trace", "{msg}"),
            tracing::Level::DEBUG => tracing::debug!(target: "weft::trace", "{msg}"),
            _ => tracing::trace!(target: "weft::trace", "{msg}"),
        }
    }

    fn wants_args(&self) -> bool {
        true
    }

    fn dump_state(&self) -> String {
        format!("calls traced = {}\n", self.next_id.load(Ordering::Relaxed))
    }
}

crate::observe_all_fops!(Trace);

/// The `debug/trace` type for the registry.
pub struct TraceType;

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    key: "log-level",
    kind: OptionKind::Enum(&["error", "warn", "info", "debug", "trace"]),
    default: Some("info"),
    description: "The log level trace lines are written at.",
}];

impl XlatorType for TraceType {
    fn type_name(&self) -> &'static str {
        "debug/trace"
    }
    fn description(&self) -> &'static str {
        "Logs every FOP, its arguments, result and latency."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let level = match init.options.str("log-level") {
            "error" => tracing::Level::ERROR,
            "warn" => tracing::Level::WARN,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            _ => tracing::Level::INFO,
        };
        Ok(Arc::new(Trace {
            name: init.name,
            children: init.children,
            level,
            next_id: AtomicU64::new(1),
        }))
    }
}
