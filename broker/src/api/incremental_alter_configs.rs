//! IncrementalAlterConfigs for topics: SET, DELETE (back to the default),
//! APPEND/SUBTRACT (list configs; none of Rill's topic configs are lists).
//! Also the shared machinery of the legacy AlterConfigs, which replaces a
//! topic's whole set of overrides.

use std::collections::BTreeMap;
use std::rc::Rc;

use rill_net::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use rill_net::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use rill_net::kafka_protocol::ResponseError;

use super::describe_configs::RESOURCE_TOPIC;
use super::{str_bytes, Failure};
use crate::shard::Shard;
use crate::topic_config;

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

/// The overrides after `change`, or why it is refused.
fn changed_configs(
    current: &BTreeMap<String, String>,
    change: &Change,
) -> Result<BTreeMap<String, String>, Failure> {
    let set =
        |configs: &mut BTreeMap<String, String>, name: &str, value: &Option<String>| match value {
            Some(v) => {
                topic_config::validate(name, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
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
                        if topic_config::known(name).is_none() {
                            return Err((
                                ResponseError::InvalidConfig,
                                format!("unknown topic config `{name}`"),
                            ));
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
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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

/// Applies config changes to topics on the controller; one result per resource.
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
        .change_metadata(move |meta, _| {
            let mut changed = false;
            let mut out = Vec::new();
            for a in &alters {
                let result = if a.resource_type != RESOURCE_TOPIC {
                    Err((
                        ResponseError::InvalidRequest,
                        "only topic configs can be altered".to_string(),
                    ))
                } else {
                    match meta.topics.get(&a.name) {
                        None => Err((
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic `{}` does not exist", a.name),
                        )),
                        Some(topic) => changed_configs(&topic.configs, &a.change),
                    }
                };
                match result {
                    Ok(configs) => {
                        if !validate_only {
                            let t = meta.topics.get_mut(&a.name).expect("checked");
                            if t.configs != configs {
                                t.configs = configs;
                                changed = true;
                            }
                        }
                        out.push((a.resource_type, a.name.clone(), None));
                    }
                    Err(e) => out.push((a.resource_type, a.name.clone(), Some(e))),
                }
            }
            (out, changed)
        })
        .await;
    match outcome {
        Ok(out) => out,
        Err(e) => keys
            .into_iter()
            .map(|(ty, n)| (ty, n, Some((ResponseError::KafkaStorageError, e.clone()))))
            .collect(),
    }
}
