//! Running one workload against a cluster: topics, producer and consumer
//! tasks, the progress line, and the numbers at the end.
//!
//! Every message carries its (intended) send time in its first 8 bytes as
//! microseconds since the run's start, so consumers compute end-to-end
//! latency. At a fixed rate the send time is when the message was due, not
//! when it went out, so a stalled producer shows up in the latencies
//! (coordinated omission corrected); at "max" rate it is the moment of `send`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How early a paced producer stops sleeping before a send is due (the
/// timer's resolution); it yields the rest of the way.
const TIMER_SLACK_US: u64 = 1000;

/// At max rate, the producer loop reads the clock once per this many sends.
const MAX_RATE_CLOCK_EVERY: u64 = 8;

/// Longest a catch-up read of the backlog may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// Keys up to this many are made once, not formatted per message.
const KEY_TABLE_MAX: u64 = 1 << 20;

/// The keys "key-0" … of a workload's key space, when small enough to keep,
/// as static slices: cloning one costs nothing (a shared `Bytes` would cost
/// an atomic increment and decrement per message, and with many keys a
/// cache miss on each key's count). Made once per key count and process.
fn key_table(w: &Workload) -> &'static [Bytes] {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static TABLES: OnceLock<Mutex<HashMap<u64, &'static [Bytes]>>> = OnceLock::new();
    let count = match &w.keys {
        crate::workload::Keys::Distribution(
            crate::workload::KeyDistribution::Uniform { count }
            | crate::workload::KeyDistribution::Zipf { count, .. },
        ) => *count,
        crate::workload::Keys::None(_) => 0,
    };
    if count == 0 || count > KEY_TABLE_MAX {
        return &[];
    }
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tables.entry(count).or_insert_with(|| {
        let keys: Vec<Bytes> = (0..count)
            .map(|k| {
                let name: &'static [u8] = format!("key-{k}").into_bytes().leak();
                Bytes::from_static(name)
            })
            .collect();
        keys.leak()
    })
}

fn key_bytes(table: &[Bytes], k: u64) -> Bytes {
    match table.get(k as usize) {
        Some(b) => b.clone(),
        None => Bytes::from(format!("key-{k}")),
    }
}

use bytes::{BufMut, Bytes, BytesMut};
use rill_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Delivery, GroupConfig,
    GroupConsumer, GroupProtocol, NewTopic, Offset, OffsetReset, Producer, ProducerConfig,
    ProducerMetrics, Record, TopicPartition,
};
use serde::Serialize;

use crate::stats::{LatencySummary, RunStats, Tally};
use crate::workload::{Sampler, Workload};

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: u64,
    pub measuring: bool,
    pub produce_msgs: u64,
    pub produce_mb: f64,
    pub consume_msgs: u64,
    pub consume_mb: f64,
    pub publish_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub backlog: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    fn of(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let s = seconds.max(1e-9);
        Throughput {
            messages,
            bytes,
            seconds,
            msgs_per_s: messages as f64 / s,
            mb_per_s: bytes as f64 / 1e6 / s,
        }
    }
}

/// The producers' Produce requests from the start of the measured phase
/// until the producers are done (their last requests answered), from
/// rill-client's [`ProducerMetrics`]: how many were in flight and how long
/// each took tells whether a run was bound by its round trips (throughput
/// = requests in flight × bytes per request ÷ round trip).
#[derive(Debug, Clone, Serialize)]
pub struct RequestSummary {
    pub per_second: f64,
    pub batches_per_request: f64,
    pub bytes_per_request: f64,
    /// From a request written to its answer read, as the client sees it.
    pub round_trip_mean_ms: f64,
    pub round_trip_max_ms: f64,
    /// Requests in flight on average over all producers (round trips
    /// summed ÷ the phase's length).
    pub in_flight_mean: f64,
    /// The most the producers may have in flight to one broker.
    pub in_flight_max: usize,
}

