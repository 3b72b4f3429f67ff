//! The process-wide tokio runtime every client and call runs on, and its orderly stop.

use std::{
    future::Future,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::{Duration, Instant},
};

use tokio::{
    runtime::{Handle, Runtime},
    task::JoinHandle,
};

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
/// something (the next events) are polled in place instead, so cancelling them loses nothing
/// (a watched read's wait runs on the runtime and keeps what it took: `stream.rs`).
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

/// What a call started on the caller's thread became: finished, or still running on the
/// runtime.
pub(crate) enum Started<T> {
    /// It finished within the budget.
    Done(T),
    /// It goes on on the runtime; awaiting the handle gives its result.
    Running(JoinHandle<T>),
}

/// Polls `f` on the calling thread for up to `budget`, then hands what is left of it to the
/// runtime, where it runs to completion whatever the caller does next.
///
/// For calls that usually finish within microseconds (a durable emit whose commit runs on the
/// engine's task) made from a foreign async runtime whose own await costs more than the call:
/// awaiting one through UniFFI from Python takes a Rust future's wake-up, the GIL, a wake-up
/// of the event loop through its self-pipe and several polls across the FFI; waiting here
/// takes the two thread wake-ups to the engine and back, one of them saved by polling for
/// [`SPIN`] before parking. The first poll always runs here, so calls started one after
/// another reach the engine in that order.
pub(crate) fn start_here<F>(f: F, budget: Duration) -> Result<Started<F::Output>, PulselinkError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = handle()?;
    // Timers the call creates belong to the runtime, as they would had it started there.
    let _context = runtime.enter();
    let mut f = Box::pin(f);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let started = Instant::now();
    let deadline = started + budget;
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Ok(Started::Done(out));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Started::Running(runtime.spawn(f)));
        }
        if started.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        // A wake-up that came before this park makes it return at once; a spurious return
        // only costs another poll.
        thread::park_timeout(left);
    }
}

/// How long [`start_here`] polls before it parks: waking a parked thread costs some tens of
/// microseconds on a virtual machine (measured on this project's: Python's `await emit` loop
/// ran at 6,700/s parking at once and 8,600/s spinning first), about what the commit takes.
const SPIN: Duration = Duration::from_micros(100);

/// Wakes the foreign thread [`start_here`] parks.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn a_call_done_within_the_budget_is_answered_in_place() {
        let (tx, rx) = oneshot::channel();
        // Woken from another thread while the caller waits: spun on, then parked, then done.
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        let asked = Instant::now();
        let started = start_here(rx, Duration::from_secs(10)).unwrap();
        assert!(matches!(started, Started::Done(Ok(7))));
        // Woken, not found at the end of the budget.
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        sender.join().unwrap();
    }

    #[test]
    fn a_call_not_done_within_the_budget_goes_on_on_the_runtime() {
        let (go, wait) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel();
        let call = async move {
            wait.await.unwrap();
            // Runs after the caller got `Running` and went away: nothing was dropped.
            done.send("finished").unwrap();
            42
        };
        let Started::Running(rest) = start_here(call, Duration::ZERO).unwrap() else {
            panic!("the call cannot have finished");
        };
        go.send(()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(rest).unwrap(), 42);
        assert_eq!(finished.blocking_recv(), Ok("finished"));
    }
}
