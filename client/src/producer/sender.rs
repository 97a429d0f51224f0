//! The sender (the Java client's `Sender`): one task that takes sealed
//! and lingered batches from the accumulator, groups them by leader into
//! Produce requests, and resolves each batch from the answer or retries it.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rill_record::{increment_sequence, BatchHeader};

use super::accumulator::{Batch, Payload, ProducerId, Stamp, Tp, WINDOW_BATCHES};
use super::{Acks, Shared};
use crate::error::{Error, Result};
use crate::protocol::records::{set_producer, ProducerFields};
use crate::transport::connection::{Connection, Started};

/// A Produce request being assembled for one broker.
struct Outgoing {
    node: i32,
    id: u64,
    batches: Vec<(Tp, Batch)>,
}

pub(super) async fn sender_loop(shared: Arc<Shared>) {
    loop {
        let may_send = ready_to_number(&shared).await;
        let (outgoing, next_wake, done, refresh) = collect(&shared, Instant::now(), may_send);
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
        // Requests are put on their connections here, one after another,
        // so a partition's batches reach the broker in sequence order; only
        // the waits for the answers run apart.
        for mut o in outgoing {
            let fatal = encode_batches(&shared, &mut o);
            let started = start_produce(&shared, &o).await;
            let written = started.is_ok().then(|| shared.requests.started(&o.batches));
            tokio::spawn(send_request(shared.clone(), o, fatal, started, written));
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

/// Idempotence: whether batches can be numbered now. Gets the producer id
/// the first time, and the next epoch once a failed batch left a hole and
/// nothing is in flight any more. Without idempotence, always.
async fn ready_to_number(shared: &Shared) -> bool {
    if !shared.idempotent.load(Relaxed) {
        return true;
    }
    let current = {
        let st = shared.lock();
        let idle = st.partitions.values().all(|q| q.in_flight == 0);
        match st.producer {
            Some(_) if !st.bump_epoch => return true,
            Some(_) if !idle => return false,
            p => p,
        }
    };
    match init_producer_id(shared, current).await {
        Ok(id) => {
            let mut st = shared.lock();
            if st.bump_epoch {
                // Number again from 0 under the new epoch; batches waiting
                // to be retried are stamped afresh when sent.
                for q in st.partitions.values_mut() {
                    q.next_sequence = 0;
                    q.stored_next = 0;
                    q.window.clear();
                    for b in q.sealed.iter_mut() {
                        b.sequence = None;
                    }
                }
                st.bump_epoch = false;
            }
            tracing::debug!(producer_id = id.id, epoch = id.epoch, "producer id");
            st.producer = Some(id);
            true
        }
        Err(e @ Error::UnsupportedVersion { .. }) if current.is_none() => {
            tracing::warn!(error = %e, "the broker has no idempotent producers; sending without idempotence");
            shared.idempotent.store(false, Relaxed);
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "InitProducerId failed; trying again");
            tokio::time::sleep(shared.config.retry_backoff).await;
            false
        }
    }
}

/// A new producer id, or with `current` (v3+) the next epoch of it.
async fn init_producer_id(shared: &Shared, current: Option<ProducerId>) -> Result<ProducerId> {
    let conn = shared.client.any_connection().await?;
    let version = conn.version(ApiKey::InitProducerId)?;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    let (id, epoch) = match current {
        Some(p) if version >= 3 => (p.id, p.epoch),
        _ => (-1, -1),
    };
    req.producer_id = id.into();
    req.producer_epoch = epoch;
    let resp = conn.send_versioned(&req, version).await?;
    Error::check(resp.error_code, || "InitProducerId".to_string())?;
    Ok(ProducerId {
        id: resp.producer_id.0,
        epoch: resp.producer_epoch,
    })
}

/// Records in a batch, built or encoded.
fn record_count(b: &Batch) -> i32 {
    match &b.payload {
        Payload::Building(builder) => builder.record_count(),
        Payload::Encoded(bytes) => BatchHeader::parse(bytes).map_or(1, |h| h.record_count),
    }
}

/// Picks the batches to send now: at most one per partition per request,
/// grouped by leader, within the in-flight limits. Returns the requests, when
/// to look again, whether the producer is closed and drained, and topics
/// whose leaders are unknown. With `may_send` false only expires batches.
fn collect(
    shared: &Shared,
    now: Instant,
    may_send: bool,
) -> (Vec<Outgoing>, Option<Instant>, bool, Vec<Arc<str>>) {
    let config = &shared.config;
    let max_node = shared.client.config().max_in_flight;
    let idempotent = shared.idempotent.load(Relaxed);
    let mut st = shared.lock();
    let st = &mut *st;
    let producer = st.producer;
    let mut hole = false;
    let urgent = st.flushing > 0 || st.closing;
    let mut next_wake: Option<Instant> = None;
    let mut wake_at = |t: Instant| next_wake = Some(next_wake.map_or(t, |w: Instant| w.min(t)));
    let mut by_node: HashMap<i32, Vec<(Tp, Batch)>> = HashMap::new();
    let mut refresh: Vec<Arc<str>> = Vec::new();
    let mut expired: Vec<Batch> = Vec::new();
    for (tp, q) in st.partitions.iter_mut() {
        while q.sealed.front().is_some_and(|b| now >= b.deadline) {
            let b = q.sealed.pop_front().expect("checked");
            if let Some(s) = b.sequence {
                q.finish(s.base_sequence);
                hole = true;
            }
            expired.push(b);
        }
        if q.sealed.is_empty() && q.open.as_ref().is_some_and(|b| now >= b.deadline) {
            expired.push(q.open.take().expect("checked"));
        }
        // The next batch: the oldest sealed one, or else the open one once
        // it has lingered. An open batch stays open (records keep joining
        // it) until it is taken into a request, as in the Java client: a
        // partition waiting for a free request slot then sends one full
        // batch, not a queue of lingered one-record batches.
        let (head, open_head) = match (q.sealed.front(), &q.open) {
            (Some(b), _) => (b, false),
            (None, Some(open)) => {
                if !urgent && now < open.created + config.linger {
                    wake_at(open.created + config.linger);
                    continue;
                }
                (open, true)
            }
            (None, None) => continue,
        };
        if !may_send {
            wake_at(now + config.retry_backoff);
            continue;
        }
        if let Some(at) = head.retry_at.filter(|&at| at > now) {
            wake_at(at);
            continue;
        }
        if q.in_flight >= config.max_in_flight_per_partition {
            continue;
        }
        if idempotent && head.sequence.is_none() && q.window.len() >= WINDOW_BATCHES {
            // Five numbered batches unfinished: wait for the oldest.
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
        let mut b = if open_head {
            q.open.take()
        } else {
            q.sealed.pop_front()
        }
        .expect("checked");
        if idempotent {
            let p = producer.expect("numbering waits for a producer id");
            if b.sequence.is_none() {
                let first = q.next_sequence;
                q.next_sequence = increment_sequence(first, record_count(&b));
                b.sequence = Some(Stamp {
                    id: p.id,
                    epoch: p.epoch,
                    base_sequence: first,
                });
                q.window.push_back((first, false));
            }
        }
        group.push((tp.clone(), b));
    }
    if hole {
        st.bump_epoch = true;
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
                .insert(id << 20 | j as u64, b.completion.handle());
        }
        outgoing.push(Outgoing { node, id, batches });
    }
    // An idempotent producer's partitions keep their next sequence.
    st.partitions
        .retain(|_, q| q.open.is_some() || !q.sealed.is_empty() || q.in_flight > 0 || idempotent);
    let drained = st
        .partitions
        .values()
        .all(|q| q.open.is_none() && q.sealed.is_empty() && q.in_flight == 0);
    let done = st.closing && drained && outgoing.is_empty();
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

/// Finishes the batches of a request (stamping idempotent ones); returns
/// the ones that could not be encoded.
fn encode_batches(shared: &Shared, out: &mut Outgoing) -> Vec<(usize, Error)> {
    let config = &shared.config;
    let mut fatal: Vec<(usize, Error)> = Vec::new();
    for (i, (_, b)) in out.batches.iter_mut().enumerate() {
        match &b.payload {
            Payload::Building(_) => {
                let Payload::Building(mut builder) =
                    std::mem::replace(&mut b.payload, Payload::Encoded(Bytes::new()))
                else {
                    unreachable!()
                };
                if let Some(s) = b.sequence {
                    builder.producer(ProducerFields {
                        id: s.id,
                        epoch: s.epoch,
                        base_sequence: s.base_sequence,
                        transactional: false,
                    });
                }
                match builder.finish(config.compression) {
                    Ok(bytes) => b.payload = Payload::Encoded(bytes),
                    Err(e) => fatal.push((i, e.into())),
                }
            }
            Payload::Encoded(bytes) => {
                // Numbered afresh after an epoch bump: stamp the new numbers.
                if let (Some(s), Ok(h)) = (b.sequence, BatchHeader::parse(bytes)) {
                    if (h.producer_id, h.producer_epoch, h.base_sequence)
                        != (s.id, s.epoch, s.base_sequence)
                    {
                        let mut copy = BytesMut::from(&bytes[..]);
                        set_producer(&mut copy, s.id, s.epoch, s.base_sequence);
                        b.payload = Payload::Encoded(copy.freeze());
                    }
                }
            }
        }
    }
    fatal
}

async fn send_request(
    shared: Arc<Shared>,
    mut out: Outgoing,
    fatal: Vec<(usize, Error)>,
    started: Result<InFlight>,
    written: Option<Instant>,
) {
    let config = &shared.config;
    let result = match started {
        Ok(in_flight) => in_flight.answers().await,
        Err(e) => Err(e),
    };
    let now = Instant::now();
    if let Some(written) = written {
        shared.requests.answered(now - written);
    }
    // Idempotence: where each partition's stored sequences end. A batch
    // refused as out of order that does not start there only came before
    // an earlier one that is being retried: it is retried too.
    let stored_next: HashMap<Tp, i32> = {
        let st = shared.lock();
        out.batches
            .iter()
            .filter_map(|(tp, _)| Some((tp.clone(), st.partitions.get(tp)?.stored_next)))
            .collect()
    };
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
        let came_early = |e: &Error| {
            e.code() == Some(ResponseError::OutOfOrderSequenceNumber.code())
                && b.sequence
                    .zip(stored_next.get(&tp))
                    .is_some_and(|(s, &next)| s.base_sequence != next)
        };
        match outcome {
            Err(e)
                if (e.is_retriable() || came_early(&e))
                    && now + config.retry_backoff < b.deadline =>
            {
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
        // Fresh leaders for the retry, without holding the batches back
        // (their backoff runs meanwhile).
        let client = shared.client.clone();
        tokio::spawn(async move {
            let topics: Vec<&str> = retry_topics.iter().map(|t| t.as_ref()).collect();
            if let Err(e) = client.refresh(Some(&topics)).await {
                tracing::debug!(error = %e, "metadata refresh before a retry failed");
            }
        });
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
            q.requeue(b);
        }
        let mut hole = false;
        for (tp, b, outcome) in &finished {
            if let Some(q) = st.partitions.get_mut(tp) {
                q.in_flight -= 1;
                if let Some(s) = b.sequence {
                    q.finish(s.base_sequence);
                    match outcome {
                        Ok(_) => {
                            let next = increment_sequence(s.base_sequence, record_count(b));
                            // Answers of one partition may be read out of order.
                            if next > q.stored_next || q.stored_next - next > i32::MAX / 2 {
                                q.stored_next = next;
                            }
                        }
                        Err(_) => hole = true,
                    }
                }
            }
        }
        if hole {
            // A numbered batch failed for good: its sequences are a hole
            // the broker would refuse every later batch over.
            st.bump_epoch = true;
        }
    }
    for (_, b, outcome) in finished {
        shared.complete(b, outcome);
    }
    shared.wake.notify_one();
}

type Answers = HashMap<(String, i32), Result<(i64, i64)>>;

/// A Produce request put on its connection.
enum InFlight {
    Waiting(Arc<Connection>, Started<ProduceRequest>),
    /// acks=0: no answer comes; these are the batches it carried.
    Sent(Vec<(String, i32)>),
}

/// Builds the Produce request of `out` and puts it on its broker's connection.
async fn start_produce(shared: &Shared, out: &Outgoing) -> Result<InFlight> {
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
    if config.acks == Acks::None {
        conn.send_no_response(&request, version).await?;
        let batches = out
            .batches
            .iter()
            .map(|(tp, _)| (tp.0.to_string(), tp.1))
            .collect();
        return Ok(InFlight::Sent(batches));
    }
    let started = conn.start_versioned(&request, version).await?;
    Ok(InFlight::Waiting(conn, started))
}

impl InFlight {
    /// Each partition's outcome: (base offset, log append time) or its error.
    async fn answers(self) -> Result<Answers> {
        let mut answers = Answers::new();
        let (conn, started) = match self {
            InFlight::Sent(batches) => {
                for key in batches {
                    answers.insert(key, Ok((-1, -1)));
                }
                return Ok(answers);
            }
            InFlight::Waiting(conn, started) => (conn, started),
        };
        let response = started.finish(&conn).await?;
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
}
