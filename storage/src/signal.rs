//! A single-threaded "something changed" notification: tasks wait until a
//! condition over shared state holds; whoever changes the state notifies.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default, Debug)]
pub struct Signal {
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    pub fn notify_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Has `waker` woken at the next notification (once, however often a
    /// task registers): for a task polling many conditions itself.
    pub fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    /// Resolves with the first `Some` that `ready` returns, re-checking after
    /// every notification.
    pub async fn wait_until<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        poll_fn(|cx| match ready() {
            Some(v) => Poll::Ready(v),
            None => {
                self.register(cx.waker());
                Poll::Pending
            }
        })
        .await
    }
}
