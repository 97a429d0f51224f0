//! The producer: records are partitioned and appended to per-partition
//! batches in the caller's task; one sender task seals batches by size or
//! linger, groups them by leader into Produce requests (one batch per
//! partition per request, as Kafka brokers require), and resolves each
//! record's [`Delivery`] from the answer. Buffered bytes are bounded
//! (`send` waits for room); retriable errors are retried with backoff after
//! a metadata refresh, until `delivery_timeout`.
//!
//! Idempotence (on by default with acks=all, as in the Java client): the
//! producer gets a producer id from the broker (InitProducerId) and numbers
//! each partition's batches when it first sends them; a retried batch keeps
//! its numbers, so the broker stores it once and in order even with five
//! batches of a partition in flight. A batch that fails for good leaves a
//! hole in its partition's numbers: the producer then waits for its requests
//! in flight, takes the next epoch of its id and numbers from 0 again.
//! Without idempotence, `max_in_flight_per_partition = 1` keeps send order
//! across retries; with more, a retried batch may land after a later one.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_record::now_ms;
use tokio::sync::{Notify, Semaphore};

use crate::cluster::Client;
use crate::error::{Error, Result};
use crate::protocol::records::{record_size_estimate, Compression, Header};

mod accumulator;
mod completion;
mod metrics;
mod sender;

pub use metrics::ProducerMetrics;

use accumulator::{Batch, State};
use completion::{Completion, Outcome};
use sender::sender_loop;

