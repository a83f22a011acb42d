//! Where blocking system calls may run.
//!
//! Storage translators make blocking calls (open, pread, fsync...). On a tokio worker thread
//! such a call would stall every other task on that worker, so [`run_blocking`] moves it to
//! tokio's blocking pool. A front end whose own threads exist to wait (the FUSE request
//! threads, each serving one request at a time, as libfuse's do) marks them with
//! [`allow_inline_blocking`], and the call then runs right there: no thread hand-off, which
//! is most of the cost of a small FOP.

use std::cell::Cell;

use crate::Errno;

/// How [`run_blocking`] runs a call on the current thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Hand it to tokio's blocking pool (the default: a runtime worker must not block).
    Pool,
    /// Run it right here: the thread exists to wait.
    Inline,
    /// Run it right here through `tokio::task::block_in_place`, which first hands this
    /// worker's other tasks to another thread (multi-thread runtime workers only).
    InPlace,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Pool) };
}

/// Marks the current thread as one that may block in system calls (never call this on a
/// tokio worker thread; see [`allow_block_in_place`] for those).
pub fn allow_inline_blocking() {
    MODE.with(|c| c.set(Mode::Inline));
}

/// Marks the current thread, a worker of a multi-thread tokio runtime (call it from
/// `on_thread_start`), as one where blocking calls run in place after handing the worker's
/// other tasks on. The brick server does this: a FOP's syscalls then run without a
/// hand-off to the blocking pool and back, while no other task waits behind them.
pub fn allow_block_in_place() {
    MODE.with(|c| c.set(Mode::InPlace));
}

/// True when the current thread was marked with [`allow_inline_blocking`].
pub fn inline_blocking_allowed() -> bool {
    MODE.with(|c| c.get()) == Mode::Inline
}

/// Like [`run_blocking`], for a call that normally takes microseconds (a small write into
/// the page cache): on a thread marked with [`allow_block_in_place`] it runs right there,
/// without handing the worker's other tasks on first (that hand-off wakes another thread,
/// costing more than the call), unless two such calls run already (then as
/// [`run_blocking`]). Elsewhere as [`run_blocking`].
pub async fn run_short<T, F>(f: F) -> Result<T, Errno>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Errno> + Send + 'static,
{
    if MODE.with(|c| c.get()) == Mode::InPlace {
        // At most SHORT_IN_PLACE at once: a call that blocks after all (dirty-page
        // throttling, a frozen filesystem) then leaves the other workers serving.
        let running = SHORT_RUNNING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let done = ShortDone;
        if running < SHORT_IN_PLACE {
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(
                |_| {
                    tracing::error!("blocking call panicked; failing the FOP with EIO");
                    Err(Errno::EIO)
                },
            );
        }
        drop(done);
    }
    run_blocking(f).await
}

/// How many [`run_short`] calls may run on runtime workers at once.
const SHORT_IN_PLACE: usize = 2;

/// [`run_short`] calls running (or being counted) now.
static SHORT_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Takes a [`run_short`] call off [`SHORT_RUNNING`] when it ends (or unwinds).
struct ShortDone;

impl Drop for ShortDone {
    fn drop(&mut self) {
        SHORT_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Runs blocking `f`: inline on a marked thread, else on tokio's blocking pool. A task that
/// panics or is cancelled comes back as EIO.
pub async fn run_blocking<T, F>(f: F) -> Result<T, Errno>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Errno> + Send + 'static,
{
    let guarded = |f: F| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
            tracing::error!("blocking call panicked; failing the FOP with EIO");
            Err(Errno::EIO)
        })
    };
    match MODE.with(|c| c.get()) {
        Mode::Inline => return guarded(f),
        Mode::InPlace
            if tokio::runtime::Handle::try_current().is_ok_and(|h| {
                h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            }) =>
        {
            return tokio::task::block_in_place(|| guarded(f));
        }
        _ => {}
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("blocking task failed: {e}");
            Err(Errno::EIO)
        }
    }
}
