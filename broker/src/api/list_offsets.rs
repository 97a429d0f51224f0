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
use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

async fn lookup(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    timestamp: i64,
) -> (Option<ResponseError>, i64, i64) {
    shard
        .on_partition(topic, partition, move |_, part| async move {
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
        })
        .await
        .unwrap_or_else(|e| (Some(e), -1, -1))
}

pub async fn handle(cx: &Context<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let shard = cx.shard;
    let version = cx.version;
    let mut work = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let (shard, topic, partition, ts) = (
                shard.clone(),
                t.name.as_str().to_string(),
                p.partition_index,
                p.timestamp,
            );
            work.push(async move { lookup(&shard, topic, partition, ts).await });
        }
    }
    let mut results = join_all(work).await.into_iter();
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