/// How many replicas must have a record before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: no answer, offsets unknown.
    None,
    /// The leader has written it.
    Leader,
    /// Every in-sync replica has it (the durable choice).
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = Error;
    fn from_str(s: &str) -> Result<Acks> {
        match s {
            "0" | "none" => Ok(Acks::None),
            "1" | "leader" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            _ => Err(Error::InvalidArgument(format!(
                "acks must be 0, 1 or all, not {s:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// A batch is sent once it holds this many (uncompressed) bytes.
    pub batch_size: usize,
    pub compression: Compression,
    /// Bytes of records buffered and in flight; `send` waits beyond this.
    pub buffer_memory: usize,
    /// Batches of one partition in flight at once.
    pub max_in_flight_per_partition: usize,
    pub retry_backoff: Duration,
    /// A record fails if not acknowledged within this time of `send`.
    pub delivery_timeout: Duration,
    /// The broker's time limit for replication (Produce `timeout_ms`).
    pub ack_timeout: Duration,
    /// Store each record exactly once and in order across retries (Kafka's
    /// `enable.idempotence`). Takes effect with `acks = All` only; needs
    /// `max_in_flight_per_partition` ≤ 5.
    pub idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 512 << 10,
            compression: Compression::None,
            buffer_memory: 64 << 20,
            max_in_flight_per_partition: 5,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(30),
            idempotence: true,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Shared, so sending many records to one topic copies no name.
    pub topic: Arc<str>,
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; now if not set.
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Record {
        self.timestamp = Some(ms);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with `acks = none`.
    pub offset: i64,
    pub timestamp: i64,
    /// When the producer learned the outcome (the answer to the batch's
    /// request): publish latency without the delay of awaiting deliveries
    /// in order.
    pub acknowledged_at: Instant,
}

/// The pending result of one sent record; await it.
#[derive(Debug)]
pub struct Delivery {
    completion: Arc<Completion>,
    partition: i32,
    delta: i32,
    timestamp: i64,
}

impl Delivery {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn resolve(&self, outcome: &Outcome) -> Result<RecordMetadata> {
        let (base, append_time) = outcome.0.clone()?;
        Ok(RecordMetadata {
            partition: self.partition,
            offset: if base < 0 {
                -1
            } else {
                base + self.delta as i64
            },
            timestamp: if append_time >= 0 {
                append_time
            } else {
                self.timestamp
            },
            acknowledged_at: outcome.1,
        })
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata>;
    type IntoFuture = DeliveryFuture;
    fn into_future(self) -> DeliveryFuture {
        DeliveryFuture {
            delivery: self,
            waiting: None,
        }
    }
}

/// Awaits a [`Delivery`]: answers at once, without allocating, when the
/// batch's outcome is known (the common case for a record awaited after
/// later ones were sent), and waits for it otherwise.
pub struct DeliveryFuture {
    delivery: Delivery,
    waiting: Option<Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.waiting.is_none() {
            let d = &self.delivery;
            if let Some(outcome) = d.completion.get() {
                return std::task::Poll::Ready(d.resolve(outcome));
            }
            let d = Delivery {
                completion: d.completion.clone(),
                ..*d
            };
            self.waiting = Some(Box::pin(async move {
                let outcome = d.completion.wait().await;
                d.resolve(outcome)
            }));
        }
        self.waiting.as_mut().expect("set above").as_mut().poll(cx)
    }
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    requests: metrics::RequestTally,
    /// Idempotence asked for and in effect (acks=all, broker supports it).
    idempotent: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    wake: Notify,
    memory: Semaphore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, batch: Batch, outcome: Result<(i64, i64)>) {
        batch.completion.complete(outcome);
        self.memory.add_permits(batch.reserved);
    }
}

/// Sends records; cheap to share behind an `Arc` (all methods take `&self`).
pub struct Producer {
    shared: Arc<Shared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Producer {
    /// A producer over `client`; starts its sender task on the current
    /// tokio runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.buffer_memory < config.batch_size {
            return Err(Error::InvalidArgument(
                "batch_size must be positive and at most buffer_memory".into(),
            ));
        }
        let idempotent = config.idempotence && config.acks == Acks::All;
        if idempotent && !(1..=5).contains(&config.max_in_flight_per_partition) {
            return Err(Error::InvalidArgument(
                "idempotence keeps order with at most 5 batches in flight per partition".into(),
            ));
        }
        let permits = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            client,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            memory: Semaphore::new(permits),
            idempotent: idempotent.into(),
            config,
            requests: metrics::RequestTally::default(),
        });
        let sender = tokio::spawn(sender_loop(shared.clone()));
        Ok(Producer {
            shared,
            sender: Mutex::new(Some(sender)),
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Its Produce requests so far (the Java client's `request-latency-avg`,
    /// `requests-in-flight`, `records-per-request-avg` and the like come
    /// from the difference of two of these).
    pub fn metrics(&self) -> ProducerMetrics {
        self.shared.requests.snapshot()
    }

    /// The producer id and epoch batches are stamped with, once the broker
    /// has given one; `None` without idempotence.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.shared.lock().producer.map(|p| (p.id, p.epoch))
    }

    /// Queues `record` for sending and returns its pending delivery. Waits
    /// only for metadata of a topic not seen before and for buffer room.
    pub async fn send(&self, record: Record) -> Result<Delivery> {
        let shared = &self.shared;
        let size = record_size_estimate(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        if size > shared.config.buffer_memory {
            return Err(Error::kafka(
                kafka_protocol::ResponseError::MessageTooLarge.code(),
                format!("a record of {size} bytes exceeds buffer_memory"),
                None,
            ));
        }
        // The partition count from this producer's own copy, valid while
        // the client's metadata has not changed since. The common case —
        // count known, buffer room free — takes one lock (the producer's).
        let version = shared.client.metadata_version();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        {
            let mut st = shared.lock();
            let cached = st
                .partition_counts
                .get(&*record.topic)
                .and_then(|&(v, n)| (v == version).then_some(n));
            if let Some(partitions) = cached {
                let partition_ok = record
                    .partition
                    .is_none_or(|p| (0..partitions).contains(&p));
                if partition_ok && !st.closing {
                    if let Ok(permit) = shared.memory.try_acquire_many(size as u32) {
                        permit.forget();
                        let appended =
                            st.append(&record, partitions, size, timestamp, &shared.config);
                        drop(st);
                        return Ok(self.delivered(appended, timestamp));
                    }
                }
            }
        }
        let partitions = match shared.client.partition_count(&record.topic) {
            Some(n) => n,
            None => shared.client.ensure_topic(&record.topic).await?,
        };
        shared
            .lock()
            .partition_counts
            .insert(record.topic.clone(), (version, partitions));
        if let Some(p) = record.partition {
            if !(0..partitions).contains(&p) {
                return Err(Error::UnknownTopicOrPartition(format!(
                    "{}-{p} (the topic has {partitions} partitions)",
                    record.topic
                )));
            }
        }
        match shared.memory.try_acquire_many(size as u32) {
            Ok(permit) => permit.forget(),
            Err(_) => shared
                .memory
                .acquire_many(size as u32)
                .await
                .map_err(|_| Error::Closed)?
                .forget(),
        }
        let config = &shared.config;
        let mut st = shared.lock();
        if st.closing {
            drop(st);
            shared.memory.add_permits(size);
            return Err(Error::Closed);
        }
        let appended = st.append(&record, partitions, size, timestamp, config);
        drop(st);
        Ok(self.delivered(appended, timestamp))
    }

    /// The delivery of a record just appended; wakes the sender if it has
    /// news.
    fn delivered(&self, appended: accumulator::Appended, timestamp: i64) -> Delivery {
        if appended.wake {
            // A sealed batch to send, or a new one whose linger timer the
            // sender must arm.
            self.shared.wake.notify_one();
        }
        Delivery {
            completion: appended.completion,
            partition: appended.partition,
            delta: appended.delta,
            timestamp,
        }
    }

    /// Sends everything queued so far at once and waits until each of those
    /// records is acknowledged or has failed.
    pub async fn flush(&self) {
        let receivers: Vec<Arc<Completion>> = {
            let mut st = self.shared.lock();
            st.flushing += 1;
            let mut r: Vec<_> = st.in_flight.values().cloned().collect();
            for q in st.partitions.values() {
                r.extend(
                    q.open
                        .iter()
                        .chain(q.sealed.iter())
                        .map(|b| b.completion.handle()),
                );
            }
            r
        };
        self.shared.wake.notify_one();
        for c in receivers {
            c.wait().await;
        }
        self.shared.lock().flushing -= 1;
    }

    /// Flushes, then stops the sender task. Later sends fail with `Closed`.
    pub async fn close(&self) {
        self.flush().await;
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let handle = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender drains what is queued, then ends.
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse() {
        assert_eq!("all".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("-1".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("0".parse::<Acks>().unwrap(), Acks::None);
        assert!("2".parse::<Acks>().is_err());
    }

    #[test]
    fn a_delivery_maps_its_batch_outcome_to_its_own_offset() {
        let c = completion::Completer::new();
        let d = Delivery {
            completion: c.handle(),
            partition: 3,
            delta: 7,
            timestamp: 55,
        };
        c.complete(Ok((100, -1)));
        let at = c.handle().get().unwrap().1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let m = rt.block_on(d.into_future()).unwrap();
        assert_eq!(
            m,
            RecordMetadata {
                partition: 3,
                offset: 107,
                timestamp: 55,
                acknowledged_at: at,
            }
        );
    }
}
