//! Produce: one trip to each partition's owner shard, which validates every
//! batch, appends them, says so, and then — for acks=all or a topic with
//! `flush.ms=0` — waits until they are on stable storage before answering.
//! Once every partition of the request has said "appended", the connection
//! may start its next request, so one request's disk wait overlaps the
//! next one's appends while appends keep request order.

use std::rc::Rc;

use bytes::Bytes;
use rill_net::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use rill_net::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use rill_net::kafka_protocol::ResponseError;
use rill_storage::{batch, FlushPolicy, StorageError};

use super::Context;
use crate::error_code::storage_error;
use crate::shard::Shard;

#[derive(Debug, Clone, Default)]
struct Outcome {
    error: Option<ResponseError>,
    /// Said to the client beside the error (ProduceResponse v8+).
    message: Option<String>,
    base_offset: i64,
    log_start_offset: i64,
}

fn failed(error: ResponseError) -> Outcome {
    Outcome {
        error: Some(error),
        message: None,
        base_offset: -1,
        log_start_offset: -1,
    }
}

pub async fn handle(
    cx: &Context<'_>,
    req: ProduceRequest,
    admission: &mut super::Admission,
) -> Option<ProduceResponse> {
    let shard = cx.shard;
    let version = cx.version;
    let acks = req.acks;
    let refuse = if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else if req.transactional_id.is_some() {
        // Transactions are not implemented; refuse rather than pretend.
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        None
    };
    if refuse.is_none() && shard.config.auto_create_topics {
        let meta = shard.meta();
        let missing: Vec<String> = req
            .topic_data
            .iter()
            .map(|t| t.name.as_str().to_string())
            .filter(|n| !meta.topics.contains_key(n))
            .collect();
        super::auto_create(shard, missing).await;
    }

    // A partition of this shard whose log is open is appended here, in this
    // task, in request order; the others — on another shard, or dormant (an
    // open that reads the disk) — each in a task of their own, which holds
    // a sender and drops it once its batches are appended (or refused).
    // A task per partition cost a spawn, a future of kilobytes copied to the
    // heap, and a wake-up per journal step for each of a thousand partitions
    // (a quarter of the shard's CPU in many-partitions-1000 went to the
    // produce path).
    let (appended_tx, appended_rx) = async_channel::bounded::<()>(1);
    let mut slots: Vec<Slot> =
        Vec::with_capacity(req.topic_data.iter().map(|t| t.partition_data.len()).sum());
    for t in &req.topic_data {
        // The offsets topic is the coordinator's alone (Kafka refuses
        // appends to internal topics from clients too).
        let internal = t.name.as_str() == crate::groups::OFFSETS_TOPIC;
        for p in &t.partition_data {
            if let Some(e) = refuse.or(internal.then_some(ResponseError::InvalidTopicException)) {
                slots.push(Slot::Done(failed(e)));
                continue;
            }
            let topic = t.name.as_str();
            if let Some(part) = shard.open_partition_here(topic, p.index) {
                let slot =
                    match append_batches(shard, &part, topic, p.index, p.records.as_ref(), acks)
                        .await
                    {
                        Err(o) => Slot::Done(o),
                        Ok(a) => Slot::Appended(part, a),
                    };
                slots.push(slot);
                // A request of a thousand partitions is milliseconds of
                // appends: let the shard's I/O in between (its task quota).
                glommio::yield_if_needed().await;
                continue;
            }
            let (topic, partition, records) = (topic.to_string(), p.index, p.records.clone());
            let (shard, appended) = (shard.clone(), appended_tx.clone());
            slots.push(Slot::Elsewhere(glommio::spawn_local(async move {
                produce_partition(&shard, topic, partition, records, acks, appended).await
            })));
        }
    }
    drop(appended_tx);
    let _ = appended_rx.recv().await;
    // The appends of this request are in place: the connection may start
    // the next request while this one waits for the disk.
    admission.admit();
    // A journal step takes the logs that wait when it starts: every
    // partition is queued for the next step first, then the answers are
    // awaited one after another (without the queueing, a request of a
    // thousand partitions took a thousand steps; awaited together, a future
    // and a waker each were about 4 % of the shard's CPU at 1,000 partitions).
    for slot in &slots {
        if let Slot::Appended(part, a) = slot {
            if a.durable {
                part.expect_durable(a.next);
            }
        }
    }
    let mut done = Vec::with_capacity(slots.len());
    for slot in slots {
        done.push(match slot {
            Slot::Done(o) => o,
            Slot::Appended(part, a) => finish(&part, a).await,
            Slot::Elsewhere(task) => task.await,
        });
    }
    let mut outcomes = done.into_iter();
    if acks == 0 {
        return None;
    }
    let mut resp = ProduceResponse::default();
    resp.responses = req
        .topic_data
        .iter()
        .map(|t| {
            let mut tr = TopicProduceResponse::default();
            tr.name = t.name.clone();
            tr.partition_responses = t
                .partition_data
                .iter()
                .map(|p| {
                    let o = outcomes.next().expect("one outcome per partition");
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.error_code = crate::error_code::code(o.error);
                    if version >= 8 {
                        pr.error_message = o.message.map(Into::into);
                    }
                    pr.base_offset = o.base_offset;
                    if version >= 5 {
                        pr.log_start_offset = o.log_start_offset;
                    }
                    pr.log_append_time_ms = -1;
                    pr
                })
                .collect();
            tr
        })
        .collect();
    Some(resp)
}

