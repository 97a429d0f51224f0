//! Fetch: whole batches from each partition's shard, within the partition
//! and response byte limits, long-polling until `min_bytes` arrive or
//! `max_wait_ms` passes. Answered sessionless (session id 0).

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse};
use rill_net::kafka_protocol::ResponseError;

use super::Context;
use crate::error_code::storage_error;
use crate::shard::{Owner, Shard};

#[derive(Debug, Clone, Default)]
struct PartitionRead {
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

fn unknown() -> PartitionRead {
    PartitionRead {
        error: Some(ResponseError::UnknownTopicOrPartition),
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    }
}

/// Reads up to `max_bytes` at `offset` on the owner shard. With `min_one`
/// false, a first batch larger than the limit is left for a later fetch.
async fn read(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> PartitionRead {
    shard
        .on_partition(topic, partition, move |_, part| async move {
            let (high_watermark, log_start_offset) =
                (part.high_watermark(), part.log_start_offset());
            let mut out = PartitionRead {
                error: None,
                high_watermark,
                log_start_offset,
                records: Bytes::new(),
            };
            if !min_one && max_bytes == 0 {
                return out;
            }
            match part.read(offset, max_bytes).await {
                Ok(data) if !min_one && data.len() > max_bytes => {}
                Ok(data) => out.records = data,
                Err(e) => out.error = Some(storage_error(&e)),
            }
            out
        })
        .await
        .unwrap_or_else(|_| unknown())
}

struct Wanted {
    topic_index: usize,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

pub async fn handle(cx: &Context<'_>, req: FetchRequest) -> FetchResponse {
    let shard = cx.shard;
    let version = cx.version;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let response_max = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.partitions.iter().map(move |p| Wanted {
                topic_index: i,
                topic: t.topic.as_str().to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            })
        })
        .collect();

    let results = loop {
        // Partitions are read one after another so the response limit applies
        // in request order, as Kafka does.
        let mut results = Vec::with_capacity(wanted.len());
        let mut total = 0usize;
        for w in &wanted {
            let budget = response_max.saturating_sub(total);
            let r = read(
                shard,
                w.topic.clone(),
                w.partition,
                w.offset,
                w.max_bytes.min(budget),
                total == 0,
            )
            .await;
            total += r.records.len();
            results.push(r);
        }
        let errors = results.iter().any(|r| r.error.is_some());
        if total >= min_bytes || errors || Instant::now() >= deadline || shard.stopping.get() {
            break results;
        }
        // Wait for data beyond what this read saw: waiting only for data at
        // the fetch offsets would spin while too little data sits there.
        let seen: Vec<i64> = results.iter().map(|r| r.high_watermark).collect();
        wait_for_any(shard, &wanted, &seen, deadline).await;
    };

    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    let mut results = results.into_iter();
    resp.responses = req
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = t.topic.clone();
            tr.topic_id = t.topic_id;
            tr.partitions = wanted
                .iter()
                .filter(|w| w.topic_index == i)
                .map(|w| {
                    let r = results.next().expect("one result per partition");
                    if !r.records.is_empty() {
                        shard.counters.fetched(
                            &w.topic,
                            r.records.len() as u64,
                            crate::metrics::counters::records_in_batches(&r.records),
                        );
                    }
                    let mut pd = PartitionData::default();
                    pd.partition_index = w.partition;
                    pd.error_code = crate::error_code::code(r.error);
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = r.high_watermark;
                    if version >= 5 {
                        pd.log_start_offset = r.log_start_offset;
                    }
                    pd.aborted_transactions = None;
                    pd.records = Some(r.records);
                    pd
                })
                .collect();
            tr
        })
        .collect();
    resp
}

/// Returns when any wanted partition's log end moves past what the last
/// read saw, at the deadline, or at shutdown. One wait per owner shard
/// covers all of its partitions, and every one ends when this returns.
async fn wait_for_any(shard: &Rc<Shard>, wanted: &[Wanted], seen_end: &[i64], deadline: Instant) {
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    // Dropped on return: each owner's wait sees its receiver close and ends.
    let (_cancel, cancelled) = async_channel::bounded::<()>(1);
    let mut by_owner: BTreeMap<usize, Vec<(String, i32, i64)>> = BTreeMap::new();
    for (w, &seen) in wanted.iter().zip(seen_end) {
        // An unknown partition has nothing to wait for.
        if let Owner::Shard(owner) = shard.owner(&w.topic, w.partition) {
            by_owner
                .entry(owner)
                .or_default()
                .push((w.topic.clone(), w.partition, seen.max(0)));
        }
    }
    let (tx, rx) = async_channel::bounded::<()>(by_owner.len().max(1));
    let waits: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, partitions)| {
            let (shard, tx, cancelled) = (shard.clone(), tx.clone(), cancelled.clone());
            glommio::spawn_local(async move {
                shard
                    .on(owner, move |s| async move {
                        let arrived = data_beyond(&s, partitions);
                        let timeout = glommio::timer::sleep(
                            deadline.saturating_duration_since(Instant::now()),
                        );
                        let cancelled = async {
                            let _ = cancelled.recv().await;
                        };
                        futures_lite::future::or(
                            arrived,
                            futures_lite::future::or(timeout, cancelled),
                        )
                        .await;
                    })
                    .await;
                let _ = tx.try_send(());
            })
        })
        .collect();
    drop(tx);
    let any = async {
        if waits.is_empty() {
            // Nothing can arrive: wait out max_wait_ms as asked.
            std::future::pending::<()>().await;
        }
        let _ = rx.recv().await;
    };
    futures_lite::future::or(futures_lite::future::or(any, timeout), shard.stopped()).await;
    drop(_cancel);
    // The local tasks end once their owner's wait has seen the cancellation.
    for w in waits {
        w.await;
    }
}

/// Resolves (on their owner shard) once any of `partitions` has data past
/// its offset; partitions no longer open are skipped.
async fn data_beyond(shard: &Rc<Shard>, partitions: Vec<(String, i32, i64)>) {
    let parts: Vec<_> = partitions
        .into_iter()
        .filter_map(|(topic, partition, seen)| Some((shard.partition(&topic, partition)?, seen)))
        .collect();
    if parts.is_empty() {
        return std::future::pending().await;
    }
    let mut waits: Vec<_> = parts
        .iter()
        .map(|(part, seen)| Box::pin(part.wait_for_data(*seen)))
        .collect();
    std::future::poll_fn(|cx| {
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
