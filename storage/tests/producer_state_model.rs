//! The producer-state rules against a model that keeps every batch ever
//! stored (no window, no snapshot): random retries, reorders, gaps, epoch
//! bumps, expirations and restarts from a snapshot plus the log after it.

use proptest::prelude::*;
use rill_storage::batch::increment_sequence;
use rill_storage::producer_state::{
    ProducerBatch, ProducerStates, SequenceError, Verdict, BATCHES_KEPT,
};

const EXPIRATION_MS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    /// Producer `p` sends its next batch of `n` records.
    Next { p: usize, n: i32 },
    /// Producer `p` sends again one of its batches, `back` from the newest.
    Retry { p: usize, back: usize },
    /// Producer `p` skips ahead (a lost batch) or sends from the future.
    Gap { p: usize, skip: i32 },
    /// Producer `p` gets a new epoch (restarts its sequences at 0).
    Bump { p: usize },
    /// Producer `p` keeps sending from an epoch it has left.
    Stale { p: usize },
    /// Time passes; idle producers may expire.
    Tick { ms: i64 },
    /// The log rolls: a snapshot of the state at the log end.
    Roll,
    /// The broker restarts: state = newest snapshot + the log after it.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..4i32).prop_map(|(p, n)| Op::Next { p, n }),
        3 => (0..3usize, 0..8usize).prop_map(|(p, back)| Op::Retry { p, back }),
        1 => (0..3usize, 1..3i32).prop_map(|(p, skip)| Op::Gap { p, skip }),
        1 => (0..3usize).prop_map(|p| Op::Bump { p }),
        1 => (0..3usize).prop_map(|p| Op::Stale { p }),
        1 => (1..8_000i64).prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Roll),
        1 => Just(Op::Restart),
    ]
}

/// A producer as its client sees itself.
#[derive(Debug, Clone, Default)]
struct Client {
    epoch: i16,
    next_seq: i32,
    /// Batches sent in the current epoch, oldest first.
    sent: Vec<(i32, i32)>,
}

/// One stored batch.
#[derive(Debug, Clone, Copy)]
struct Stored {
    batch: ProducerBatch,
    base_offset: i64,
}

/// Everything ever stored, and when each producer was last forgotten.
#[derive(Default)]
struct Model {
    log: Vec<Stored>,
    /// Log length when the producer was last expired: older batches are gone.
    forgotten_at: [usize; 3],
}

impl Model {
    fn verdict(&self, b: &ProducerBatch) -> Result<Verdict, SequenceError> {
        let p = b.producer_id as usize;
        if b.first_seq < 0 || b.epoch < 0 {
            return Err(SequenceError::Invalid {
                producer_id: b.producer_id,
                epoch: b.epoch,
                first_seq: b.first_seq,
            });
        }
        let mine: Vec<&Stored> = self.log[self.forgotten_at[p]..]
            .iter()
            .filter(|s| s.batch.producer_id == b.producer_id)
            .collect();
        let Some(last) = mine.last() else {
            return Ok(Verdict::Append);
        };
        let current = last.batch.epoch;
        if b.epoch < current {
            return Err(SequenceError::StaleEpoch {
                producer_id: b.producer_id,
                epoch: b.epoch,
                current,
            });
        }
        if b.epoch > current {
            return if b.first_seq == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id: b.producer_id,
                    epoch: b.epoch,
                    first_seq: b.first_seq,
                    last_seq: None,
                })
            };
        }
        let same_epoch: Vec<&&Stored> = mine.iter().filter(|s| s.batch.epoch == current).collect();
        let window = &same_epoch[same_epoch.len().saturating_sub(BATCHES_KEPT)..];
        if let Some(d) = window
            .iter()
            .find(|s| s.batch.first_seq == b.first_seq && s.batch.last_seq == b.last_seq)
        {
            return Ok(Verdict::Duplicate {
                base_offset: d.base_offset,
                last_offset: d.base_offset + d.batch.offset_delta as i64,
            });
        }
        let expected = increment_sequence(last.batch.last_seq, 1);
        if b.first_seq == expected {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                producer_id: b.producer_id,
                epoch: b.epoch,
                first_seq: b.first_seq,
                last_seq: Some(last.batch.last_seq),
            })
        }
    }
}

