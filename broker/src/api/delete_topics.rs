//! DeleteTopics: by name, or (v6) by id. Partitions are closed and their data
//! removed on their shards before the answer.

use rill_net::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use rill_net::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use rill_net::kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{command_failure, per_item, str_bytes, Context};
use crate::cluster::MetadataCommand;

pub async fn handle(cx: &Context<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let shard = cx.shard;
    let version = cx.version;
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
        .change_metadata(move |draft, _| {
            wanted
                .into_iter()
                .map(|(name, id)| {
                    let state = draft.state();
                    let found = match &name {
                        Some(n) => state.topics.get(n),
                        None => state.topic_by_id(id),
                    }
                    .map(|t| (t.name.clone(), t.id));
                    let deleted = match found {
                        Some((n, tid)) => draft
                            .push(MetadataCommand::DeleteTopic { id: tid })
                            .map(|()| (Some(n), tid))
                            .map_err(command_failure),
                        None => Err((
                            ResponseError::UnknownTopicOrPartition,
                            "topic does not exist".to_string(),
                        )),
                    };
                    ((name, id), deleted)
                })
                .collect()
        })
        .await;
    let results = per_item(asked, outcome);
    let mut resp = DeleteTopicsResponse::default();
    resp.responses = results
        .into_iter()
        .map(|((asked_name, asked_id), deleted)| {
            let (name, id) = match &deleted {
                Ok((name, id)) => (name.clone(), *id),
                Err(_) => (asked_name, asked_id),
            };
            let mut r = DeletableTopicResult::default();
            r.name = name.map(|n| TopicName(str_bytes(&n)));
            if version >= 6 {
                r.topic_id = id;
            }
            if let Err((e, message)) = deleted {
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
