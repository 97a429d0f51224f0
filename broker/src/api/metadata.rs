//! Metadata: brokers, and topics with their partitions and leaders.

use rill_net::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use rill_net::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use rill_net::kafka_protocol::ResponseError;

use super::str_bytes;
use super::Context;
use uuid::Uuid;

pub async fn handle(cx: &Context<'_>, req: MetadataRequest) -> MetadataResponse {
    let shard = cx.shard;
    let version = cx.version;
    // v10+ may ask by topic id (clients of the consumer protocol learn their
    // assignment as ids and look the names up).
    let by_id: Vec<Uuid> = req
        .topics
        .iter()
        .flatten()
        .filter(|t| t.name.is_none() && !t.topic_id.is_nil())
        .map(|t| t.topic_id)
        .collect();
    let requested: Option<Vec<String>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.as_str().to_string()))
            .collect()
    });
    // Before v4 the request had no flag: creation was allowed by the broker setting alone.
    let may_create =
        shard.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    if let (true, Some(names)) = (may_create, &requested) {
        let meta = shard.meta();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !meta.topics.contains_key(*n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            super::auto_create(shard, missing).await;
        }
    }
    let meta = shard.meta();
    let node = BrokerId(shard.config.node_id);
    let mut unknown_ids = Vec::new();
    let names: Vec<String> = match requested {
        None => meta.topics.keys().cloned().collect(),
        Some(mut names) => {
            for id in by_id {
                match meta.topics.values().find(|t| t.id == id) {
                    Some(t) => names.push(t.name.clone()),
                    None => unknown_ids.push(id),
                }
            }
            names
        }
    };

    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = node;
    broker.host = str_bytes(&shard.advertised.0);
    broker.port = shard.advertised.1 as i32;
    resp.brokers = vec![broker];
    // Fields a version does not carry must keep their defaults, or encoding fails.
    if version >= 2 {
        resp.cluster_id = Some(str_bytes(&meta.cluster_id));
    }
    if version >= 1 {
        resp.controller_id = node;
    }
    resp.topics = names
        .iter()
        .map(|name| {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(TopicName(str_bytes(name)));
            match meta.topics.get(name) {
                None => {
                    t.error_code = if crate::cluster::validate_topic_name(name).is_ok() {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        ResponseError::InvalidTopicException.code()
                    };
                }
                Some(topic) => {
                    if version >= 10 {
                        t.topic_id = topic.id;
                    }
                    t.is_internal = name == crate::groups::OFFSETS_TOPIC;
                    t.partitions = (0..topic.partitions.len() as i32)
                        .map(|i| {
                            let mut p = MetadataResponsePartition::default();
                            p.partition_index = i;
                            p.leader_id = node;
                            if version >= 7 {
                                p.leader_epoch = 0;
                            }
                            p.replica_nodes = vec![node];
                            p.isr_nodes = vec![node];
                            p
                        })
                        .collect();
                }
            }
            t
        })
        .collect();
    resp.topics.extend(unknown_ids.into_iter().map(|id| {
        let mut t = MetadataResponseTopic::default();
        t.topic_id = id;
        t.error_code = ResponseError::UnknownTopicId.code();
        t
    }));
    resp
}
