//! The process's budget of open files for partition logs.
//!
//! Every file a log opens on the real disk ([`DmaDisk`](crate::io::DmaDisk))
//! takes a slot from one process-wide count, and an open beyond the budget
//! fails with [`BudgetExhausted`] before the kernel is asked. The broker sets
//! the budget below the open-file limit, so partitions can never take the
//! last descriptors: the listener's accepts, the metadata store's saves and
//! signal handling always find one. Opens are rare (a partition's open, a
//! segment roll, a cleaner pass), so one shared atomic costs nothing on the
//! data path.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of open files against a budget.
#[derive(Debug)]
pub struct Budget {
    open: AtomicUsize,
    budget: AtomicUsize,
}

/// The process's budget, which [`DmaDisk`](crate::io::DmaDisk) draws on.
pub static PROCESS: Budget = Budget::new(usize::MAX);

/// Sets how many files partition logs may hold open at once.
pub fn set_budget(files: usize) {
    PROCESS.budget.store(files, Ordering::Relaxed);
}

/// How many files partition logs may hold open at once (`usize::MAX`: no
/// budget was set).
pub fn budget() -> usize {
    PROCESS.budget()
}

/// How many files partition logs hold open now.
pub fn open() -> usize {
    PROCESS.open()
}

/// How many more files partition logs may open.
pub fn available() -> usize {
    PROCESS.available()
}

/// The budget of open files for partition logs is used up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the open-file budget for partition logs ({budget} files) is used up")]
pub struct BudgetExhausted {
    pub budget: usize,
}

impl From<BudgetExhausted> for std::io::Error {
    fn from(e: BudgetExhausted) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::QuotaExceeded, e)
    }
}

/// An open file's place in a budget, given back when dropped.
#[derive(Debug)]
pub struct Slot(&'static Budget);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Budget {
    pub const fn new(files: usize) -> Budget {
        Budget {
            open: AtomicUsize::new(0),
            budget: AtomicUsize::new(files),
        }
    }

    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn available(&self) -> usize {
        self.budget().saturating_sub(self.open())
    }

    /// Takes a slot for a file about to be opened.
    pub fn take(&'static self) -> Result<Slot, BudgetExhausted> {
        let budget = self.budget();
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= budget {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(BudgetExhausted { budget });
        }
        Ok(Slot(self))
    }
}

/// Whether `e` says that files could not be opened for want of
/// descriptors: this budget, or the process's or the system's limit.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        static TEST: Budget = Budget::new(2);
        let a = TEST.take().unwrap();
        let b = TEST.take().unwrap();
        assert_eq!(TEST.available(), 0);
        let e = TEST.take().unwrap_err();
        assert_eq!(e.budget, 2);
        assert!(is_exhaustion(&std::io::Error::from(e)));
        drop(a);
        assert_eq!(TEST.available(), 1);
        drop(b);
        assert_eq!(TEST.open(), 0);
    }
}
