//! CreatePartitions: grow a topic's partition count; new partitions are
//! placed on the least-loaded shards.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use rill_net::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};
use rill_net::kafka_protocol::ResponseError;

use super::str_bytes;
use crate::shard::Shard;

const PARTITIONS_MAX: i32 = 100_000;

pub async fn handle(shard: &Rc<Shard>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let wanted: Vec<(String, i32, bool)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_str().to_string(),
                t.count,
                t.assignments.is_some(),
            )
        })
        .collect();
    let validate_only = req.validate_only;
    let results: Vec<(String, Option<(ResponseError, String)>)> = shard
        .on(0, move |s0| async move {
            let shards = s0.router.shards();
            let controller = s0.controller.as_ref().expect("shard 0 hosts the controller");
            let outcome = controller
                .change(&s0, |meta| {
                    let mut changed = false;
                    let mut out = Vec::new();
                    for (name, count, manual) in &wanted {
                        let current = meta.topics.get(name).map(|t| t.partitions.len() as i32);
                        let error = match current {
                            None => Some((ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist"))),
                            Some(_) if *manual => {
                                Some((ResponseError::InvalidReplicaAssignment, "manual replica assignment is not supported".into()))
                            }
                            Some(c) if *count <= c => Some((
                                ResponseError::InvalidPartitions,
                                format!("topic `{name}` has {c} partitions; the new count must be larger, not {count}"),
                            )),
                            Some(_) if *count > PARTITIONS_MAX => {
                                Some((ResponseError::InvalidPartitions, format!("at most {PARTITIONS_MAX} partitions")))
                            }
                            Some(c) => {
                                if !validate_only {
                                    let added = meta.place((*count - c) as usize, shards);
                                    meta.topics.get_mut(name).expect("exists").partitions.extend(added);
                                    changed = true;
                                }
                                None
                            }
                        };
                        out.push((name.clone(), error));
                    }
                    (out, changed)
                })
                .await;
            match outcome {
                Ok(out) => out,
                Err(e) => wanted.iter().map(|(n, _, _)| (n.clone(), Some((ResponseError::KafkaStorageError, e.clone())))).collect(),
            }
        })
        .await;
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