fn batch(p: usize, epoch: i16, first: i32, n: i32, now: i64) -> ProducerBatch {
    ProducerBatch {
        producer_id: p as i64,
        epoch,
        first_seq: first,
        last_seq: increment_sequence(first, n - 1),
        offset_delta: n - 1,
        max_timestamp: now,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_state_machine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut model = Model::default();
        let mut live = ProducerStates::default();
        let mut clients: [Client; 3] = Default::default();
        let mut log_end = 0i64;
        let mut now = 1_000_000i64;
        // (log length, bytes) of the newest snapshot.
        let mut snapshot: (usize, Vec<u8>) = (0, ProducerStates::default().encode(0));
        for op in ops {
            let sent = match op {
                Op::Next { p, n } => {
                    let c = &mut clients[p];
                    let b = batch(p, c.epoch, c.next_seq, n, now);
                    c.sent.push((b.first_seq, n));
                    c.next_seq = increment_sequence(b.first_seq, n);
                    Some(b)
                }
                Op::Retry { p, back } => {
                    let c = &clients[p];
                    (back < c.sent.len()).then(|| {
                        let (first, n) = c.sent[c.sent.len() - 1 - back];
                        batch(p, c.epoch, first, n, now)
                    })
                }
                Op::Gap { p, skip } => {
                    let c = &clients[p];
                    Some(batch(p, c.epoch, c.next_seq + skip, 1, now))
                }
                Op::Bump { p } => {
                    let c = &mut clients[p];
                    c.epoch += 1;
                    c.next_seq = 0;
                    c.sent.clear();
                    None
                }
                Op::Stale { p } => {
                    let c = &clients[p];
                    (c.epoch > 0).then(|| batch(p, c.epoch - 1, 0, 1, now))
                }
                Op::Tick { ms } => {
                    now += ms;
                    let expired = live.expire(now, EXPIRATION_MS);
                    let mut model_expired = 0;
                    for p in 0..3 {
                        let last = model.log[model.forgotten_at[p]..]
                            .iter()
                            .rev()
                            .find(|s| s.batch.producer_id == p as i64);
                        if let Some(s) = last {
                            if now - s.batch.max_timestamp >= EXPIRATION_MS as i64 {
                                model.forgotten_at[p] = model.log.len();
                                model_expired += 1;
                            }
                        }
                    }
                    prop_assert_eq!(expired, model_expired);
                    if expired > 0 {
                        // The log snapshots when state is dropped, so a restart
                        // cannot bring expired producers back.
                        snapshot = (model.log.len(), live.encode(log_end));
                    }
                    None
                }
                Op::Roll => {
                    snapshot = (model.log.len(), live.encode(log_end));
                    None
                }
                Op::Restart => {
                    let (at, bytes) = &snapshot;
                    let (offset, mut state) = ProducerStates::decode(bytes).expect("intact snapshot");
                    for s in &model.log[*at..] {
                        prop_assert!(s.base_offset >= offset);
                        state.record(&s.batch, s.base_offset);
                    }
                    prop_assert_eq!(&state, &live);
                    live = state;
                    None
                }
            };
            let Some(b) = sent else { continue };
            let verdict = live.check(&b);
            prop_assert_eq!(&verdict, &model.verdict(&b), "batch {:?}", b);
            if verdict == Ok(Verdict::Append) {
                live.record(&b, log_end);
                model.log.push(Stored { batch: b, base_offset: log_end });
                log_end += b.offset_delta as i64 + 1;
            }
        }
        // Exactly once: within one epoch since it was last forgotten, a
        // producer's stored sequences follow each other without repeats.
        for p in 0..3 {
            let mut last: Option<(i16, i32)> = None;
            for s in model.log[model.forgotten_at[p]..].iter().filter(|s| s.batch.producer_id == p as i64) {
                if let Some((epoch, seq)) = last {
                    if epoch == s.batch.epoch {
                        prop_assert_eq!(s.batch.first_seq, seq.wrapping_add(1));
                    }
                }
                last = Some((s.batch.epoch, s.batch.last_seq));
            }
        }
    }
}
