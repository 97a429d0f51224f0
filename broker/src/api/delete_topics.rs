//! DeleteTopics: by name, or (v6) by id. Partitions are closed and their data
//! removed on their shards before the answer.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use rill_net::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use rill_net::kafka_protocol::ResponseError;
use uuid::Uuid;

use super::str_bytes;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // Each wanted topic as (name if given, id if given).
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.as_str().to_string()), Uuid::nil()))
            .collect()
    };
    let asked = wanted.clone();
    let outcome = shard
        .change_metadata(move |meta, _| {
            let mut changed = false;
            let mut out = Vec::new();
            for (name, id) in &wanted {
                let found = match name {
                    Some(n) => meta.topics.get(n).map(|t| (t.name.clone(), t.id)),
                    None => meta.topic_by_id(*id).map(|t| (t.name.clone(), t.id)),
                };
                match found {
                    Some((n, tid)) => {
                        meta.topics.remove(&n);
                        changed = true;
                        out.push((Some(n), tid, None));
                    }
                    None => out.push((
                        name.clone(),
                        *id,
                        Some((
                            ResponseError::UnknownTopicOrPartition,
                            "topic does not exist".to_string(),
                        )),
                    )),
                }
            }
            (out, changed)
        })
        .await;
    let results: Vec<(Option<String>, Uuid, Option<super::Failure>)> = match outcome {
        Ok(out) => out,
        Err(e) => asked
            .into_iter()
            .map(|(n, id)| (n, id, Some((ResponseError::KafkaStorageError, e.clone()))))
            .collect(),
    };
    let mut resp = DeleteTopicsResponse::default();
    resp.responses = results
        .into_iter()
        .map(|(name, id, failure)| {
            let mut r = DeletableTopicResult::default();
            r.name = name.map(|n| TopicName(str_bytes(&n)));
            if version >= 6 {
                r.topic_id = id;
            }
            if let Some((e, message)) = failure {
                r.error_code = e.code();
                if version >= 5 {
                    r.error_message = Some(str_bytes(&message));
                }
            }
            r
        })
        .collect();
    resp
}
