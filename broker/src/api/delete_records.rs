//! DeleteRecords: move each partition's log start (offset -1 = the high watermark).

use std::rc::Rc;

use rill_net::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use rill_net::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use rill_net::kafka_protocol::ResponseError;

use super::join_all;
use super::Context;
use crate::error_code::storage_error;
use crate::shard::Shard;

async fn delete(
    shard: &Rc<Shard>,
    topic: String,
    partition: i32,
    offset: i64,
) -> (Option<ResponseError>, i64) {
    shard
        .on_partition(topic, partition, move |_, part| async move {
            let target = if offset == -1 {
                part.high_watermark()
            } else {
                offset
            };
            match part.delete_records_before(target).await {
                Ok(low) => (None, low),
                Err(e) => (Some(storage_error(&e)), -1),
            }
        })
        .await
        .unwrap_or_else(|e| (Some(e), -1))
}

pub async fn handle(cx: &Context<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let shard = cx.shard;
    let mut work = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let (shard, topic, partition, offset) = (
                shard.clone(),
                t.name.as_str().to_string(),
                p.partition_index,
                p.offset,
            );
            work.push(async move { delete(&shard, topic, partition, offset).await });
        }
    }
    let mut results = join_all(work).await.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = t.name.clone();
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let (error, low) = results.next().expect("one result per partition");
                    let mut pr = DeleteRecordsPartitionResult::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = crate::error_code::code(error);
                    pr.low_watermark = low;
                    pr
                })
                .collect();
            tr
        })
        .collect();
    resp
}