impl RequestSummary {
    fn of(m: &ProducerMetrics, seconds: f64, in_flight_max: usize) -> Option<RequestSummary> {
        let mean = m.round_trip_mean()?;
        let s = seconds.max(1e-9);
        let per = |v: u64| v as f64 / m.requests.max(1) as f64;
        Some(RequestSummary {
            per_second: m.answered as f64 / s,
            batches_per_request: per(m.batches),
            bytes_per_request: per(m.bytes),
            round_trip_mean_ms: mean.as_secs_f64() * 1e3,
            round_trip_max_ms: m.round_trip_max.as_secs_f64() * 1e3,
            in_flight_mean: m.round_trip_total.as_secs_f64() / s,
            in_flight_max,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub produce: Throughput,
    /// Over all subscriptions.
    pub consume: Throughput,
    pub publish_latency: LatencySummary,
    pub end_to_end_latency: LatencySummary,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Messages produced but not consumed by every subscription when the run
    /// ended (0 when consumers kept up and drained).
    pub undelivered: u64,
    /// Bytes produced over the whole run (warm-up and measured phase).
    pub produced_bytes_all: u64,
    /// The producers' Produce requests from the measured phase on.
    pub produce_requests: Option<RequestSummary>,
    pub timeline: Vec<Second>,
}

#[derive(Clone)]
pub struct RunOptions {
    pub brokers: String,
    /// Printed every second to stderr.
    pub progress: bool,
    /// Longest wait for consumers to catch up after producers stop.
    pub drain_timeout: Duration,
}

fn now_us(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

pub async fn run(w: &Workload, o: &RunOptions) -> anyhow::Result<RunResult> {
    let client = Client::connect(ClientConfig::new(&o.brokers)).await?;
    let admin = Admin::new(client.clone());
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let topics = w.topic_names(&prefix);
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, w.partitions_per_topic))
        .collect();
    for (name, r) in admin.create_topics(&new).await? {
        r.map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
    for t in &topics {
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.ensure_topic(t).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "topic {t} did not appear");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let result = drive(w, o, &client, &topics, &prefix).await;
    if w.group_protocol != "none" {
        // The members have left; the groups' committed offsets go too.
        let groups: Vec<String> = (0..w.subscriptions)
            .map(|s| format!("{prefix}-s{s}"))
            .collect();
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        if let Err(e) = admin.delete_groups(&names).await {
            eprintln!("rill-bench: deleting the benchmark groups failed: {e}");
        }
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(e) = admin.delete_topics(&names).await {
        eprintln!("rill-bench: deleting the benchmark topics failed: {e}");
    }
    result
}

/// The consumers of a run: one task per consumer of each subscription.
struct ConsumerSet {
    topics: Vec<String>,
    partitions: Vec<TopicPartition>,
    /// Subscription s is the group `{group_prefix}-s{s}`.
    group_prefix: String,
    per_subscription: Vec<Arc<AtomicU64>>,
    stats: Arc<RunStats>,
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    first: Arc<AtomicU64>,
    /// The run's clock: set once the consumers are in place.
    base: Arc<OnceLock<Instant>>,
    warmup_us: u64,
    end_us: u64,
}

/// One consumer of a subscription: a group member, or (group_protocol
/// "none") a consumer of the partitions the harness gave it.
enum Reader {
    Assigned(Box<Consumer>),
    Member(Box<GroupConsumer>),
}

impl Reader {
    async fn poll(&mut self, timeout: Duration) -> rill_client::Result<Vec<ConsumerRecord>> {
        match self {
            Reader::Assigned(c) => c.poll(timeout).await,
            Reader::Member(m) => m.poll(timeout).await,
        }
    }

    fn owned(&self) -> usize {
        match self {
            Reader::Assigned(c) => c.assignment().len(),
            Reader::Member(m) => m.assignment().len(),
        }
    }

    async fn close(self) {
        if let Reader::Member(m) = self {
            let _ = m.close().await;
        }
    }
}

/// Longest wait for a subscription's group to give every partition out.
const GROUP_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

impl ConsumerSet {
    /// Starts each subscription's consumers, reading from the beginning:
    /// members of one consumer group per subscription (pub-sub across
    /// subscriptions, a queue within one), or the partitions split among
    /// them. Returns once every partition has its consumer.
    async fn start(
        &self,
        w: &Workload,
        client: &Client,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let (warmup_us, end_us, catch_up) = (self.warmup_us, self.end_us, w.catch_up);
        let fetch = ConsumerConfig {
            start: Offset::Beginning,
            fetch_max_wait: Duration::from_millis(100),
            max_partition_fetch_bytes: w.fetch_partition_bytes,
            fetch_max_bytes: w.fetch_response_bytes,
            ..ConsumerConfig::default()
        };
        let mut tasks = Vec::new();
        // Per subscription, how many partitions each of its consumers owns.
        let mut owned: Vec<Vec<Arc<AtomicU64>>> = Vec::new();
        for s in 0..w.subscriptions {
            let mut counts = Vec::new();
            for c in 0..w.consumers_per_subscription {
                let reader = match w.group_protocol.as_str() {
                    "none" => {
                        let mine: Vec<TopicPartition> = self
                            .partitions
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i as u32 % w.consumers_per_subscription == c)
                            .map(|(_, tp)| tp.clone())
                            .collect();
                        if mine.is_empty() {
                            continue;
                        }
                        let own = Client::connect(client.config().clone()).await?;
                        let mut consumer = Consumer::new(own, fetch.clone());
                        consumer.assign(&mine).await?;
                        Reader::Assigned(Box::new(consumer))
                    }
                    protocol => {
                        let mut config = GroupConfig::new(format!("{}-s{s}", self.group_prefix));
                        config.protocol = if protocol == "classic" {
                            GroupProtocol::Classic
                        } else {
                            GroupProtocol::Consumer
                        };
                        config.offset_reset = OffsetReset::Earliest;
                        config.session_timeout = Duration::from_secs(10);
                        config.heartbeat_interval = Duration::from_secs(1);
                        config.consumer = fetch.clone();
                        let own = Client::connect(client.config().clone()).await?;
                        let mut member = GroupConsumer::new(own, config);
                        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
                        member.subscribe(&topics);
                        Reader::Member(Box::new(member))
                    }
                };
                let count = Arc::new(AtomicU64::new(reader.owned() as u64));
                counts.push(count.clone());
                let (stats, stop, seen, last, first, base) = (
                    self.stats.clone(),
                    self.stop.clone(),
                    self.per_subscription[s as usize].clone(),
                    self.last.clone(),
                    self.first.clone(),
                    self.base.clone(),
                );
                let mut reader = reader;
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let (mut first_measured, mut last_measured) = (u64::MAX, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let polled = reader.poll(Duration::from_millis(200)).await;
                        count.store(reader.owned() as u64, Ordering::Relaxed);
                        let records = match polled {
                            Ok(r) => r,
                            Err(e) => {
                                stats.error(format!("consume: {e}"));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                        if records.is_empty() {
                            continue;
                        }
                        let now = now_us(*base.get_or_init(Instant::now));
                        for r in &records {
                            let value = r.value.as_deref().unwrap_or_default();
                            let Some(sent) = value
                                .get(..8)
                                .map(|b| u64::from_be_bytes(b.try_into().expect("8")))
                            else {
                                stats.error("consume: a message without its send time");
                                continue;
                            };
                            if catch_up {
                                // The whole backlog counts; its age is no latency.
                                tally.count(value.len(), true);
                                last_measured = now;
                                continue;
                            }
                            let measured = sent >= warmup_us && sent < end_us;
                            tally.add(value.len(), now.saturating_sub(sent), measured);
                            if measured {
                                first_measured = first_measured.min(now);
                                last_measured = now;
                            }
                        }
                        tally.report(&stats.consumed, &stats.end_to_end);
                        if last_measured > 0 {
                            first.fetch_min(first_measured, Ordering::Relaxed);
                            last.fetch_max(last_measured, Ordering::Relaxed);
                        }
                        seen.fetch_add(records.len() as u64, Ordering::Relaxed);
                    }
                    reader.close().await;
                }));
            }
            owned.push(counts);
        }
        // Every partition has its consumer, and (with enough partitions)
        // every consumer its partitions, before anything is measured.
        let total = self.partitions.len() as u64;
        let settled = || {
            owned.iter().all(|counts| {
                let sum: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                sum == total
                    && (total < counts.len() as u64
                        || counts.iter().all(|c| c.load(Ordering::Relaxed) > 0))
            })
        };
        let started = Instant::now();
        let deadline = started + GROUP_SETTLE_TIMEOUT;
        while !settled() {
            if Instant::now() > deadline {
                self.stop.store(true, Ordering::Relaxed);
                anyhow::bail!(
                    "the consumer groups did not give out every partition within {GROUP_SETTLE_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if w.group_protocol != "none" && w.subscriptions > 0 {
            eprintln!(
                "rill-bench: {} consumer group(s) ({} protocol) gave out all {total} partitions in {} ms",
                w.subscriptions,
                w.group_protocol,
                started.elapsed().as_millis()
            );
        }
        Ok(tasks)
    }
}

async fn drive(
    w: &Workload,
    o: &RunOptions,
    client: &Client,
    topics: &[String],
    prefix: &str,
) -> anyhow::Result<RunResult> {
    let stats = Arc::new(RunStats::default());
    // The run's clock starts once the consumers are in place (a group's
    // join is not part of the run).
    let base_cell: Arc<OnceLock<Instant>> = Arc::default();
    let warmup_us = w.warmup().as_micros() as u64;
    let end_us = warmup_us + w.duration().as_micros() as u64;
    let producing_done = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let last_consumed_us = Arc::new(AtomicU64::new(0));
    let first_measured_consumed_us = Arc::new(AtomicU64::new(u64::MAX));

    // Consumers first, reading from the beginning of the fresh topics.
    let all_partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| (0..w.partitions_per_topic).map(move |p| TopicPartition::new(t, p)))
        .collect();
    let per_subscription: Vec<Arc<AtomicU64>> = (0..w.subscriptions)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let consumers = ConsumerSet {
        topics: topics.to_vec(),
        partitions: all_partitions,
        group_prefix: prefix.to_string(),
        per_subscription: per_subscription.clone(),
        stats: stats.clone(),
        stop: stop_consumers.clone(),
        last: last_consumed_us.clone(),
        first: first_measured_consumed_us.clone(),
        base: base_cell.clone(),
        warmup_us,
        end_us,
    };
    let mut consumer_tasks = if w.catch_up {
        Vec::new()
    } else {
        consumers.start(w, client).await?
    };
    let base = *base_cell.get_or_init(Instant::now);
    // Record timestamps are the send times on the wall clock: one clock
    // read per message (the harness's), not two.
    let epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);

    // Producers, each with an acker task awaiting its deliveries in order.
    let rate_per_producer = w.rate.per_second().map(|r| r / w.producers as f64);
    let max_measured = w.max_messages.map(|m| m / w.producers as u64);
    let mut producer_tasks = Vec::new();
    let mut producers = Vec::new();
    for p in 0..w.producers {
        // A client of its own, as each producer of an application has: a
        // connection allows 5 requests in flight, and producers sharing one
        // shared those 5 (two producers at 1,000 partitions each waited
        // ~10 ms per request for a slot, which capped the run; a consumer's
        // fetch waiting for data holds a slot too).
        let own = Client::connect(client.config().clone()).await?;
        let producer = Arc::new(Producer::new(
            own,
            ProducerConfig {
                acks: w.acks.parse()?,
                idempotence: w.idempotence,
                compression: w.compression.parse()?,
                linger: Duration::from_millis(w.linger_ms),
                batch_size: w.batch_size,
                // Enough for the batches in flight, not so much that a
                // saturated broker turns it into seconds of queueing.
                buffer_memory: (w.batch_size * 8).max(8 << 20),
                ..ProducerConfig::default()
            },
        )?);
        producers.push(producer.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Delivery, u64, usize)>(100_000);
        let acker_stats = stats.clone();
        // Deliveries are awaited in order (cheap: most are already done
        // when reached); the latency is taken from when each batch's answer
        // arrived, so a slow earlier partition does not inflate later ones.
        let acker = tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some((d, sent, size)) = next.take() {
                    match d.await {
                        Ok(m) => {
                            let measured = sent >= warmup_us && sent < end_us;
                            let acked = m
                                .acknowledged_at
                                .saturating_duration_since(base)
                                .as_micros() as u64;
                            tally.add(size, acked.saturating_sub(sent), measured);
                        }
                        Err(e) => acker_stats.error(format!("produce: {e}")),
                    }
                    if tally.len() >= 1024 {
                        tally.report(&acker_stats.produced, &acker_stats.publish);
                    }
                    next = rx.try_recv().ok();
                }
                // Nothing more queued: report before waiting.
                tally.report(&acker_stats.produced, &acker_stats.publish);
            }
        });
        let mut sampler = Sampler::new(w, 0x5eed + p as u64);
        let topics: Vec<Arc<str>> = topics.iter().map(|t| Arc::from(t.as_str())).collect();
        let stats = stats.clone();
        let filler = Bytes::from(vec![b'r'; w.size_bounds().1]);
        let keys = key_table(w);
        producer_tasks.push(tokio::spawn(async move {
            let interval_us = rate_per_producer.map(|r| 1e6 / r);
            let mut i: u64 = 0;
            let mut measured_sent = 0u64;
            let mut now = 0;
            loop {
                // At max rate the clock is read every few messages (a read
                // costs ~45 ns here, a tenth of a message at 2 M/s); the
                // send times it stamps are then at most that many sends
                // (a few µs) early, which only lengthens publish latency.
                if interval_us.is_some() || i.is_multiple_of(MAX_RATE_CLOCK_EVERY) {
                    now = now_us(base);
                }
                if now >= end_us || max_measured.is_some_and(|m| measured_sent >= m) {
                    break;
                }
                let sent = match interval_us {
                    None => now,
                    Some(iv) => {
                        let due = (i as f64 * iv) as u64;
                        if due > now + TIMER_SLACK_US {
                            // tokio's timer has millisecond resolution: sleep
                            // to a millisecond before the send is due...
                            tokio::time::sleep(Duration::from_micros(due - now - TIMER_SLACK_US))
                                .await;
                            continue;
                        }
                        if due > now {
                            // ...and yield until it is, or the send would
                            // start up to a millisecond late, and the
                            // latency (counted from the due time) with it.
                            tokio::task::yield_now().await;
                            continue;
                        }
                        due
                    }
                };
                let size = sampler.size();
                // One allocation per value and no reference count: freeing
                // it is cheaper here than sharing one large buffer, whose
                // count every value would increment and decrement.
                let mut value = BytesMut::with_capacity(size);
                value.put_u64(sent);
                value.put_slice(&filler[..size - 8]);
                let value = value.freeze();
                let topic = &topics[(i % topics.len() as u64) as usize];
                let mut record =
                    Record::new(topic.clone(), value).timestamp(epoch_ms + (sent / 1000) as i64);
                if let Some(k) = sampler.key() {
                    record = record.key(key_bytes(keys, k));
                }
                match producer.send(record).await {
                    Ok(d) => {
                        if tx.send((d, sent, size)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => stats.error(format!("produce: {e}")),
                }
                if sent >= warmup_us {
                    measured_sent += 1;
                }
                i += 1;
                if i.is_multiple_of(256) {
                    // send() rarely waits; let the acker and consumers run.
                    tokio::task::yield_now().await;
                }
            }
            drop(tx);
            producer.flush().await;
            let _ = acker.await;
            producer.close().await;
        }));
    }

    // The producers' requests from the start of the measured phase until
    // they are done.
    let in_flight_max = producers.len() * client.config().max_in_flight;
    let requests_total = move || {
        let mut sum = ProducerMetrics::default();
        for p in &producers {
            sum.add(&p.metrics());
        }
        sum
    };
    let requests_start = {
        let total = requests_total.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((base + Duration::from_micros(warmup_us)).into()).await;
            (total(), Instant::now())
        })
    };

    // Progress, once a second, until consumers are done.
    let reporter = {
        let (stats, done, subs) = (
            stats.clone(),
            producing_done.clone(),
            per_subscription.clone(),
        );
        let progress = o.progress;
        let total_secs = (end_us / 1_000_000) as f64;
        tokio::spawn(async move {
            let mut timeline = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let (mut last_p, mut last_pb, mut last_c, mut last_cb) = (0u64, 0u64, 0u64, 0u64);
            let mut t = 0u64;
            loop {
                ticker.tick().await;
                t += 1;
                let p_all = stats.produced.all_msgs.load(Ordering::Relaxed);
                let pb = stats.produced.all_bytes.load(Ordering::Relaxed);
                let c_all = stats.consumed.all_msgs.load(Ordering::Relaxed);
                let cb = stats.consumed.all_bytes.load(Ordering::Relaxed);
                // With no subscriptions nothing lags behind the producers.
                let slowest = subs
                    .iter()
                    .map(|s| s.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(p_all);
                let s = Second {
                    t,
                    measuring: t * 1_000_000 > warmup_us && t * 1_000_000 <= end_us + 1_000_000,
                    produce_msgs: p_all - last_p,
                    produce_mb: pb.saturating_sub(last_pb) as f64 / 1e6,
                    consume_msgs: c_all - last_c,
                    consume_mb: cb.saturating_sub(last_cb) as f64 / 1e6,
                    publish_p99_ms: stats.publish.take_interval_p99_ms(),
                    e2e_p99_ms: stats.end_to_end.take_interval_p99_ms(),
                    // Acknowledgements can trail the consumers: never below 0.
                    backlog: (p_all as i64 - slowest as i64).max(0),
                };
                if progress {
                    eprintln!(
                        "[{t:>4}s/{total_secs:.0}s] {:<7} produce {:>9} msg/s {:>8.1} MB/s | consume {:>9} msg/s {:>8.1} MB/s | p99 publish {:>8} e2e {:>8} | backlog {:>8} | errors {}",
                        if s.measuring { "measure" } else if t * 1_000_000 <= warmup_us { "warm-up" } else { "drain" },
                        s.produce_msgs,
                        s.produce_mb,
                        s.consume_msgs,
                        s.consume_mb,
                        s.publish_p99_ms.map_or("-".into(), |v| format!("{v:.2}ms")),
                        s.e2e_p99_ms.map_or("-".into(), |v| format!("{v:.2}ms")),
                        s.backlog,
                        stats.errors.load(Ordering::Relaxed),
                    );
                }
                timeline.push(s);
                (last_p, last_pb, last_c, last_cb) = (p_all, pb, c_all, cb);
                if done.load(Ordering::Relaxed) && slowest >= p_all {
                    break;
                }
                if t > total_secs as u64 + 600 {
                    break; // a hard bound whatever happens
                }
            }
            timeline
        })
    };

    for t in producer_tasks {
        t.await?;
    }
    // None when the producers were done before the measured phase began.
    let produce_requests = if requests_start.is_finished() {
        let (start, at) = requests_start.await?;
        RequestSummary::of(
            &requests_total().since(&start),
            at.elapsed().as_secs_f64(),
            in_flight_max,
        )
    } else {
        requests_start.abort();
        None
    };
    let produced_all = stats.produced.all_msgs.load(Ordering::Relaxed);
    producing_done.store(true, Ordering::Relaxed);
    let produce_end_us = now_us(base).min(end_us).max(warmup_us + 1);
    let mut catch_up_started_us = None;
    let mut drain = o.drain_timeout;
    if w.catch_up {
        // The backlog is written: now the consumers read it from the start.
        catch_up_started_us = Some(now_us(base));
        consumer_tasks = consumers.start(w, client).await?;
        drain = drain.max(CATCH_UP_TIMEOUT);
    }
    // Let consumers drain what was produced, bounded.
    let drain_deadline = Instant::now() + drain;
    while per_subscription
        .iter()
        .any(|s| s.load(Ordering::Relaxed) < produced_all)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_consumers.store(true, Ordering::Relaxed);
    for t in consumer_tasks {
        t.await?;
    }
    let slowest = per_subscription
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .min()
        .unwrap_or(produced_all);
    let timeline = reporter.await?;

    let measured_secs = (produce_end_us - warmup_us) as f64 / 1e6;
    let consume_secs = if let Some(started) = catch_up_started_us {
        // The whole backlog, from when the consumers started to the last
        // message read.
        (last_consumed_us.load(Ordering::Relaxed).max(started + 1) - started) as f64 / 1e6
    } else {
        let first = first_measured_consumed_us.load(Ordering::Relaxed);
        let last = last_consumed_us.load(Ordering::Relaxed);
        if first == u64::MAX || last <= warmup_us {
            measured_secs
        } else {
            // From the start of the measured phase to the last measured
            // message consumed.
            (last - warmup_us) as f64 / 1e6
        }
    };
    let first_error = stats
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(RunResult {
        produce: Throughput::of(
            stats.produced.msgs.load(Ordering::Relaxed),
            stats.produced.bytes.load(Ordering::Relaxed),
            measured_secs,
        ),
        consume: Throughput::of(
            stats.consumed.msgs.load(Ordering::Relaxed),
            stats.consumed.bytes.load(Ordering::Relaxed),
            consume_secs,
        ),
        publish_latency: LatencySummary::of(&stats.publish.whole()),
        end_to_end_latency: LatencySummary::of(&stats.end_to_end.whole()),
        errors: stats.errors.load(Ordering::Relaxed),
        first_error,
        undelivered: produced_all.saturating_sub(slowest),
        produced_bytes_all: stats.produced.all_bytes.load(Ordering::Relaxed),
        produce_requests,
        timeline,
    })
}
