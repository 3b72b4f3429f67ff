//! The process-wide tokio runtime every client and call runs on.

use std::{future::Future, sync::LazyLock};

use crate::error::PulselinkError;

/// Two workers: engine I/O and the store's answers; callbacks into foreign code run on the
/// blocking pool so a slow listener never stalls the engine.
pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pulselink")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the Pulselink runtime: {e}"))
});

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
    RUNTIME
        .spawn(f)
        .await
        .map_err(|e| PulselinkError::Internal {
            message: e.to_string(),
        })
}
