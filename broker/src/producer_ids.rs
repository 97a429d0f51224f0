//! Producer ids for idempotent producers (InitProducerId), handed out from
//! blocks that the controller allocates durably (`AllocateProducerIds` in
//! the cluster metadata), so an id is never given out twice — not after a
//! restart, and, once there are several brokers, not by two of them. The
//! allocator only knows [`ProducerIdBlocks`]: today this broker's own
//! controller, later the controller quorum.

use std::cell::RefCell;
use std::ops::Range;

use crate::cluster::{ChangeError, CommandError};

/// Ids fetched from the controller at a time (Kafka's block size).
pub const BLOCK_IDS: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("allocating producer ids: {0}")]
    Change(#[from] ChangeError),
    #[error("allocating producer ids: {0}")]
    Command(#[from] CommandError),
}

/// Where blocks of producer ids come from.
#[allow(async_fn_in_trait)] // single-threaded executors: futures need not be Send
pub trait ProducerIdBlocks {
    /// `count` ids no one else has or will have, durably recorded as given.
    async fn allocate(&self, count: i64) -> Result<Range<i64>, ProducerIdError>;
}

/// The ids of the current block not yet handed out. Lives on shard 0.
#[derive(Default)]
pub struct ProducerIds {
    block: RefCell<Range<i64>>,
    /// One block request at a time.
    refill: async_lock::Mutex<()>,
}

impl ProducerIds {
    /// The next unused producer id, fetching a new block when this one is spent.
    pub async fn next(&self, blocks: &impl ProducerIdBlocks) -> Result<i64, ProducerIdError> {
        let _one_at_a_time = self.refill.lock().await;
        if self.block.borrow().is_empty() {
            *self.block.borrow_mut() = blocks.allocate(BLOCK_IDS).await?;
        }
        let mut block = self.block.borrow_mut();
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Default)]
    struct Counter {
        next: Cell<i64>,
        calls: Cell<usize>,
    }

    impl ProducerIdBlocks for Counter {
        async fn allocate(&self, count: i64) -> Result<Range<i64>, ProducerIdError> {
            self.calls.set(self.calls.get() + 1);
            let start = self.next.get();
            self.next.set(start + count);
            Ok(start..start + count)
        }
    }

    #[test]
    fn ids_are_unique_and_blocks_fetched_when_spent() {
        futures_lite::future::block_on(async {
            let source = Counter::default();
            let ids = ProducerIds::default();
            let mut seen = Vec::new();
            for _ in 0..2 * BLOCK_IDS + 1 {
                seen.push(ids.next(&source).await.unwrap());
            }
            assert_eq!(source.calls.get(), 3);
            let mut sorted = seen.clone();
            sorted.dedup();
            assert_eq!(sorted, seen);
            assert_eq!(seen, (0..2 * BLOCK_IDS + 1).collect::<Vec<_>>());
            // A restarted broker gets a fresh block past everything given.
            let restarted = ProducerIds::default();
            assert_eq!(restarted.next(&source).await.unwrap(), 3 * BLOCK_IDS);
        });
    }
}
