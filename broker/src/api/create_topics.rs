//! CreateTopics: validated on the controller (shard 0), persisted, opened on
//! every owning shard before the answer.

use std::collections::BTreeMap;

use rill_net::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use rill_net::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use rill_net::kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{command_failure, per_item, replica_assignment, str_bytes, Context};
use crate::cluster::{validate_topic_name, ClusterMeta, MetadataCommand, Placement};
use crate::config::topic_config;

/// A topic as the client asked for it, in plain (`Send`) data.
struct Spec {
    name: String,
    partitions: i32,
    replication_factor: i16,
    /// Manual replica assignment: (partition index, broker ids).
    assignments: Vec<(i32, Vec<i32>)>,
    configs: Vec<(String, Option<String>)>,
}

/// A created topic's id and partition count, or why it was not created.
type Created = Result<(Uuid, i32), super::Failure>;

/// Partition count limit per topic: keeps a typo from creating millions of logs.
const PARTITIONS_MAX: i32 = 100_000;

fn check(
    spec: &Spec,
    meta: &ClusterMeta,
    placement: &Placement,
) -> Result<(i32, BTreeMap<String, String>), (ResponseError, String)> {
    let default_partitions = placement.default_partitions;
    validate_topic_name(&spec.name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if meta.topics.contains_key(&spec.name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic `{}` already exists", spec.name),
        ));
    }
    let mut replication_factor = spec.replication_factor;
    let partitions = if !spec.assignments.is_empty() {
        let lists = replica_assignment::in_partition_order(spec.assignments.clone())?;
        let factor = replica_assignment::check(&lists, 0, &[placement.node_id])?;
        let n = lists.len() as i32;
        // Kafka wants -1 for both with an assignment; the matching numbers are
        // accepted too, since they say the same thing.
        if !(spec.partitions == -1 || spec.partitions == n)
            || !(spec.replication_factor == -1 || spec.replication_factor as usize == factor)
        {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "the replica assignment gives {n} partitions of {factor} replicas, but the request also asks for {} partitions of {} replicas; give one or the other",
                    spec.partitions, spec.replication_factor
                ),
            ));
        }
        replication_factor = factor as i16;
        n
    } else if spec.partitions == -1 {
        default_partitions
    } else {
        spec.partitions
    };
    if !(1..=PARTITIONS_MAX).contains(&partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partition count must be 1..={PARTITIONS_MAX}, not {partitions}"),
        ));
    }
    if !(replication_factor == -1 || replication_factor == 1) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is larger than the 1 broker available"
            ),
        ));
    }
    let mut configs = BTreeMap::new();
    for (name, value) in &spec.configs {
        let Some(value) = value else {
            return Err((
                ResponseError::InvalidConfig,
                format!("config `{name}` has no value"),
            ));
        };
        topic_config::validate(name, value).map_err(|m| (ResponseError::InvalidConfig, m))?;
        configs.insert(name.clone(), value.trim().to_string());
    }
    Ok((partitions, configs))
}

pub async fn handle(cx: &Context<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let shard = cx.shard;
    let version = cx.version;
    let specs: Vec<Spec> = req
        .topics
        .iter()
        .map(|t| Spec {
            name: t.name.as_str().to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_string(),
                        c.value.as_ref().map(|v| v.as_str().to_string()),
                    )
                })
                .collect(),
        })
        .collect();
    let validate_only = req.validate_only;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let outcome = shard
        .change_metadata(move |draft, placement| {
            specs
                .iter()
                .map(|spec| {
                    let created: Created =
                        check(spec, draft.state(), placement).and_then(|(partitions, configs)| {
                            if validate_only {
                                return Ok((Uuid::nil(), partitions));
                            }
                            let id = Uuid::new_v4();
                            let create = MetadataCommand::create_topic(
                                draft.state(),
                                &spec.name,
                                id,
                                partitions,
                                configs,
                                placement.shards,
                            );
                            draft.push(create).map_err(command_failure)?;
                            Ok((id, partitions))
                        });
                    (spec.name.clone(), created)
                })
                .collect()
        })
        .await;
    let results = per_item(names, outcome);

    let mut resp = CreateTopicsResponse::default();
    resp.topics = results
        .into_iter()
        .map(|(name, r)| {
            let mut t = CreatableTopicResult::default();
            t.name = TopicName(str_bytes(&name));
            match r {
                Ok((id, partitions)) => {
                    if version >= 7 {
                        t.topic_id = id;
                    }
                    if version >= 5 {
                        t.num_partitions = partitions;
                        t.replication_factor = 1;
                    }
                }
                Err((e, message)) => {
                    t.error_code = e.code();
                    t.error_message = Some(str_bytes(&message));
                    if version >= 5 {
                        t.num_partitions = -1;
                        t.replication_factor = -1;
                    }
                }
            }
            t
        })
        .collect();
    resp
}
