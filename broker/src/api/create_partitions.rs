//! CreatePartitions: grow a topic's partition count; new partitions are
//! placed on the least-loaded shards.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use rill_net::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};
use rill_net::kafka_protocol::ResponseError;

use super::{replica_assignment, str_bytes};
use crate::shard::Shard;

const PARTITIONS_MAX: i32 = 100_000;

pub async fn handle(shard: &Rc<Shard>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
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
        .change_metadata(move |meta, placement| {
                    let mut changed = false;
                    let mut out = Vec::new();
                    for (name, count, manual) in &wanted {
                        let current = meta.topics.get(name).map(|t| t.partitions.len() as i32);
                        let error = match current {
                            None => Some((ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist"))),
                            Some(c) if *count <= c => Some((
                                ResponseError::InvalidPartitions,
                                format!("topic `{name}` has {c} partitions; the new count must be larger, not {count}"),
                            )),
                            Some(_) if *count > PARTITIONS_MAX => {
                                Some((ResponseError::InvalidPartitions, format!("at most {PARTITIONS_MAX} partitions")))
                            }
                            Some(c) if manual.as_ref().is_some_and(|a| a.len() as i32 != *count - c) => Some((
                                ResponseError::InvalidReplicaAssignment,
                                format!(
                                    "increasing the partition count of `{name}` by {} needs that many assignments, not {}",
                                    *count - c,
                                    manual.as_ref().map_or(0, |a| a.len())
                                ),
                            )),
                            Some(c) => match manual.as_ref().map(|a| replica_assignment::check(a, c, &[placement.node_id])) {
                                Some(Err(e)) => Some(e),
                                Some(Ok(factor)) if factor != 1 => Some((
                                    ResponseError::InvalidReplicaAssignment,
                                    format!("`{name}` has 1 replica per partition; the new partitions are assigned {factor}"),
                                )),
                                _ => {
                                if !validate_only {
                                    let added = meta.place((*count - c) as usize, placement.shards);
                                    meta.topics.get_mut(name).expect("exists").partitions.extend(added);
                                    changed = true;
                                }
                                None
                            }},
                        };
                        out.push((name.clone(), error));
                    }
                    (out, changed)
                })
        .await;
    let results: Vec<(String, Option<(ResponseError, String)>)> = match outcome {
        Ok(out) => out,
        Err(e) => names
            .into_iter()
            .map(|n| (n, Some((ResponseError::KafkaStorageError, e.clone()))))
            .collect(),
    };
    let mut resp = CreatePartitionsResponse::default();
    resp.results = results
        .into_iter()
        .map(|(name, error)| {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = TopicName(str_bytes(&name));
            if let Some((e, m)) = error {
                r.error_code = e.code();
                r.error_message = Some(str_bytes(&m));
            }
            r
        })
        .collect();
    resp
}
