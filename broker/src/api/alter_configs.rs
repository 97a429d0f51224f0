//! AlterConfigs (the legacy, non-incremental API): replaces a topic's whole
//! set of config overrides. Older clients (confluent-kafka before 2.2) only
//! have this one.

use rill_net::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use rill_net::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::{alter, Alter, Change};
use super::str_bytes;
use super::Context;

pub async fn handle(cx: &Context<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let shard = cx.shard;
    let alters: Vec<Alter> = req
        .resources
        .iter()
        .map(|r| Alter {
            resource_type: r.resource_type,
            name: r.resource_name.as_str().to_string(),
            change: Change::Replace(
                r.configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.as_str().to_string(),
                            c.value.as_ref().map(|v| v.as_str().to_string()),
                        )
                    })
                    .collect(),
            ),
        })
        .collect();
    let mut resp = AlterConfigsResponse::default();
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
