//! Kafka API handlers, one per file. Each takes the request's [`Context`]
//! (shard, connection, version, client id) and the decoded body, and returns
//! the response body (or nothing, for produce with acks=0).

mod alter_configs;
mod consumer_groups;
mod context;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod groups;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod replica_assignment;

use std::future::Future;
use std::rc::Rc;

use rill_net::kafka_protocol::messages::{RequestKind, ResponseKind};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::request::Request;
use rill_net::versions;

use rill_net::kafka_protocol::ResponseError;

use crate::cluster::{ChangeError, CommandError};
use crate::shard::Shard;
pub use context::{Connection, Context, Principal};

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

/// Answers one request that came in no connection (tests, the fuzz
/// target); `None` means no response is sent (acks=0).
pub async fn handle(shard: &Rc<Shard>, req: Request) -> Option<ResponseKind> {
    handle_admitting(
        shard,
        &Connection::default(),
        req,
        &mut Admission::default(),
    )
    .await
}

/// Answers one request of `connection`, admitting the connection's next
/// request as early as allowed.
pub async fn handle_admitting(
    shard: &Rc<Shard>,
    connection: &Connection,
    req: Request,
    admission: &mut Admission,
) -> Option<ResponseKind> {
    let Request {
        header,
        version,
        body,
        ..
    } = req;
    let cx = &Context {
        shard,
        connection,
        version,
        client_id: header.client_id.as_ref().map(|c| c.as_str()),
    };
    Some(match body {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(versions::api_versions_response(0))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(cx, r).await),
        RequestKind::Produce(r) => {
            return produce::handle(cx, r, admission)
                .await
                .map(ResponseKind::Produce)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(cx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(cx, r).await),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(cx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(cx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(cx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(cx, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(cx, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(cx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(cx, r).await)
        }
        RequestKind::DescribeCluster(_) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(cx))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(cx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(cx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join_group(cx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync_group(cx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(cx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(cx, r).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(cx, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(cx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(cx, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_groups::heartbeat(cx, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(cx, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::offset_commit(cx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offsets::offset_fetch(cx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offsets::offset_delete(cx, r).await)
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
pub type Failure = (ResponseError, String);

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Creates topics that do not exist, with broker defaults (auto-create).
/// Returns once they are open on their shards.
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) {
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| crate::cluster::validate_topic_name(n).is_ok())
        .collect();
    if names.is_empty() {
        return;
    }
    let result = shard
        .change_metadata(move |draft, placement| {
            for name in names {
                if draft.state().topics.contains_key(&name) {
                    continue;
                }
                let create = crate::cluster::MetadataCommand::create_topic(
                    draft.state(),
                    &name,
                    uuid::Uuid::new_v4(),
                    placement.default_partitions,
                    Default::default(),
                    placement.shards,
                );
                draft.push(create).expect("the name is free");
            }
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "auto-creating topics failed");
    }
}

/// The Kafka error for a command that does not fit the state.
pub fn command_failure(e: CommandError) -> Failure {
    let code = match e {
        CommandError::TopicExists(_) | CommandError::TopicIdTaken(_) => {
            ResponseError::TopicAlreadyExists
        }
        CommandError::UnknownTopic(_) | CommandError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        CommandError::ProducerIdsExhausted { .. } => ResponseError::KafkaStorageError,
    };
    (code, e.to_string())
}

/// One item of a request (a topic, a resource) and what became of it.
pub type ItemResult<K, T> = (K, Result<T, Failure>);

/// One result per item of a request whose items are decided in one metadata
/// change: the change's own results, or, when the change as a whole failed
/// (the metadata could not be saved, or its partitions opened), that failure
/// as KAFKA_STORAGE_ERROR for every item.
pub fn per_item<K, T>(
    keys: Vec<K>,
    outcome: Result<Vec<ItemResult<K, T>>, ChangeError>,
) -> Vec<ItemResult<K, T>> {
    match outcome {
        Ok(results) => results,
        Err(e) => keys
            .into_iter()
            .map(|k| (k, Err((ResponseError::KafkaStorageError, e.to_string()))))
            .collect(),
    }
}
