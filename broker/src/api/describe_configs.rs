//! DescribeConfigs for topics (overrides and defaults) and for this broker.

use rill_net::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use rill_net::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use rill_net::kafka_protocol::ResponseError;

use super::str_bytes;
use super::Context;
use crate::config::broker_config::{self, Layer};
use crate::config::topic_config::{self, KNOWN};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's `ConfigType` STRING.
const TYPE_STRING: i8 = 2;

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

pub fn handle(cx: &Context<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let shard = cx.shard;
    let version = cx.version;
    let meta = shard.meta();
    let node_id = shard.config.node_id;
    let defaults = &shard.topic_defaults_of(&meta);
    // A topic config without an override takes its default from a dynamic
    // broker config when one is set (and says so), else the static default.
    let default_source = |topic_config: &str| {
        broker_config::for_topic_config(topic_config)
            .and_then(|c| broker_config::dynamic_value(&meta, node_id, c.name))
            .map_or(SOURCE_DEFAULT, |(_, layer)| layer.source())
    };
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
                                    default_source(c.name),
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
                    let node = c.node_id.to_string();
                    // The cluster-default resource ("") shows only what is set
                    // at that layer, as Kafka does; the broker shows everything.
                    let cluster_default = r.resource_name.is_empty();
                    let read_only = [
                        ("broker.id", c.node_id.to_string(), 3),
                        ("node.id", c.node_id.to_string(), 3),
                        ("log.dirs", c.data_dir.display().to_string(), 2),
                        ("listeners", format!("PLAINTEXT://{}", c.listen), 2),
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
                    ];
                    let mut configs: Vec<_> = Vec::new();
                    if !cluster_default {
                        configs.extend(read_only.into_iter().filter(|(n, _, _)| wanted(n)).map(
                            |(n, v, ty)| {
                                let mut e = entry(n, v, SOURCE_STATIC_BROKER, ty, version);
                                e.read_only = true;
                                e
                            },
                        ));
                    }
                    for d in broker_config::DYNAMIC.iter().filter(|d| wanted(d.name)) {
                        let set = if cluster_default {
                            meta.broker_configs
                                .get("")
                                .and_then(|m| m.get(d.name))
                                .map(|v| (v.clone(), Layer::ClusterDefault))
                        } else {
                            broker_config::dynamic_value(&meta, node_id, d.name)
                                .map(|(v, l)| (v.to_string(), l))
                        };
                        match set {
                            Some((v, layer)) => configs.push(entry(
                                d.name,
                                v,
                                layer.source(),
                                d.config_type,
                                version,
                            )),
                            None if !cluster_default => configs.push(entry(
                                d.name,
                                broker_config::current_value(d, defaults),
                                Layer::Static.source(),
                                d.config_type,
                                version,
                            )),
                            None => {}
                        }
                    }
                    // Kafka-only settings that were set: shown as recorded,
                    // and said to be unused.
                    let layers: Vec<(Layer, &str)> = if cluster_default {
                        vec![(Layer::ClusterDefault, "")]
                    } else {
                        vec![(Layer::Broker, node.as_str()), (Layer::ClusterDefault, "")]
                    };
                    let mut recorded = std::collections::BTreeMap::new();
                    for (layer, resource) in layers {
                        for (name, value) in meta.broker_configs.get(resource).into_iter().flatten()
                        {
                            if broker_config::kafka_only(name) && wanted(name) {
                                recorded
                                    .entry(name.clone())
                                    .or_insert((value.clone(), layer));
                            }
                        }
                    }
                    for (name, (value, layer)) in recorded {
                        let mut e = entry(&name, value, layer.source(), TYPE_STRING, version);
                        if broker_config::sensitive(&name) {
                            e.value = None;
                            e.is_sensitive = true;
                        }
                        if version >= 3 {
                            e.documentation = Some(str_bytes(broker_config::KAFKA_ONLY_NOTE));
                        }
                        configs.push(e);
                    }
                    out.configs = configs;
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
