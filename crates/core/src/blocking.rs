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

thread_local! {
    static INLINE_OK: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one that may block in system calls (never call this on a
/// tokio worker thread).
pub fn allow_inline_blocking() {
    INLINE_OK.with(|c| c.set(true));
}

/// True when the current thread was marked with [`allow_inline_blocking`].
pub fn inline_blocking_allowed() -> bool {
    INLINE_OK.with(|c| c.get())
}

/// Runs blocking `f`: inline on a marked thread, else on tokio's blocking pool. A task that
/// panics or is cancelled comes back as EIO.
pub async fn run_blocking<T, F>(f: F) -> Result<T, Errno>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Errno> + Send + 'static,
{
    if inline_blocking_allowed() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
            tracing::error!("blocking call panicked; failing the FOP with EIO");
            Err(Errno::EIO)
        });
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("blocking task failed: {e}");
            Err(Errno::EIO)
        }
    }
}
