//! IncrementalAlterConfigs for topics: SET, DELETE (back to the default),
//! APPEND/SUBTRACT (list configs; none of Rill's topic configs are lists).

use std::rc::Rc;

use rill_net::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use rill_net::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use rill_net::kafka_protocol::ResponseError;

use super::describe_configs::RESOURCE_TOPIC;
use super::str_bytes;
use crate::shard::Shard;
use crate::topic_config;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

struct Alter {
    resource_type: i8,
    name: String,
    ops: Vec<(String, i8, Option<String>)>,
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
            ops: r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.as_str().to_string()),
                    )
                })
                .collect(),
        })
        .collect();
    let validate_only = req.validate_only;
    let results: Vec<(i8, String, Option<super::Failure>)> = shard
        .on(0, move |s0| async move {
            let controller = s0.controller.as_ref().expect("shard 0 hosts the controller");
            let outcome = controller
                .change(&s0, |meta| {
                    let mut changed = false;
                    let mut out = Vec::new();
                    for a in &alters {
                        let result = (|| {
                            if a.resource_type != RESOURCE_TOPIC {
                                return Err((ResponseError::InvalidRequest, "only topic configs can be altered".to_string()));
                            }
                            let Some(topic) = meta.topics.get(&a.name) else {
                                return Err((ResponseError::UnknownTopicOrPartition, format!("topic `{}` does not exist", a.name)));
                            };
                            let mut configs = topic.configs.clone();
                            for (name, op, value) in &a.ops {
                                match (*op, value) {
                                    (OP_SET, Some(v)) => {
                                        topic_config::validate(name, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
                                        configs.insert(name.clone(), v.trim().to_string());
                                    }
                                    (OP_SET, None) => {
                                        return Err((ResponseError::InvalidConfig, format!("SET `{name}` without a value")))
                                    }
                                    (OP_DELETE, _) => {
                                        if topic_config::known(name).is_none() {
                                            return Err((ResponseError::InvalidConfig, format!("unknown topic config `{name}`")));
                                        }
                                        configs.remove(name);
                                    }
                                    (op, _) => {
                                        return Err((
                                            ResponseError::InvalidConfig,
                                            format!("operation {op} does not apply to `{name}`: it is not a list"),
                                        ))
                                    }
                                }
                            }
                            Ok(configs)
                        })();
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
                Err(e) => alters
                    .iter()
                    .map(|a| (a.resource_type, a.name.clone(), Some((ResponseError::KafkaStorageError, e.clone()))))
                    .collect(),
            }
        })
        .await;
    let mut resp = IncrementalAlterConfigsResponse::default();
    resp.responses = results
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
