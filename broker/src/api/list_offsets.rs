//! ListOffsets: earliest (-2), latest (-1), or the first record at or after
//! a timestamp.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use rill_net::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use rill_net::kafka_protocol::ResponseError;

use super::join_all;
use super::Context;
use crate::error_code::storage_error;
use crate::shard::{Owner, Shard};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// (error, offset, timestamp) of one partition's answer.
type Answer = (Option<ResponseError>, i64, i64);

/// One partition's answer on the shard that owns it.
async fn lookup(shard: &Rc<Shard>, topic: &str, partition: i32, timestamp: i64) -> Answer {
    let Some(part) = shard.partition(topic, partition) else {
        // Placed here and not open (yet, or any longer): retriable.
        return (Some(ResponseError::NotLeaderOrFollower), -1, -1);
    };
    match timestamp {
        LATEST => (None, part.high_watermark(), -1),
        EARLIEST => (None, part.log_start_offset(), -1),
        ts if ts < 0 => (Some(ResponseError::UnsupportedVersion), -1, -1),
        ts => match part.offset_for_timestamp(ts).await {
            Ok(Some(found)) => (None, found.offset, found.timestamp),
            Ok(None) => (None, -1, -1),
            Err(e) => (Some(storage_error(&e)), -1, -1),
        },
    }
}

/// The answers for `asked` ((index, topic, partition, timestamp), all owned
/// by this shard), with their indexes. Latest and earliest are answered from
/// memory in one pass; lookups by time read the log, concurrently.
async fn lookups_here(
    shard: Rc<Shard>,
    asked: Vec<(usize, String, i32, i64)>,
) -> Vec<(usize, Answer)> {
    let mut answers = Vec::with_capacity(asked.len());
    let mut by_time = Vec::new();
    for (i, topic, partition, ts) in asked {
        // Latest, earliest (and the negative specs answered as unsupported).
        if ts < 0 {
            answers.push((i, lookup(&shard, &topic, partition, ts).await));
        } else {
            let shard = shard.clone();
            by_time.push(async move { (i, lookup(&shard, &topic, partition, ts).await) });
        }
    }
    answers.extend(join_all(by_time).await);
    answers
}

pub async fn handle(cx: &Context<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let shard = cx.shard;
    let version = cx.version;
    // One job per owning shard, not one task per partition: a client
    // asking for 100,000 partitions (as one waiting for a starting broker
    // does) cost the shard more than opening them.
    let mut answers: Vec<Answer> = Vec::new();
    let mut by_shard: std::collections::BTreeMap<usize, Vec<(usize, String, i32, i64)>> =
        Default::default();
    for t in &req.topics {
        for p in &t.partitions {
            let i = answers.len();
            answers.push((Some(ResponseError::UnknownTopicOrPartition), -1, -1));
            if let Owner::Shard(owner) = shard.owner(t.name.as_str(), p.partition_index) {
                by_shard.entry(owner).or_default().push((
                    i,
                    t.name.as_str().to_string(),
                    p.partition_index,
                    p.timestamp,
                ));
            }
        }
    }
    let jobs: Vec<_> = by_shard
        .into_iter()
        .map(|(owner, asked)| {
            let shard = shard.clone();
            async move { shard.on(owner, move |s| lookups_here(s, asked)).await }
        })
        .collect();
    for answered in join_all(jobs).await {
        for (i, answer) in answered {
            answers[i] = answer;
        }
    }
    let mut results = answers.into_iter();
    let mut resp = ListOffsetsResponse::default();
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = t.name.clone();
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let (error, offset, timestamp) =
                        results.next().expect("one result per partition");
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = crate::error_code::code(error);
                    pr.offset = offset;
                    pr.timestamp = timestamp;
                    if version >= 4 && error.is_none() {
                        pr.leader_epoch = 0;
                    }
                    pr
                })
                .collect();
            tr
        })
        .collect();
    resp
}
