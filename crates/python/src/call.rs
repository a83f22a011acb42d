//! Running one Python FOP method: which thread, the GIL, and what comes back.
//!
//! A FOP the class overrides runs its method on a thread that may block: right where it is
//! when that is a FUSE request thread (marked with
//! [`weft_core::blocking::allow_inline_blocking`]) of a multi-thread runtime, else on
//! tokio's blocking pool. It never runs on a runtime worker, so a method that blocks or
//! spins stalls only its own FOP; FOPs that bypass Python do not wait for the GIL.
//!
//! Outcomes: a returned value of the right type answers the FOP (with the xdata of the last
//! `ctx.wind`); `weft.Error(n)` fails it with errno `n`; any other exception, a value of the
//! wrong type, or a panic fails it with EIO and logs why, with the translator's name.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use tokio::runtime::{Handle, RuntimeFlavor};
use weft_core::{Ctx, Errno, Fop, XlatorRef};

use crate::context::{block_on, Context, Down, Winder};
use crate::convert::{BadResult, PyOut};
use crate::fops::FopArgs;
use crate::module::{errno_of, error_for, format_exception};
use crate::xlator::Stats;

/// One call of a Python FOP method, owning all it needs to run on another thread.
pub struct Job<A: FopArgs> {
    /// The translator's volfile name, for logs.
    pub name: String,
    /// The bound method.
    pub method: Arc<Py<PyAny>>,
    /// The translator's child.
    pub child: XlatorRef,
    /// The caller.
    pub ctx: Ctx,
    /// The FOP's arguments.
    pub args: A,
    /// Counters to bump.
    pub stats: Arc<Stats>,
}

impl<A: FopArgs> Job<A> {
    /// Runs the method on a thread that may block, and maps the outcome to a FOP result.
    pub async fn run(self) -> Fop<A::Out> {
        let Ok(handle) = Handle::try_current() else {
            tracing::error!(target: "weft::python", "python translator {}: {} called outside a tokio runtime; failing it with EIO", self.name, A::NAME);
            return Err(Errno::EIO);
        };
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let inline = weft_core::blocking::inline_blocking_allowed()
            && handle.runtime_flavor() == RuntimeFlavor::MultiThread;
        if inline {
            return self.run_here(handle);
        }
        let (name, stats) = (self.name.clone(), self.stats.clone());
        match tokio::task::spawn_blocking(move || self.run_here(handle)).await {
            Ok(r) => r,
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "weft::python", "python translator {name}: {} did not finish ({e}); failing it with EIO", A::NAME);
                Err(Errno::EIO)
            }
        }
    }

    fn run_here(self, handle: Handle) -> Fop<A::Out> {
        let (name, stats) = (self.name.clone(), self.stats.clone());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Python::with_gil(|py| self.run_gil(py, handle))
        }));
        let r = r.unwrap_or_else(|_| {
            tracing::error!(target: "weft::python", "python translator {name}: {} panicked; failing it with EIO", A::NAME);
            Err(Errno::EIO)
        });
        if r.as_ref().err() == Some(&Errno::EIO) {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn run_gil(self, py: Python<'_>, handle: Handle) -> Fop<A::Out> {
        let fop = A::NAME;
        let name = self.name;
        let fail = |what: &str, err: &PyErr| {
            tracing::error!(target: "weft::python", "python translator {name}: {fop} {what}; failing it with EIO:\n{}", format_exception(py, err));
            Errno::EIO
        };
        let args = self.args.to_py(py).map_err(|e| fail("arguments", &e))?;
        let reply = Arc::new(Mutex::new(weft_core::Xdata::new()));
        let target = self.args.target();
        let down = Down {
            child: self.child.clone(),
            handle: handle.clone(),
            ctx: self.ctx.clone(),
        };
        let winder = winder::<A>(self.child, handle, self.ctx, reply.clone());
        let ctx = Context::new(
            fop,
            name.clone(),
            target,
            down,
            winder,
            args.clone().unbind(),
            reply.clone(),
        );
        let ctx = Bound::new(py, ctx).map_err(|e| fail("context", &e))?;
        match self.method.bind(py).call1((ctx, args)) {
            Ok(v) => match A::Out::from_py(&v) {
                Ok(out) => Ok((out, std::mem::take(&mut *reply.lock()))),
                Err(bad) => {
                    let got = v
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| "?".to_string());
                    let why = match bad {
                        BadResult::Type => String::new(),
                        BadResult::Invalid(why) => format!(" ({why})"),
                    };
                    tracing::error!(target: "weft::python", "python translator {name}: {fop} returned a {got}, expected {}{why}; failing it with EIO", A::Out::EXPECTED);
                    Err(Errno::EIO)
                }
            },
            Err(e) => match errno_of(py, &e) {
                Some(errno) => Err(errno),
                None => Err(fail("raised an exception", &e)),
            },
        }
    }
}

/// The `ctx.wind(args)` of FOP `A`.
fn winder<A: FopArgs>(
    child: XlatorRef,
    handle: Handle,
    ctx: Ctx,
    reply: Arc<Mutex<weft_core::Xdata>>,
) -> Winder {
    Box::new(move |py, ob| {
        let args = A::from_py(ob)?;
        let fut = args.wind(child.clone(), ctx.clone());
        match py.allow_threads(|| block_on(&handle, fut)) {
            Ok((v, xd)) => {
                *reply.lock() = xd;
                Ok(v.to_py(py)?.unbind())
            }
            Err(e) => Err(error_for(py, e)),
        }
    })
}
