//! The process-wide tokio runtime every client and call runs on, and its orderly stop.

use std::{
    future::Future,
    sync::{LazyLock, Mutex, PoisonError},
    time::Duration,
};

use tokio::runtime::{Handle, Runtime};

use crate::error::PulselinkError;

/// Two workers: the engines' I/O and the calls foreign code makes. `None` once
/// [`shutdown_runtime`] ran.
static RUNTIME: LazyLock<Mutex<Option<Runtime>>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pulselink")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the Pulselink runtime: {e}"));
    Mutex::new(Some(runtime))
});

/// A handle on the runtime; `Closed` after [`shutdown_runtime`].
pub(crate) fn handle() -> Result<Handle, PulselinkError> {
    RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|rt| rt.handle().clone())
        .ok_or(PulselinkError::Closed)
}

/// Stops Pulselink's threads for good, waiting up to `timeout_ms` for each to finish what it
/// is doing. Every client stops with them; none can be created or used afterwards.
///
/// For a process about to exit: the language wrappers call it from their exit hooks (Python
/// `atexit`, a JVM shutdown hook). A Rust thread waking an awaited call (a future completing)
/// enters the foreign runtime; once Python is finalizing, a thread that takes the GIL is
/// ended with `pthread_exit`, and its forced unwind aborts the process when it meets Rust's
/// `catch_unwind` ("FATAL: exception not rethrown"). Stopping the threads before that point,
/// with the GIL released, lets any such wake-up finish first.
#[uniffi::export]
pub fn shutdown_runtime(timeout_ms: u64) {
    let runtime = RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(rt) = runtime {
        rt.shutdown_timeout(Duration::from_millis(timeout_ms));
    }
}

/// Runs `f` on the Pulselink runtime and awaits it from any foreign executor.
///
/// Used for calls that change something (connect, emit, subscribe): if the foreign side drops
/// the future, the call still completes, so an emit is never half done. Reads that take
/// something (the next events) are polled in place instead, so cancelling them loses nothing.
pub(crate) async fn on_runtime<F>(f: F) -> Result<F::Output, PulselinkError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle()?
        .spawn(f)
        .await
        .map_err(|e| PulselinkError::Internal {
            message: e.to_string(),
        })
}
