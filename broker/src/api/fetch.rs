//! Fetch: whole batches from each partition's shard, within the partition
//! and response byte limits, long-polling until `min_bytes` arrive or
//! `max_wait_ms` passes. Answered sessionless (session id 0).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse};
use rill_net::kafka_protocol::ResponseError;

use super::Context;
use crate::error_code::storage_error;
use crate::partition::Partition;
use crate::shard::{Owner, Shard};

#[derive(Debug, Clone, Default)]
struct PartitionRead {
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

fn failed(error: ResponseError) -> PartitionRead {
    PartitionRead {
        error: Some(error),
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    }
}

/// Reads up to `max_bytes` at `offset` from an open partition. With
/// `min_one` false, a first batch larger than the limit is left for a later
/// fetch.
async fn read(part: &Partition, offset: i64, max_bytes: usize, min_one: bool) -> PartitionRead {
    let (high_watermark, log_start_offset) = (part.high_watermark(), part.log_start_offset());
    let mut out = PartitionRead {
        error: None,
        high_watermark,
        log_start_offset,
        records: Bytes::new(),
    };
    // A consumer caught up (most partitions of most fetches when there are
    // many): nothing to read, and nothing to ask the log.
    if (!min_one && max_bytes == 0) || (offset == high_watermark && offset >= log_start_offset) {
        return out;
    }
    match part.read(offset, max_bytes).await {
        Ok(data) if !min_one && data.len() > max_bytes => {}
        Ok(data) => out.records = data,
        Err(e) => out.error = Some(storage_error(&e)),
    }
    out
}

/// One partition of the request: where it is (an index into the request's
/// topic names) and what is asked of it.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    topic_index: usize,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// The shard that owns it; `None` if the topic or partition is unknown.
    owner: Option<usize>,
}

/// The open partitions of `run` on the shard this runs on (`None` where
/// the metadata places one here that is not open, yet or any longer).
fn resolve(s: &Shard, topics: &[String], run: &[Wanted]) -> Vec<Option<Rc<Partition>>> {
    run.iter()
        .map(|w| s.partition(&topics[w.topic_index], w.partition))
        .collect()
}

