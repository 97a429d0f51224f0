//! The record accumulator (the Java client's `RecordAccumulator`): each
//! partition's open batch and the sealed batches waiting for the sender, the
//! sticky partition of each topic, and what is in flight.

use std::collections::{HashMap, VecDeque};

use rustc_hash::{FxBuildHasher, FxHashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::completion::{Completer, Completion};
use super::{ProducerConfig, Record};
use crate::error::Error;
use crate::protocol::partitioner;
use crate::protocol::records::BatchBuilder;

pub(super) enum Payload {
    Building(BatchBuilder),
    Encoded(Bytes),
}

pub(super) struct Batch {
    pub(super) payload: Payload,
    pub(super) completion: Completer,
    pub(super) reserved: usize,
    pub(super) created: Instant,
    pub(super) deadline: Instant,
    pub(super) attempts: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) last_error: Option<Error>,
    /// Idempotence: the producer id, epoch and first sequence given when
    /// the batch was first sent; kept across its retries.
    pub(super) sequence: Option<Stamp>,
}

/// What an idempotent batch carries in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// This producer's id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProducerId {
    pub id: i64,
    pub epoch: i16,
}

#[derive(Default)]
pub(super) struct PartitionQueue {
    pub(super) open: Option<Batch>,
    /// Batches to send, in order: retried (numbered) ones first.
    pub(super) sealed: VecDeque<Batch>,
    pub(super) in_flight: usize,
    /// Idempotence: the sequence the next new batch gets.
    pub(super) next_sequence: i32,
    /// Idempotence: first sequences of the numbered batches from the oldest
    /// unfinished one on, and whether each is finished. At most five: the
    /// broker remembers a producer's last five batches, so a retry is only
    /// recognised as one if no more than five were numbered since.
    pub(super) window: VecDeque<(i32, bool)>,
    /// Idempotence: the sequence after the last batch the broker stored. A
    /// batch refused as out of order that does not start here only came
    /// before an earlier one being retried (the Java client's rule).
    pub(super) stored_next: i32,
}

/// Batches a producer may have numbered and not finished per partition.
pub(super) const WINDOW_BATCHES: usize = 5;

impl PartitionQueue {
    /// Marks the batch numbered `first` finished and drops finished ones
    /// from the front of the window.
    pub(super) fn finish(&mut self, first: i32) {
        if let Some(e) = self.window.iter_mut().find(|e| e.0 == first) {
            e.1 = true;
        }
        while self.window.front().is_some_and(|e| e.1) {
            self.window.pop_front();
        }
    }

    /// Puts a batch to retry back before the batches not yet sent, after
    /// numbered ones with lower sequences: retries go out in sequence order.
    pub(super) fn requeue(&mut self, b: Batch) {
        let at = match b.sequence {
            Some(s) => self
                .sealed
                .iter()
                .position(|x| x.sequence.is_none_or(|t| t.base_sequence > s.base_sequence))
                .unwrap_or(self.sealed.len()),
            None => 0,
        };
        self.sealed.insert(at, b);
    }
}

pub(super) type Tp = (Arc<str>, i32);

/// A partition named by borrowed parts, to look one up without cloning its
/// topic's `Arc` (an atomic increment and decrement per record). Hashes as
/// the `Tp` tuple does: the name as a `str`, then the index.
#[derive(Hash)]
struct TpRef<'a>(&'a str, i32);

impl hashbrown::Equivalent<Tp> for TpRef<'_> {
    fn equivalent(&self, key: &Tp) -> bool {
        *key.0 == *self.0 && key.1 == self.1
    }
}

#[derive(Default)]
pub(super) struct State {
    // Looked up for every record sent: a fast hash (the keys are topic
    // names this producer chose, not hostile input).
    pub(super) partitions: hashbrown::HashMap<Tp, PartitionQueue, FxBuildHasher>,
    pub(super) sticky: FxHashMap<Arc<str>, i32>,
    /// Partition counts and the client metadata version they were read at.
    pub(super) partition_counts: FxHashMap<Arc<str>, (u64, i32)>,
    pub(super) node_in_flight: HashMap<i32, usize>,
    /// Receivers of every batch sent and not yet answered (for `flush`).
    pub(super) in_flight: HashMap<u64, Arc<Completion>>,
    pub(super) next_request: u64,
    pub(super) flushing: usize,
    pub(super) closing: bool,
    /// Idempotence: the id and epoch new batches are numbered under.
    pub(super) producer: Option<ProducerId>,
    /// Idempotence: a batch failed for good; take the next epoch (and
    /// number from 0 again) once nothing is in flight.
    pub(super) bump_epoch: bool,
}

/// Where [`State::append`] put a record.
pub(super) struct Appended {
    pub completion: Arc<Completion>,
    pub partition: i32,
    /// The record's offset delta in its batch.
    pub delta: i32,
    /// The sender has news: a batch was sealed, or one was started.
    pub wake: bool,
}

impl State {
    /// Appends `record` (of `size` estimated bytes, already reserved) to the
    /// open batch of its partition — chosen here: given, by key hash, or
    /// sticky — sealing the batch when the record does not fit or fills it.
    pub(super) fn append(
        &mut self,
        record: &Record,
        partitions: i32,
        size: usize,
        timestamp: i64,
        config: &ProducerConfig,
    ) -> Appended {
        let topic = &record.topic;
        let sticky = record.partition.is_none() && record.key.is_none();
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partitioner::partition_for_key(key, partitions),
            (None, None) => match self.sticky.get(&**topic) {
                Some(&p) if p < partitions => p,
                _ => {
                    let p = partitioner::next_sticky(None, partitions);
                    self.sticky.insert(topic.clone(), p);
                    p
                }
            },
        };
        // One lookup; the topic's `Arc` is cloned only for a new partition.
        let queue = match self.partitions.entry_ref(&TpRef(topic, partition)) {
            hashbrown::hash_map::EntryRef::Occupied(e) => e.into_mut(),
            hashbrown::hash_map::EntryRef::Vacant(e) => {
                e.insert_with_key((topic.clone(), partition), PartitionQueue::default())
            }
        };
        let mut sealed = false;
        if let Some(open) = &queue.open {
            let Payload::Building(b) = &open.payload else {
                unreachable!("open batches are building")
            };
            if b.record_count() > 0 && b.size() + size > config.batch_size {
                queue.sealed.push_back(queue.open.take().expect("checked"));
                sealed = true;
            }
        }
        let open = queue.open.get_or_insert_with(|| {
            let now = Instant::now();
            Batch {
                payload: Payload::Building(BatchBuilder::new(
                    size.max(config.batch_size.min(64 << 10)),
                )),
                completion: Completer::new(),
                reserved: 0,
                created: now,
                deadline: now + config.delivery_timeout,
                attempts: 0,
                retry_at: None,
                last_error: None,
                sequence: None,
            }
        });
        let Payload::Building(builder) = &mut open.payload else {
            unreachable!("open batches are building")
        };
        let delta = builder.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        open.reserved += size;
        let full = builder.size() >= config.batch_size;
        let completion = open.completion.handle();
        if full {
            queue
                .sealed
                .push_back(queue.open.take().expect("just used"));
            sealed = true;
        }
        if sealed && sticky {
            let next = partitioner::next_sticky(Some(partition), partitions);
            if let Some(p) = self.sticky.get_mut(&**topic) {
                *p = next;
            }
        }
        Appended {
            completion,
            partition,
            delta,
            wake: sealed || delta == 0,
        }
    }
}
