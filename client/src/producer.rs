//! The producer: records are partitioned and appended to per-partition
//! batches in the caller's task; one sender task seals batches by size or
//! linger, groups them by leader into Produce requests (one batch per
//! partition per request, as Kafka brokers require), and resolves each
//! record's [`Delivery`] from the answer. Buffered bytes are bounded
//! (`send` waits for room); retriable errors are retried with backoff after
//! a metadata refresh, until `delivery_timeout`.
//!
//! Ordering: with `max_in_flight_per_partition = 1` records of a partition
//! are written in send order even across retries; with more, a retried batch
//! may land after a later one (as in Kafka without idempotence).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{watch, Notify, Semaphore};

use crate::cluster::Client;
use crate::error::{Error, Result};
use crate::protocol::partitioner;
use crate::protocol::records::{record_size_estimate, BatchBuilder, Compression, Header};

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
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; now if not set.
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.into(),
            value: Some(value.into()),
            ..Record::default()
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

/// A batch's outcome: (base offset, log append time or -1), and when it
/// was known.
type Outcome = Option<(Result<(i64, i64)>, Instant)>;

/// The pending result of one sent record; await it.
#[derive(Debug)]
pub struct Delivery {
    rx: watch::Receiver<Outcome>,
    partition: i32,
    delta: i32,
    timestamp: i64,
}

