//! DescribeConfigs for topics (overrides and defaults) and for this broker.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use rill_net::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use rill_net::kafka_protocol::ResponseError;

use super::str_bytes;
use crate::shard::Shard;
use crate::topic_config::{self, KNOWN};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(
    name: &str,
    value: String,
    source: i8,
    config_type: i8,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = Some(str_bytes(&value));
    c.config_source = source;
    if version >= 3 {
        c.config_type = config_type;
    }
    c
}

pub fn handle(
    shard: &Rc<Shard>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let meta = shard.meta();
    let defaults = &shard.config.topic_defaults;
    let mut resp = DescribeConfigsResponse::default();
    resp.results = req
        .resources
        .iter()
        .map(|r| {
            let mut out = DescribeConfigsResult::default();
            out.resource_type = r.resource_type;
            out.resource_name = r.resource_name.clone();
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|ks| ks.iter().map(|k| k.as_str().to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == name));
            match r.resource_type {
                RESOURCE_TOPIC => match meta.topics.get(r.resource_name.as_str()) {
                    None => {
                        out.error_code = ResponseError::UnknownTopicOrPartition.code();
                        out.error_message = Some(str_bytes("topic does not exist"));
                    }
                    Some(t) => {
                        out.configs = KNOWN
                            .iter()
                            .filter(|c| wanted(c.name))
                            .map(|c| match t.configs.get(c.name) {
                                Some(v) => entry(
                                    c.name,
                                    v.clone(),
                                    SOURCE_TOPIC,
                                    topic_config::config_type(c),
                                    version,
                                ),
                                None => entry(
                                    c.name,
                                    topic_config::default_value(c.name, defaults),
                                    SOURCE_DEFAULT,
                                    topic_config::config_type(c),
                                    version,
                                ),
                            })
                            .collect();
                    }
                },
                RESOURCE_BROKER
                    if r.resource_name.is_empty()
                        || r.resource_name.as_str() == shard.config.node_id.to_string() =>
                {
                    let c = &shard.config;
                    let settings = [
                        ("broker.id", c.node_id.to_string(), 3),
                        ("num.partitions", defaults.partitions.to_string(), 3),
                        (
                            "auto.create.topics.enable",
                            c.auto_create_topics.to_string(),
                            1,
                        ),
                        (
                            "socket.request.max.bytes",
                            c.max_request_bytes.to_string(),
                            3,
                        ),
                        ("log.retention.ms", defaults.retention_ms.to_string(), 5),
                        (
                            "log.retention.bytes",
                            defaults.retention_bytes.to_string(),
                            5,
                        ),
                        ("log.segment.bytes", defaults.segment_bytes.to_string(), 3),
                        ("log.roll.ms", defaults.segment_ms.to_string(), 5),
                        (
                            "message.max.bytes",
                            defaults.max_message_bytes.to_string(),
                            3,
                        ),
                        ("log.flush.interval.ms", defaults.flush_ms.to_string(), 5),
                    ];
                    out.configs = settings
                        .into_iter()
                        .filter(|(n, _, _)| wanted(n))
                        .map(|(n, v, ty)| entry(n, v, SOURCE_STATIC_BROKER, ty, version))
                        .collect();
                }
                RESOURCE_BROKER => {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(str_bytes("no such broker"));
                }
                other => {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )));
                }
            }
            out
        })
        .collect();
    resp
}