/// Splits a produce payload into its batches (zero-copy slices).
fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, ResponseError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let len = batch::peek_total_len(&records[at..]).ok_or(ResponseError::CorruptMessage)?;
        if len < batch::HEADER_BYTES as i64 || at as i64 + len > records.len() as i64 {
            return Err(ResponseError::CorruptMessage);
        }
        out.push(records.slice(at..at + len as usize));
        at += len as usize;
    }
    if out.is_empty() {
        return Err(ResponseError::CorruptMessage);
    }
    Ok(out)
}

/// Validates a produced batch and, when the topic names a codec other than
/// the batch's, recompresses it (the one case where the broker re-encodes a
/// batch; otherwise the producer's bytes are stored as they came).
fn accept_batch(
    b: Bytes,
    max_bytes: usize,
    recompress_to: Option<batch::Compression>,
) -> Result<(Bytes, batch::BatchHeader), batch::BatchError> {
    let h = batch::validate(&b, max_bytes)?;
    match recompress_to {
        Some(codec) if h.compression()? != codec => {
            let re = Bytes::from(batch::recompress(&b, codec)?);
            let h = batch::validate(&re, max_bytes)?;
            Ok((re, h))
        }
        _ => Ok((b, h)),
    }
}

/// Where a partition's answer comes from.
enum Slot {
    /// Refused before or while appending.
    Done(Outcome),
    /// Appended here; the answer may wait for the disk.
    Appended(Rc<crate::partition::Partition>, Appended),
    /// Appended and answered by a task of its own.
    Elsewhere(glommio::Task<Outcome>),
}

/// Batches appended to a partition, not yet answered.
struct Appended {
    base_offset: i64,
    /// The offset after the last batch.
    next: i64,
    /// acks=all, or a topic that syncs every write: durable before the answer.
    durable: bool,
}

/// On the owner shard: validate every batch and append them (their order
/// now fixed); an `Err` is the partition's answer.
async fn append_batches(
    owner: &Rc<Shard>,
    part: &crate::partition::Partition,
    topic: &str,
    partition: i32,
    records: Option<&Bytes>,
    acks: i16,
) -> Result<Appended, Outcome> {
    let batches = match records.map(split_batches) {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(failed(e)),
        None => return Err(failed(ResponseError::CorruptMessage)),
    };
    let config = part.config();
    let recompress_to = part.recompress_to.get();
    let mut checked = Vec::with_capacity(batches.len());
    for b in batches {
        let accepted = accept_batch(b, config.batch_bytes_max, recompress_to).and_then(|c| {
            let keyed = config.compaction.is_none() || batch::compact::all_records_keyed(&c.0)?;
            Ok((c, keyed))
        });
        match accepted {
            Ok((checked_batch, true)) => checked.push(checked_batch),
            Ok((_, false)) => {
                // Kafka's rule: compaction keeps the newest record per
                // key, so a record without one has no place in the log.
                return Err(Outcome {
                    message: Some(format!(
                        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                    )),
                    ..failed(ResponseError::InvalidRecord)
                });
            }
            Err(e) => {
                tracing::debug!(%topic, partition, error = %e, "rejected a batch");
                return Err(failed(storage_error(&e.into())));
            }
        }
    }
    let mut base_offset = -1;
    let mut next = 0;
    // Batches someone will wait on go to the shard journal's queue.
    let durable = acks == -1 || config.flush == FlushPolicy::Always;
    let (mut bytes, mut records) = (0u64, 0u64);
    for (b, h) in checked {
        let len = b.len() as u64;
        match part.append_unsynced(b, h, durable).await {
            Ok(info) => {
                if base_offset < 0 {
                    base_offset = info.base_offset;
                }
                next = info.last_offset + 1;
                bytes += len;
                records += (info.last_offset + 1 - info.base_offset).max(0) as u64;
            }
            Err(e) => {
                if let StorageError::Sequence(_) = e {
                    // A producer's batch out of turn: its answer, not ours to log loudly.
                    tracing::debug!(%topic, partition, error = %e, "refused a batch");
                } else {
                    tracing::warn!(%topic, partition, error = %e, "append failed");
                }
                return Err(failed(storage_error(&e)));
            }
        }
    }
    owner.counters.produced(topic, bytes, records);
    Ok(Appended {
        base_offset,
        next,
        durable,
    })
}

/// The answer for batches appended: once durable, if it must wait.
async fn finish(part: &crate::partition::Partition, a: Appended) -> Outcome {
    if a.durable {
        if let Err(e) = part.make_durable(a.next).await {
            return failed(storage_error(&e));
        }
    }
    Outcome {
        error: None,
        message: None,
        base_offset: a.base_offset,
        log_start_offset: part.log_start_offset(),
    }
}

/// On the owner shard, from another shard or for a dormant partition:
/// append, drop `appended`, then answer.
async fn produce_partition(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    appended: async_channel::Sender<()>,
) -> Outcome {
    shard
        .on_partition(topic.clone(), partition, move |owner, part| async move {
            let a = append_batches(&owner, &part, &topic, partition, records.as_ref(), acks).await;
            drop(appended);
            match a {
                Err(o) => o,
                Ok(a) => finish(&part, a).await,
            }
        })
        .await
        .unwrap_or_else(failed)
}
