//! Answers a foreign event loop collects itself, woken by a byte on a socket it watches.
//!
//! UniFFI resumes a foreign coroutine through a callback that the Rust thread completing the
//! future makes into foreign code, once per poll. From Python each such callback creates and
//! tears down a Python thread state (the runtime's threads are not Python's), takes the GIL
//! and writes to the event loop's self-pipe; the poll that then finds the future ready makes
//! one more round through the self-pipe. For a call whose answer comes a network round trip
//! later (an acknowledgement) that was most of what Python paid on top of the round trip, and
//! a stream waiting for its next batch of events paid it again per batch. Here the runtime
//! only pushes the answer (the acknowledgement, or word that events are ready) and, if none
//! was waiting, writes one byte; the event loop watches the other end (`add_reader`) and
//! takes every answer that is ready in one call. No Rust thread calls into foreign code.
//!
//! Unix only: an event loop that cannot watch a descriptor (asyncio's proactor on Windows)
//! keeps using the async methods.

use std::{
    io::{ErrorKind, Read, Write},
    os::{fd::AsRawFd, unix::net::UnixStream},
    sync::{Arc, Mutex, PoisonError},
};

use crate::{error::PulselinkError, event::AckReply};

/// Where answers to calls started with a token wait until the foreign event loop takes them.
#[derive(uniffi::Object)]
pub struct Answers {
    ready: Mutex<Vec<Answer>>,
    /// Written when the first answer arrives in an empty queue.
    wake: UnixStream,
    /// What the event loop watches.
    watched: UnixStream,
}

/// The answer to one call, under the token its caller gave.
#[derive(uniffi::Record)]
pub struct Answer {
    /// The caller's token.
    pub token: u64,
    /// What became of the call.
    pub outcome: Outcome,
}

/// What became of a call answered through [`Answers`].
#[derive(uniffi::Enum)]
pub enum Outcome {
    /// The acknowledgement came.
    Acked {
        /// Its arguments.
        reply: AckReply,
    },
    /// It failed: a timeout, a closed client, an entry dropped unsent.
    Failed {
        /// Why.
        error: PulselinkError,
    },
    /// Events are ready on the receiver that was asked (or it ended): asking again takes
    /// them.
    Ready,
}

#[uniffi::export]
impl Answers {
    /// A queue with its socket pair.
    #[uniffi::constructor]
    pub fn new() -> Result<Arc<Self>, PulselinkError> {
        let io = |e: std::io::Error| PulselinkError::Internal {
            message: format!("cannot make the answers' socket pair: {e}"),
        };
        let (wake, watched) = UnixStream::pair().map_err(io)?;
        wake.set_nonblocking(true).map_err(io)?;
        watched.set_nonblocking(true).map_err(io)?;
        Ok(Arc::new(Self {
            ready: Mutex::new(Vec::new()),
            wake,
            watched,
        }))
    }

    /// The descriptor to watch for reading: readable while answers wait. It stays owned
    /// here; the watcher must stop watching before this queue is dropped.
    pub fn fd(&self) -> i32 {
        self.watched.as_raw_fd()
    }

    /// Takes every answer that is ready, oldest first.
    pub fn take(&self) -> Vec<Answer> {
        // Drained before the queue is taken: an answer pushed in between finds the queue
        // not empty and writes nothing, and it is taken now; one pushed after finds it empty
        // and wakes the watcher again.
        let mut sink = [0u8; 64];
        loop {
            match (&self.watched).read(&mut sink) {
                Ok(n) if n == sink.len() => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        std::mem::take(&mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The answer one call owes: kept with its result, or, dropped unkept (its task dropped when
/// the runtime shuts down), answered `Closed`, so that no caller waits for ever.
pub(crate) struct Promise {
    owed: Option<(Arc<Answers>, u64)>,
}

impl Promise {
    /// What the call under `token` owes `answers`.
    pub(crate) fn new(answers: Arc<Answers>, token: u64) -> Self {
        Self {
            owed: Some((answers, token)),
        }
    }

    /// Answers with the call's outcome.
    pub(crate) fn keep(mut self, outcome: Outcome) {
        if let Some((answers, token)) = self.owed.take() {
            answers.answer(Answer { token, outcome });
        }
    }
}

impl Drop for Promise {
    fn drop(&mut self) {
        if let Some((answers, token)) = self.owed.take() {
            let error = PulselinkError::Closed;
            answers.answer(Answer {
                token,
                outcome: Outcome::Failed { error },
            });
        }
    }
}

impl From<Result<AckReply, PulselinkError>> for Outcome {
    fn from(result: Result<AckReply, PulselinkError>) -> Self {
        match result {
            Ok(reply) => Self::Acked { reply },
            Err(error) => Self::Failed { error },
        }
    }
}

impl Answers {
    /// Queues an answer and wakes the watcher if it was the first.
    pub(crate) fn answer(&self, answer: Answer) {
        let first = {
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            ready.push(answer);
            ready.len() == 1
        };
        if first {
            // A full socket already wakes the watcher; nothing else can go wrong that another
            // byte would mend.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that wake the watcher, read (and so consumed) through a second handle.
    fn wakes(answers: &Answers) -> usize {
        let mut watcher = answers.watched.try_clone().unwrap();
        let mut buf = [0u8; 16];
        match watcher.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        }
    }

    fn answer(token: u64) -> Answer {
        Answer {
            token,
            outcome: Outcome::Ready,
        }
    }

    fn tokens(answers: Vec<Answer>) -> Vec<u64> {
        answers.into_iter().map(|a| a.token).collect()
    }

    #[test]
    fn the_first_answer_of_a_batch_wakes_the_watcher_and_one_take_gets_them_all() {
        let answers = Answers::new().unwrap();
        assert_eq!(wakes(&answers), 0, "nothing to take yet");
        answers.answer(answer(1));
        answers.answer(answer(2));
        assert_eq!(wakes(&answers), 1, "one byte for the batch");
        assert_eq!(tokens(answers.take()), [1, 2]);
        assert!(answers.take().is_empty());
        // Taken, the queue is empty again: the next answer wakes the watcher again.
        answers.answer(answer(3));
        assert_eq!(wakes(&answers), 1);
        answers.answer(answer(4));
        assert_eq!(tokens(answers.take()), [3, 4]);
        // `take` drains what the watcher was woken with, so it is not woken for nothing.
        answers.answer(answer(5));
        assert_eq!(tokens(answers.take()), [5]);
        assert_eq!(wakes(&answers), 0);
    }

    #[test]
    fn a_promise_answers_once_with_its_result_or_closed_when_dropped_unkept() {
        let answers = Answers::new().unwrap();
        let reply = AckReply {
            args_json: "[1]".into(),
            attachments: Vec::new(),
        };
        Promise::new(answers.clone(), 7).keep(Ok(reply.clone()).into());
        drop(Promise::new(answers.clone(), 8));
        let got = answers.take();
        assert_eq!(tokens(answers.take()), Vec::<u64>::new());
        assert_eq!(got.len(), 2, "one answer each");
        assert_eq!(got[0].token, 7);
        assert!(matches!(&got[0].outcome, Outcome::Acked { reply: r } if *r == reply));
        assert_eq!(got[1].token, 8);
        let closed = PulselinkError::Closed;
        assert!(
            matches!(&got[1].outcome, Outcome::Failed { error } if error.to_string() == closed.to_string())
        );
    }
}
