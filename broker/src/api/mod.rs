//! Kafka API handlers, one per file. Each takes the decoded request and
//! returns the response body (or nothing, for produce with acks=0).

mod alter_configs;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod incremental_alter_configs;
mod list_offsets;
mod metadata;
mod produce;
mod replica_assignment;

use std::future::Future;
use std::rc::Rc;

use rill_net::kafka_protocol::messages::{RequestKind, ResponseKind};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::request::Request;
use rill_net::versions;

use crate::shard::Shard;

/// Lets a connection start its next request before this one is answered.
/// Requests are admitted when done, except Produce, which admits as soon as
/// its batches are appended (their order fixed) and then waits for the disk.
/// Kafka clients rely on a connection's requests taking effect in order; this
/// keeps that while overlapping one request's fdatasync with the next.
#[derive(Debug, Default)]
pub struct Admission(Option<async_channel::Sender<()>>);

impl Admission {
    /// An admission and the receiver that resolves once it is given (or the
    /// request is finished and the admission dropped).
    pub fn new() -> (Admission, async_channel::Receiver<()>) {
        let (tx, rx) = async_channel::bounded(1);
        (Admission(Some(tx)), rx)
    }

    pub fn admit(&mut self) {
        self.0 = None;
    }
}

/// Answers one request; `None` means no response is sent (acks=0).
pub async fn handle(shard: &Rc<Shard>, req: Request) -> Option<ResponseKind> {
    handle_admitting(shard, req, &mut Admission::default()).await
}

/// [`handle`], admitting the connection's next request as early as allowed.
pub async fn handle_admitting(
    shard: &Rc<Shard>,
    req: Request,
    admission: &mut Admission,
) -> Option<ResponseKind> {
    let v = req.version;
    Some(match req.body {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(versions::api_versions_response(0))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(shard, r, v).await),
        RequestKind::Produce(r) => {
            return produce::handle(shard, r, v, admission)
                .await
                .map(ResponseKind::Produce)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(shard, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, r, v).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(shard, r, v).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(shard, r, v).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(shard, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(shard, r, v))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(shard, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(shard, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(shard, r).await)
        }
        RequestKind::DescribeCluster(_) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(shard))
        }
        other => {
            // decode_request only lets advertised APIs through.
            unreachable!("request for an API that is not advertised: {other:?}")
        }
    })
}

/// Runs futures concurrently on this shard and collects their outputs in order.
pub async fn join_all<T: 'static>(futures: Vec<impl Future<Output = T> + 'static>) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(glommio::spawn_local).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// A Kafka error with the message to send with it.
pub type Failure = (rill_net::kafka_protocol::ResponseError, String);

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Creates topics that do not exist, with broker defaults (auto-create).
/// Returns once they are open on their shards.
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) {
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| crate::metadata::validate_topic_name(n).is_ok())
        .collect();
    if names.is_empty() {
        return;
    }
    let result = shard
        .change_metadata(move |meta, placement| {
            let mut changed = false;
            for name in names {
                if !meta.topics.contains_key(&name) {
                    create_topics::insert_topic(
                        meta,
                        &name,
                        placement.default_partitions,
                        Default::default(),
                        placement.shards,
                    );
                    changed = true;
                }
            }
            ((), changed)
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "auto-creating topics failed");
    }
}