impl Delivery {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn resolve(&self, outcome: &(Result<(i64, i64)>, Instant)) -> Result<RecordMetadata> {
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
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;
    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            loop {
                let outcome = self.rx.borrow_and_update().clone();
                if let Some(outcome) = outcome {
                    return self.resolve(&outcome);
                }
                if self.rx.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
    }
}

enum Payload {
    Building(BatchBuilder),
    Encoded(Bytes),
}

struct Batch {
    payload: Payload,
    completion: watch::Sender<Outcome>,
    reserved: usize,
    created: Instant,
    deadline: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<Batch>,
    sealed: VecDeque<Batch>,
    in_flight: usize,
}

type Tp = (Arc<str>, i32);

#[derive(Default)]
struct State {
    partitions: HashMap<Tp, PartitionQueue>,
    topics: HashMap<String, Arc<str>>,
    sticky: HashMap<Arc<str>, i32>,
    node_in_flight: HashMap<i32, usize>,
    /// Receivers of every batch sent and not yet answered (for `flush`).
    in_flight: HashMap<u64, watch::Receiver<Outcome>>,
    next_request: u64,
    flushing: usize,
    closing: bool,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    state: Mutex<State>,
    wake: Notify,
    memory: Semaphore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, batch: Batch, outcome: Result<(i64, i64)>) {
        let _ = batch.completion.send(Some((outcome, Instant::now())));
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
        let permits = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            client,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            memory: Semaphore::new(permits),
            config,
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

    /// Queues `record` for sending and returns its pending delivery. Waits
    /// only for metadata of a topic not seen before and for buffer room.
    pub async fn send(&self, record: Record) -> Result<Delivery> {
        let shared = &self.shared;
        let partitions = match shared.client.partition_count(&record.topic) {
            Some(n) => n,
            None => shared.client.ensure_topic(&record.topic).await?,
        };
        if let Some(p) = record.partition {
            if !(0..partitions).contains(&p) {
                return Err(Error::UnknownTopicOrPartition(format!(
                    "{}-{p} (the topic has {partitions} partitions)",
                    record.topic
                )));
            }
        }
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
        shared
            .memory
            .acquire_many(size as u32)
            .await
            .map_err(|_| Error::Closed)?
            .forget();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let config = &shared.config;
        let mut st = shared.lock();
        if st.closing {
            drop(st);
            shared.memory.add_permits(size);
            return Err(Error::Closed);
        }
        let topic = match st.topics.get(&record.topic) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = record.topic.as_str().into();
                st.topics.insert(record.topic.clone(), t.clone());
                t
            }
        };
        let sticky = record.partition.is_none() && record.key.is_none();
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partitioner::partition_for_key(key, partitions),
            (None, None) => match st.sticky.get(&topic) {
                Some(&p) if p < partitions => p,
                _ => {
                    let p = partitioner::next_sticky(None, partitions);
                    st.sticky.insert(topic.clone(), p);
                    p
                }
            },
        };
        let queue = st.partitions.entry((topic.clone(), partition)).or_default();
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
        let now = Instant::now();
        let open = queue.open.get_or_insert_with(|| Batch {
            payload: Payload::Building(BatchBuilder::new(
                size.max(config.batch_size.min(64 << 10)),
            )),
            completion: watch::channel(None).0,
            reserved: 0,
            created: now,
            deadline: now + config.delivery_timeout,
            attempts: 0,
            retry_at: None,
            last_error: None,
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
        let rx = open.completion.subscribe();
        if full {
            queue
                .sealed
                .push_back(queue.open.take().expect("just used"));
            sealed = true;
        }
        if sealed && sticky {
            let next = partitioner::next_sticky(Some(partition), partitions);
            st.sticky.insert(topic, next);
        }
        drop(st);
        if sealed {
            shared.wake.notify_one();
        } else if delta == 0 {
            // A new batch: the sender must arm its linger timer.
            shared.wake.notify_one();
        }
        Ok(Delivery {
            rx,
            partition,
            delta,
            timestamp,
        })
    }

    /// Sends everything queued so far at once and waits until each of those
    /// records is acknowledged or has failed.
    pub async fn flush(&self) {
        let receivers: Vec<watch::Receiver<Outcome>> = {
            let mut st = self.shared.lock();
            st.flushing += 1;
            let mut r: Vec<_> = st.in_flight.values().cloned().collect();
            for q in st.partitions.values() {
                r.extend(
                    q.open
                        .iter()
                        .chain(q.sealed.iter())
                        .map(|b| b.completion.subscribe()),
                );
            }
            r
        };
        self.shared.wake.notify_one();
        for mut rx in receivers {
            while rx.borrow_and_update().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
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

use rill_record::now_ms;

/// A Produce request being assembled for one broker.
struct Outgoing {
    node: i32,
    id: u64,
    batches: Vec<(Tp, Batch)>,
}

async fn sender_loop(shared: Arc<Shared>) {
    loop {
        let (outgoing, next_wake, done, refresh) = collect(&shared, Instant::now());
        if !refresh.is_empty() {
            let client = shared.client.clone();
            let wake_shared = shared.clone();
            tokio::spawn(async move {
                let topics: Vec<&str> = refresh.iter().map(|t| t.as_ref()).collect();
                if let Err(e) = client.refresh(Some(&topics)).await {
                    tracing::debug!(error = %e, "metadata refresh failed");
                }
                wake_shared.wake.notify_one();
            });
        }
        let sent_any = !outgoing.is_empty();
        for o in outgoing {
            tokio::spawn(send_request(shared.clone(), o));
        }
        if done {
            return;
        }
        if sent_any {
            // More batches of the same partitions may be ready to pipeline.
            tokio::task::yield_now().await;
            continue;
        }
        match next_wake {
            Some(at) => {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Picks the batches to send now: at most one per partition per request,
/// grouped by leader, within the in-flight limits. Returns the requests, when
/// to look again, whether the producer is closed and drained, and topics
/// whose leaders are unknown.
fn collect(shared: &Shared, now: Instant) -> (Vec<Outgoing>, Option<Instant>, bool, Vec<Arc<str>>) {
    let config = &shared.config;
    let max_node = shared.client.config().max_in_flight;
    let mut st = shared.lock();
    let st = &mut *st;
    let urgent = st.flushing > 0 || st.closing;
    let mut next_wake: Option<Instant> = None;
    let mut wake_at = |t: Instant| next_wake = Some(next_wake.map_or(t, |w: Instant| w.min(t)));
    let mut by_node: HashMap<i32, Vec<(Tp, Batch)>> = HashMap::new();
    let mut refresh: Vec<Arc<str>> = Vec::new();
    let mut expired: Vec<Batch> = Vec::new();
    for (tp, q) in st.partitions.iter_mut() {
        if let Some(open) = &q.open {
            if urgent || now >= open.created + config.linger {
                q.sealed.push_back(q.open.take().expect("checked"));
            } else {
                wake_at(open.created + config.linger);
            }
        }
        while q.sealed.front().is_some_and(|b| now >= b.deadline) {
            expired.push(q.sealed.pop_front().expect("checked"));
        }
        let Some(head) = q.sealed.front() else {
            continue;
        };
        if let Some(at) = head.retry_at.filter(|&at| at > now) {
            wake_at(at);
            continue;
        }
        if q.in_flight >= config.max_in_flight_per_partition {
            continue;
        }
        let Some(leader) = shared.client.leader(&tp.0, tp.1) else {
            if !refresh.contains(&tp.0) {
                refresh.push(tp.0.clone());
            }
            wake_at(now + config.retry_backoff);
            continue;
        };
        let node_load = st.node_in_flight.get(&leader).copied().unwrap_or(0);
        let group = by_node.entry(leader).or_default();
        if node_load >= max_node && group.is_empty() {
            continue;
        }
        q.in_flight += 1;
        group.push((tp.clone(), q.sealed.pop_front().expect("checked")));
    }
    let mut outgoing = Vec::new();
    for (node, batches) in by_node {
        if batches.is_empty() {
            continue;
        }
        *st.node_in_flight.entry(node).or_default() += 1;
        let id = st.next_request;
        st.next_request += 1;
        for (j, (_, b)) in batches.iter().enumerate() {
            st.in_flight
                .insert(id << 20 | j as u64, b.completion.subscribe());
        }
        outgoing.push(Outgoing { node, id, batches });
    }
    st.partitions
        .retain(|_, q| q.open.is_some() || !q.sealed.is_empty() || q.in_flight > 0);
    let done = st.closing && st.partitions.is_empty() && outgoing.is_empty();
    for b in expired {
        let e = b.last_error.clone().unwrap_or_else(|| {
            Error::Timeout(format!(
                "record not acknowledged within delivery_timeout {:?}",
                config.delivery_timeout
            ))
        });
        shared.complete(b, Err(e));
    }
    (outgoing, next_wake, done, refresh)
}

async fn send_request(shared: Arc<Shared>, mut out: Outgoing) {
    let config = &shared.config;
    let mut fatal: Vec<(usize, Error)> = Vec::new();
    for (i, (_, b)) in out.batches.iter_mut().enumerate() {
        if let Payload::Building(_) = b.payload {
            let Payload::Building(builder) =
                std::mem::replace(&mut b.payload, Payload::Encoded(Bytes::new()))
            else {
                unreachable!()
            };
            match builder.finish(config.compression) {
                Ok(bytes) => b.payload = Payload::Encoded(bytes),
                Err(e) => fatal.push((i, e.into())),
            }
        }
    }
    let result = produce(&shared, &out).await;
    let now = Instant::now();
    let mut retry_topics: Vec<Arc<str>> = Vec::new();
    let mut finished = Vec::new();
    let mut requeue = Vec::new();
    for (i, (tp, mut b)) in out.batches.drain(..).enumerate() {
        let outcome = match fatal.iter().find(|(j, _)| *j == i) {
            Some((_, e)) => Err(e.clone()),
            None => match &result {
                Ok(answers) => answers
                    .get(&(tp.0.to_string(), tp.1))
                    .cloned()
                    .unwrap_or_else(|| {
                        Err(Error::Protocol(format!("no answer for {}-{}", tp.0, tp.1)))
                    }),
                Err(e) => Err(e.clone()),
            },
        };
        match outcome {
            Err(e) if e.is_retriable() && now + config.retry_backoff < b.deadline => {
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %e, attempt = b.attempts, "retrying a batch");
                if !retry_topics.contains(&tp.0) {
                    retry_topics.push(tp.0.clone());
                }
                b.attempts += 1;
                b.retry_at = Some(now + config.retry_backoff);
                b.last_error = Some(e);
                requeue.push((tp, b));
            }
            outcome => finished.push((tp, b, outcome)),
        }
    }
    if !retry_topics.is_empty() {
        let topics: Vec<&str> = retry_topics.iter().map(|t| t.as_ref()).collect();
        if let Err(e) = shared.client.refresh(Some(&topics)).await {
            tracing::debug!(error = %e, "metadata refresh before a retry failed");
        }
    }
    {
        let mut st = shared.lock();
        if let Some(n) = st.node_in_flight.get_mut(&out.node) {
            *n = n.saturating_sub(1);
        }
        let id = out.id;
        st.in_flight.retain(|k, _| k >> 20 != id);
        for (tp, b) in requeue.into_iter().rev() {
            let q = st.partitions.entry(tp).or_default();
            q.in_flight -= 1;
            q.sealed.push_front(b);
        }
        for (tp, _, _) in &finished {
            if let Some(q) = st.partitions.get_mut(tp) {
                q.in_flight -= 1;
            }
        }
    }
    for (_, b, outcome) in finished {
        shared.complete(b, outcome);
    }
    shared.wake.notify_one();
}

type Answers = HashMap<(String, i32), Result<(i64, i64)>>;

async fn produce(shared: &Shared, out: &Outgoing) -> Result<Answers> {
    let config = &shared.config;
    let conn = shared.client.connection(out.node).await?;
    let version = conn.version(ApiKey::Produce)?;
    let mut request = ProduceRequest::default();
    request.acks = config.acks.wire();
    request.timeout_ms = config.ack_timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, b) in &out.batches {
        let Payload::Encoded(bytes) = &b.payload else {
            continue;
        };
        let mut p = PartitionProduceData::default();
        p.index = tp.1;
        p.records = Some(bytes.clone());
        match topics.iter_mut().find(|t| t.name.0.as_str() == &*tp.0) {
            Some(t) => t.partition_data.push(p),
            None => {
                let mut t = TopicProduceData::default();
                t.name = TopicName(StrBytes::from_string(tp.0.to_string()));
                t.partition_data.push(p);
                topics.push(t);
            }
        }
    }
    request.topic_data = topics;
    let mut answers = Answers::new();
    if config.acks == Acks::None {
        conn.send_no_response(&request, version).await?;
        for (tp, _) in &out.batches {
            answers.insert((tp.0.to_string(), tp.1), Ok((-1, -1)));
        }
        return Ok(answers);
    }
    let response = conn.send_versioned(&request, version).await?;
    for t in response.responses {
        for p in t.partition_responses {
            let key = (t.name.0.to_string(), p.index);
            let outcome = if p.error_code == 0 {
                Ok((p.base_offset, p.log_append_time_ms))
            } else {
                let message = p.error_message.map(|m| m.to_string());
                Err(Error::kafka(
                    p.error_code,
                    format!("producing to {}-{}", key.0, key.1),
                    message,
                ))
            };
            answers.insert(key, outcome);
        }
    }
    Ok(answers)
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
        let (tx, rx) = watch::channel(None);
        let d = Delivery {
            rx,
            partition: 3,
            delta: 7,
            timestamp: 55,
        };
        let at = Instant::now();
        tx.send(Some((Ok((100, -1)), at))).unwrap();
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
