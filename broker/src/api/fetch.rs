//! Fetch: whole batches from each partition's shard, within the partition
//! and response byte limits, long-polling until `min_bytes` arrive or
//! `max_wait_ms` passes. Answered sessionless (session id 0).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse};
use rill_net::kafka_protocol::ResponseError;

use crate::error_code::storage_error;
use crate::shard::Shard;

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
            let log = &part.log;
            let (high_watermark, log_start_offset) = (log.log_end_offset(), log.log_start_offset());
            let mut out = PartitionRead {
                error: None,
                high_watermark,
                log_start_offset,
                records: Bytes::new(),
            };
            if !min_one && max_bytes == 0 {
                return out;
            }
            match log.read(offset, max_bytes).await {
                Ok(data) if !min_one && data.len() > max_bytes => {}
                Ok(data) => out.records = data,
                Err(e) => out.error = Some(storage_error(&e)),
            }
            out
        })
        .await
        .unwrap_or_else(|_| unknown())
}

/// Waits on the owner shard until the partition has data at `offset`, or
/// until `deadline`.
async fn wait_for_data(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    offset: i64,
    deadline: Instant,
) {
    // An unknown partition has nothing to wait for.
    let _ = shard
        .on_partition(topic, partition, move |_, part| async move {
            let ready = part
                .appended
                .wait_until(|| (part.log.log_end_offset() > offset).then_some(()));
            let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
            futures_lite::future::or(ready, timeout).await;
        })
        .await;
}

struct Wanted {
    topic_index: usize,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

pub async fn handle(shard: &Rc<Shard>, req: FetchRequest, version: i16) -> FetchResponse {
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
/// read saw, or at the deadline.
async fn wait_for_any(shard: &Rc<Shard>, wanted: &[Wanted], seen_end: &[i64], deadline: Instant) {
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    if wanted.is_empty() {
        // Nothing can arrive: wait out max_wait_ms as asked (or until shutdown).
        futures_lite::future::or(timeout, shard.stopped()).await;
        return;
    }
    let (tx, rx) = async_channel::bounded::<()>(wanted.len());
    let mut tasks = Vec::with_capacity(wanted.len());
    for (w, &seen) in wanted.iter().zip(seen_end) {
        let (shard, tx) = (shard.clone(), tx.clone());
        let (topic, partition) = (w.topic.clone(), w.partition);
        tasks.push(glommio::spawn_local(async move {
            wait_for_data(&shard, topic, partition, seen.max(0), deadline).await;
            let _ = tx.try_send(());
        }));
    }
    drop(tx);
    let stop = shard.stopped();
    futures_lite::future::or(
        futures_lite::future::or(
            async {
                let _ = rx.recv().await;
            },
            timeout,
        ),
        stop,
    )
    .await;
    // Dropping the tasks cancels the local waits; remote waits end by their deadline.
    drop(tasks);
}
