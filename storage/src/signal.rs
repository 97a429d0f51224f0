//! A single-threaded "something changed" notification: tasks wait until a
//! condition over shared state holds; whoever changes the state notifies.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default, Debug)]
pub struct Signal {
    inner: RefCell<Registered>,
}

/// The wakers to wake, each once: `keys` holds what `Waker::will_wake`
/// compares (data and vtable addresses), so a registration is one hash
/// lookup. A scan of the list instead made a shard journal's step
/// quadratic in its waiters (a thousand partitions' appends each wait on
/// one signal: 2.5 % of the shard's CPU in `many-partitions-1000`).
#[derive(Default, Debug)]
struct Registered {
    wakers: Vec<Waker>,
    keys: HashSet<(usize, usize)>,
}

fn key(w: &Waker) -> (usize, usize) {
    (w.data() as usize, std::ptr::from_ref(w.vtable()) as usize)
}

impl Signal {
    pub fn notify_all(&self) {
        let wakers = {
            let mut r = self.inner.borrow_mut();
            r.keys.clear();
            std::mem::take(&mut r.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Has `waker` woken at the next notification (once, however often a
    /// task registers): for a task polling many conditions itself. A waker
    /// held here keeps its task alive, so its addresses are not reused by
    /// another task before the notification.
    pub fn register(&self, waker: &Waker) {
        let mut r = self.inner.borrow_mut();
        if r.keys.insert(key(waker)) {
            r.wakers.push(waker.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn each_registered_waker_wakes_once_per_notification() {
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let s = Signal::default();
        s.register(&wa);
        s.register(&wa.clone());
        s.register(&wb);
        s.notify_all();
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (1, 1)
        );
        // A notification forgets every registration; nothing wakes twice.
        s.notify_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        s.register(&wa);
        s.notify_all();
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (2, 1)
        );
    }
}