/// Reads `run` (partitions owned by the shard this runs on, in request
/// order, `parts` their partitions) one after another, so the response
/// limit applies in request order as Kafka's does; `total` is what the
/// answer holds before them.
async fn read_run(
    run: &[Wanted],
    parts: &[Option<Rc<Partition>>],
    response_max: usize,
    mut total: usize,
) -> Vec<PartitionRead> {
    let mut out = Vec::with_capacity(run.len());
    for (w, part) in run.iter().zip(parts) {
        let r = match part {
            None => failed(ResponseError::NotLeaderOrFollower),
            Some(part) => {
                let budget = response_max.saturating_sub(total);
                read(part, w.offset, w.max_bytes.min(budget), total == 0).await
            }
        };
        total += r.records.len();
        out.push(r);
    }
    out
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
    // Names once per topic (shared with the owner shards' jobs), owners once
    // per partition: a fetch of thousands of partitions allocates per topic.
    let topics: Arc<Vec<String>> = Arc::new(
        req.topics
            .iter()
            .map(|t| t.topic.as_str().to_string())
            .collect(),
    );
    let wanted: Arc<Vec<Wanted>> = Arc::new(
        req.topics
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                let topic = topics[i].as_str();
                t.partitions.iter().map(move |p| Wanted {
                    topic_index: i,
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    owner: match shard.owner(topic, p.partition) {
                        Owner::Shard(o) => Some(o),
                        Owner::UnknownTopicOrPartition => None,
                    },
                })
            })
            .collect(),
    );

    // This shard's partitions, looked up once for every round and wait.
    let local: Vec<Option<Rc<Partition>>> = wanted
        .iter()
        .map(|w| match w.owner {
            Some(o) if o == shard.id => shard.partition(&topics[w.topic_index], w.partition),
            _ => None,
        })
        .collect();

    let results = loop {
        // Runs of partitions with the same owner are read by one job on it.
        let mut results: Vec<PartitionRead> = Vec::with_capacity(wanted.len());
        let mut total = 0usize;
        let mut at = 0;
        while at < wanted.len() {
            let Some(owner) = wanted[at].owner else {
                results.push(failed(ResponseError::UnknownTopicOrPartition));
                at += 1;
                continue;
            };
            let end = at
                + wanted[at..]
                    .iter()
                    .take_while(|w| w.owner == Some(owner))
                    .count();
            let read = if owner == shard.id {
                read_run(&wanted[at..end], &local[at..end], response_max, total).await
            } else {
                let (topics, wanted) = (topics.clone(), wanted.clone());
                shard
                    .on(owner, move |s| async move {
                        let run = &wanted[at..end];
                        read_run(run, &resolve(&s, &topics, run), response_max, total).await
                    })
                    .await
            };
            total += read.iter().map(|r| r.records.len()).sum::<usize>();
            results.extend(read);
            at = end;
        }
        let errors = results.iter().any(|r| r.error.is_some());
        if total >= min_bytes || errors || Instant::now() >= deadline || shard.stopping.get() {
            break results;
        }
        // Wait for data beyond what this read saw: waiting only for data at
        // the fetch offsets would spin while too little data sits there.
        let seen: Vec<i64> = results.iter().map(|r| r.high_watermark).collect();
        wait_for_any(shard, &topics, &wanted, &local, &seen, deadline).await;
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
                            &topics[w.topic_index],
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
async fn wait_for_any(
    shard: &Rc<Shard>,
    topics: &Arc<Vec<String>>,
    wanted: &Arc<Vec<Wanted>>,
    local: &[Option<Rc<Partition>>],
    seen_end: &[i64],
    deadline: Instant,
) {
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    let mut by_owner: BTreeMap<usize, Vec<(usize, i64)>> = BTreeMap::new();
    for (i, (w, &seen)) in wanted.iter().zip(seen_end).enumerate() {
        // An unknown partition has nothing to wait for.
        if let Some(owner) = w.owner {
            by_owner.entry(owner).or_default().push((i, seen.max(0)));
        }
    }
    if by_owner.is_empty() {
        // Nothing can arrive: wait out max_wait_ms as asked.
        futures_lite::future::or(timeout, shard.stopped()).await;
        return;
    }
    if by_owner.len() == 1 && by_owner.contains_key(&shard.id) {
        // All on this shard (always so with one shard): wait here.
        let parts: Vec<(&Partition, i64)> = local
            .iter()
            .zip(seen_end)
            .filter_map(|(p, &seen)| Some((p.as_deref()?, seen.max(0))))
            .collect();
        let arrived = data_beyond(&parts);
        futures_lite::future::or(futures_lite::future::or(arrived, timeout), shard.stopped()).await;
        return;
    }
    // Dropped on return: each owner's wait sees its receiver close and ends.
    let (_cancel, cancelled) = async_channel::bounded::<()>(1);
    let (tx, rx) = async_channel::bounded::<()>(by_owner.len());
    let waits: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, partitions)| {
            let (shard, tx, cancelled) = (shard.clone(), tx.clone(), cancelled.clone());
            let (topics, wanted) = (topics.clone(), wanted.clone());
            glommio::spawn_local(async move {
                shard
                    .on(owner, move |s| async move {
                        let resolved: Vec<(Rc<Partition>, i64)> = partitions
                            .iter()
                            .filter_map(|&(i, seen)| {
                                let w = &wanted[i];
                                Some((s.partition(&topics[w.topic_index], w.partition)?, seen))
                            })
                            .collect();
                        let parts: Vec<(&Partition, i64)> =
                            resolved.iter().map(|(p, seen)| (&**p, *seen)).collect();
                        let arrived = data_beyond(&parts);
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
        let _ = rx.recv().await;
    };
    futures_lite::future::or(futures_lite::future::or(any, timeout), shard.stopped()).await;
    drop(_cancel);
    // The local tasks end once their owner's wait has seen the cancellation.
    for w in waits {
        w.await;
    }
}

/// Resolves (on their owner shard) once any of `parts` has data past the
/// high watermark last seen; never if there are none (closed partitions
/// are left out by the callers). Polls them all itself: one waker
/// registered with each, no future per partition.
async fn data_beyond(parts: &[(&Partition, i64)]) {
    if parts.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        if parts
            .iter()
            .any(|(part, seen)| part.poll_data(*seen, cx.waker()))
        {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
