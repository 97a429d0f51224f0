//! CreatePartitions: grow a topic's partition count; new partitions are
//! placed on the least-loaded shards.

use rill_net::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use rill_net::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};
use rill_net::kafka_protocol::ResponseError;

use super::{command_failure, per_item, replica_assignment, str_bytes, Context, Failure};
use crate::cluster::{Draft, MetadataCommand, Placement};

const PARTITIONS_MAX: i32 = 100_000;

pub async fn handle(cx: &Context<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let shard = cx.shard;
    // (topic, new count, replica lists of the new partitions if given)
    type Wanted = (String, i32, Option<Vec<Vec<i32>>>);
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_str().to_string(),
                t.count,
                t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
            )
        })
        .collect();
    let validate_only = req.validate_only;
    let names: Vec<String> = wanted.iter().map(|(n, _, _)| n.clone()).collect();
    let outcome = shard
        .change_metadata(move |draft, placement| {
            wanted
                .iter()
                .map(|(name, count, manual)| {
                    let grown = grow(
                        draft,
                        placement,
                        name,
                        *count,
                        manual.as_deref(),
                        validate_only,
                    );
                    (name.clone(), grown)
                })
                .collect()
        })
        .await;
    let results = per_item(names, outcome);
    let mut resp = CreatePartitionsResponse::default();
    resp.results = results
        .into_iter()
        .map(|(name, error)| {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = TopicName(str_bytes(&name));
            if let Err((e, m)) = error {
                r.error_code = e.code();
                r.error_message = Some(str_bytes(&m));
            }
            r
        })
        .collect();
    resp
}

/// Grows topic `name` to `count` partitions (unless `validate_only`).
fn grow(
    draft: &mut Draft,
    placement: &Placement,
    name: &str,
    count: i32,
    manual: Option<&[Vec<i32>]>,
    validate_only: bool,
) -> Result<(), Failure> {
    let Some(topic) = draft.state().topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic `{name}` does not exist"),
        ));
    };
    let (id, current) = (topic.id, topic.partitions.len() as i32);
    if count <= current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic `{name}` has {current} partitions; the new count must be larger, not {count}"),
        ));
    }
    if count > PARTITIONS_MAX {
        return Err((
            ResponseError::InvalidPartitions,
            format!("at most {PARTITIONS_MAX} partitions"),
        ));
    }
    if let Some(lists) = manual {
        if lists.len() as i32 != count - current {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "increasing the partition count of `{name}` by {} needs that many assignments, not {}",
                    count - current,
                    lists.len()
                ),
            ));
        }
        let factor = replica_assignment::check(lists, current, &[placement.node_id])?;
        if factor != 1 {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!("`{name}` has 1 replica per partition; the new partitions are assigned {factor}"),
            ));
        }
    }
    if validate_only {
        return Ok(());
    }
    let partitions = draft
        .state()
        .place((count - current) as usize, placement.shards);
    draft
        .push(MetadataCommand::AddPartitions {
            topic: id,
            partitions,
        })
        .map_err(command_failure)
}
