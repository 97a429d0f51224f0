//! IncrementalAlterConfigs for topics and for the broker's dynamic configs
//! (resource name `""` for the cluster-wide default, or this broker's id):
//! SET, DELETE (back to the default), APPEND/SUBTRACT (list configs; none of
//! Rill's are lists). Also the shared machinery of the legacy AlterConfigs,
//! which replaces a resource's whole set of overrides.

use std::collections::BTreeMap;
use std::rc::Rc;

use rill_net::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use rill_net::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use rill_net::kafka_protocol::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{command_failure, per_item, str_bytes, Context, Failure};
use crate::cluster::{Draft, MetadataCommand, Placement};
use crate::config::{broker_config, topic_config};
use crate::shard::Shard;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// How a resource's configs change.
pub(super) enum Change {
    /// (name, operation, value) applied in order.
    Incremental(Vec<(String, i8, Option<String>)>),
    /// The new complete set of overrides.
    Replace(Vec<(String, Option<String>)>),
}

pub(super) struct Alter {
    pub resource_type: i8,
    pub name: String,
    pub change: Change,
}

/// Which configs a resource takes.
#[derive(Clone, Copy)]
enum Kind {
    Topic,
    Broker,
}

impl Kind {
    fn validate(self, name: &str, value: &str) -> Result<(), String> {
        match self {
            Kind::Topic => topic_config::validate(name, value),
            Kind::Broker => broker_config::validate(name, value),
        }
    }

    fn unknown(self, name: &str) -> Option<String> {
        match self {
            Kind::Topic if topic_config::known(name).is_none() => {
                Some(format!("unknown topic config `{name}`"))
            }
            Kind::Broker if broker_config::dynamic(name).is_none() => {
                broker_config::validate(name, "").err()
            }
            _ => None,
        }
    }
}

/// The overrides after `change`, or why it is refused.
fn changed_configs(
    kind: Kind,
    current: &BTreeMap<String, String>,
    change: &Change,
) -> Result<BTreeMap<String, String>, Failure> {
    let set =
        |configs: &mut BTreeMap<String, String>, name: &str, value: &Option<String>| match value {
            Some(v) => {
                kind.validate(name, v)
                    .map_err(|m| (ResponseError::InvalidConfig, m))?;
                configs.insert(name.to_string(), v.trim().to_string());
                Ok(())
            }
            None => Err((
                ResponseError::InvalidConfig,
                format!("`{name}` has no value"),
            )),
        };
    match change {
        Change::Replace(all) => {
            let mut configs = BTreeMap::new();
            for (name, value) in all {
                set(&mut configs, name, value)?;
            }
            Ok(configs)
        }
        Change::Incremental(ops) => {
            let mut configs = current.clone();
            for (name, op, value) in ops {
                match *op {
                    OP_SET => set(&mut configs, name, value)?,
                    OP_DELETE => {
                        if let Some(why) = kind.unknown(name) {
                            return Err((ResponseError::InvalidConfig, why));
                        }
                        configs.remove(name);
                    }
                    op => {
                        return Err((
                            ResponseError::InvalidConfig,
                            format!("operation {op} does not apply to `{name}`: it is not a list"),
                        ))
                    }
                }
            }
            Ok(configs)
        }
    }
}

pub async fn handle(
    cx: &Context<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let shard = cx.shard;
    let alters: Vec<Alter> = req
        .resources
        .iter()
        .map(|r| Alter {
            resource_type: r.resource_type,
            name: r.resource_name.as_str().to_string(),
            change: Change::Incremental(
                r.configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.as_str().to_string(),
                            c.config_operation,
                            c.value.as_ref().map(|v| v.as_str().to_string()),
                        )
                    })
                    .collect(),
            ),
        })
        .collect();
    let mut resp = IncrementalAlterConfigsResponse::default();
    resp.responses = alter(shard, alters, req.validate_only)
        .await
        .into_iter()
        .map(|(ty, name, error)| {
            let mut r = AlterConfigsResourceResponse::default();
            r.resource_type = ty;
            r.resource_name = str_bytes(&name);
            if let Some((e, m)) = error {
                r.error_code = e.code();
                r.error_message = Some(str_bytes(&m));
            }
            r
        })
        .collect();
    resp
}

/// Applies config changes to topics and broker configs on the controller;
/// one result per resource.
pub(super) async fn alter(
    shard: &Rc<Shard>,
    alters: Vec<Alter>,
    validate_only: bool,
) -> Vec<(i8, String, Option<Failure>)> {
    let keys: Vec<(i8, String)> = alters
        .iter()
        .map(|a| (a.resource_type, a.name.clone()))
        .collect();
    let outcome = shard
        .change_metadata(move |draft, placement| {
            alters
                .iter()
                .map(|a| {
                    let altered = decide(draft, placement, a, validate_only);
                    ((a.resource_type, a.name.clone()), altered)
                })
                .collect()
        })
        .await;
    per_item(keys, outcome)
        .into_iter()
        .map(|((ty, name), r)| (ty, name, r.err()))
        .collect()
}

/// The command that makes one resource's configs what `a` asks for, if any
/// change is needed, pushed onto `draft` (checked, not pushed, when `validate_only`).
fn decide(
    draft: &mut Draft,
    placement: &Placement,
    a: &Alter,
    validate_only: bool,
) -> Result<(), Failure> {
    let state = draft.state();
    let empty = BTreeMap::new();
    let (command, current) = match a.resource_type {
        RESOURCE_TOPIC => {
            let Some(topic) = state.topics.get(&a.name) else {
                return Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic `{}` does not exist", a.name),
                ));
            };
            let configs = changed_configs(Kind::Topic, &topic.configs, &a.change)?;
            (
                MetadataCommand::SetTopicConfigs {
                    topic: topic.id,
                    configs,
                },
                &topic.configs,
            )
        }
        RESOURCE_BROKER if a.name.is_empty() || a.name == placement.node_id.to_string() => {
            let current = state.broker_configs.get(&a.name).unwrap_or(&empty);
            let configs = changed_configs(Kind::Broker, current, &a.change)?;
            (
                MetadataCommand::SetBrokerConfigs {
                    resource: a.name.clone(),
                    configs,
                },
                current,
            )
        }
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "no broker `{}` (this is broker {}; `\"\"` is the cluster default)",
                    a.name, placement.node_id
                ),
            ))
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("configs of resource type {other} cannot be altered"),
            ))
        }
    };
    let unchanged = match &command {
        MetadataCommand::SetTopicConfigs { configs, .. }
        | MetadataCommand::SetBrokerConfigs { configs, .. } => configs == current,
        _ => unreachable!("a config command"),
    };
    if validate_only || unchanged {
        return Ok(());
    }
    draft.push(command).map_err(command_failure)
}
