//! DescribeCluster: this broker, which is also the controller.

use rill_net::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use rill_net::kafka_protocol::messages::{BrokerId, DescribeClusterResponse};

use super::str_bytes;
use super::Context;

pub fn handle(cx: &Context<'_>) -> DescribeClusterResponse {
    let shard = cx.shard;
    let meta = shard.meta();
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(&meta.cluster_id);
    resp.controller_id = BrokerId(shard.config.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(shard.config.node_id);
    b.host = str_bytes(&shard.advertised.0);
    b.port = shard.advertised.1 as i32;
    resp.brokers = vec![b];
    resp
}
