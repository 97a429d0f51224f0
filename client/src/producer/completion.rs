//! A batch's outcome, set once and read by every record of the batch.
//!
//! Each record sent holds one reference (an `Arc` clone: one atomic
//! increment, one decrement when its delivery is dropped); reading a known
//! outcome is one acquire load. A `tokio::sync::watch` channel per batch did
//! the same job with a read lock per poll and a receiver count per record,
//! which at a few million records a second was a tenth of the producer's
//! time.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use crate::error::{Error, Result};

/// (base offset, log append time or -1), and when it was known.
pub(crate) type Outcome = (Result<(i64, i64)>, Instant);

#[derive(Debug, Default)]
pub(crate) struct Completion {
    outcome: OnceLock<Outcome>,
    notify: Notify,
}

impl Completion {
    pub(crate) fn get(&self) -> Option<&Outcome> {
        self.outcome.get()
    }

    /// Waits until the outcome is set.
    pub(crate) async fn wait(&self) -> &Outcome {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `set` between the check and
            // the await still wakes this waiter.
            notified.as_mut().enable();
            if let Some(o) = self.outcome.get() {
                return o;
            }
            notified.await;
        }
    }
}

/// The batch's side: sets the outcome once; dropped without one, it fails
/// the batch's records with [`Error::Closed`] (the producer went away).
#[derive(Debug)]
pub(crate) struct Completer(Arc<Completion>);

impl Completer {
    pub(crate) fn new() -> Completer {
        Completer(Arc::new(Completion::default()))
    }

    /// A reference for one record's delivery (or a flush).
    pub(crate) fn handle(&self) -> Arc<Completion> {
        self.0.clone()
    }

    pub(crate) fn complete(&self, outcome: Result<(i64, i64)>) {
        let _ = self.0.outcome.set((outcome, Instant::now()));
        self.0.notify.notify_waiters();
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if self.0.outcome.get().is_none() {
            self.complete(Err(Error::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_see_the_outcome_set_before_or_after_they_wait() {
        let c = Completer::new();
        let early = c.handle();
        let waiter = tokio::spawn(async move { early.wait().await.0.clone() });
        tokio::task::yield_now().await;
        c.complete(Ok((5, -1)));
        assert_eq!(waiter.await.unwrap().unwrap(), (5, -1));
        let late = c.handle();
        assert_eq!(late.wait().await.0.clone().unwrap(), (5, -1));
        // Set once: a second outcome is ignored.
        c.complete(Ok((9, -1)));
        assert_eq!(late.get().unwrap().0.clone().unwrap(), (5, -1));
    }

    #[tokio::test]
    async fn a_batch_dropped_unanswered_fails_its_records() {
        let c = Completer::new();
        let h = c.handle();
        drop(c);
        assert!(matches!(h.wait().await.0, Err(Error::Closed)));
    }
}
