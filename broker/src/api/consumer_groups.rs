//! The KIP-848 consumer protocol: ConsumerGroupHeartbeat (join, heartbeat,
//! reconcile, leave — one request) and ConsumerGroupDescribe. The group
//! coordinator assigns partitions itself (`groups::assignor`); the
//! decisions are the pure `groups::consumer` state machine's.

use std::collections::{BTreeMap, BTreeSet};

use rill_net::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup, Member,
};
use rill_net::kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::ResponseError;
use uuid::Uuid;

use super::groups::client_host;
use super::{str_bytes, Context};
use crate::groups::assignor::Partitions;
use crate::groups::consumer::{Heartbeat, HeartbeatError, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};
use crate::groups::coordinator::{self, on_coordinator};

fn invalid(message: &str) -> HeartbeatError {
    HeartbeatError {
        error: ResponseError::InvalidRequest,
        message: message.to_string(),
    }
}

/// Kafka's checks of a heartbeat's shape, before any group is touched.
fn validate(version: i16, req: &ConsumerGroupHeartbeatRequest) -> Result<(), HeartbeatError> {
    if req.group_id.is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if version >= 1 && req.member_id.is_empty() {
        return Err(invalid("MemberId can't be empty."));
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
        return Err(invalid("RackId can't be empty."));
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return Err(invalid(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.topic_partitions.as_ref().is_some_and(|t| !t.is_empty()) {
                return Err(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return Err(invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        STATIC_LEAVE_EPOCH if req.instance_id.is_none() => {
            return Err(invalid("InstanceId can't be null."));
        }
        e if e > 0 || e == STATIC_LEAVE_EPOCH || e == LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
        }
        _ => return Err(invalid("MemberEpoch is invalid.")),
    }
    Ok(())
}

pub async fn heartbeat(
    cx: &Context<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let limits = cx.shard.groups.limits.consumer;
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    resp.heartbeat_interval_ms = limits.heartbeat_interval_ms;
    if let Err(e) = validate(cx.version, &req) {
        resp.error_code = e.error.code();
        resp.error_message = Some(str_bytes(&e.message));
        return resp;
    }
    let member_id = if req.member_id.is_empty() {
        // v0: the coordinator names a new member (v1+: the client does, KIP-1082).
        Uuid::new_v4().to_string()
    } else {
        req.member_id.to_string()
    };
    let owned: Option<Partitions> = req.topic_partitions.as_ref().map(|tps| {
        let mut owned = Partitions::new();
        for tp in tps {
            owned
                .entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        owned
    });
    let hb = Heartbeat {
        member_id,
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: cx.client_id.unwrap_or("").to_string(),
        client_host: client_host(cx),
    };
    let group = req.group_id.to_string();
    let result = on_coordinator(cx.shard, group, move |s, part, group| {
        coordinator::consumer_heartbeat(s, part, group, hb)
    })
    .await
    .unwrap_or_else(|error| {
        Err(HeartbeatError {
            error,
            message: String::new(),
        })
    });
    match result {
        Err(e) => {
            resp.error_code = e.error.code();
            if !e.message.is_empty() {
                resp.error_message = Some(str_bytes(&e.message));
            }
        }
        Ok(reply) => {
            resp.member_id = Some(str_bytes(&reply.member_id));
            resp.member_epoch = reply.epoch;
            resp.assignment = reply.assignment.map(|a| {
                let mut asg = Assignment::default();
                asg.topic_partitions = a
                    .into_iter()
                    .map(|(id, ps)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = ps.into_iter().collect();
                        tp
                    })
                    .collect();
                asg
            });
        }
    }
    resp
}

fn described_assignment(a: &Partitions, names: &BTreeMap<Uuid, String>) -> describe::Assignment {
    let mut out = describe::Assignment::default();
    out.topic_partitions = a
        .iter()
        .map(|(id, ps)| {
            let mut tp = describe::TopicPartitions::default();
            tp.topic_id = *id;
            tp.topic_name = str_bytes(names.get(id).map(|n| n.as_str()).unwrap_or("")).into();
            tp.partitions = ps.iter().copied().collect();
            tp
        })
        .collect();
    out
}

pub async fn describe(
    cx: &Context<'_>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids.iter().map(|g| g.to_string()) {
        let version = cx.version;
        let described = on_coordinator(cx.shard, id.clone(), move |s, _, group| async move {
            let names: BTreeMap<Uuid, String> = s
                .meta()
                .topics
                .values()
                .map(|t| (t.id, t.name.clone()))
                .collect();
            let groups = s.groups.groups.borrow();
            let Some(cg) = groups.get(&group).and_then(|g| g.consumer.as_ref()) else {
                let mut d = DescribedGroup::default();
                d.error_code = ResponseError::GroupIdNotFound.code();
                d.error_message = Some(str_bytes(&format!(
                    "Group {group} is not a consumer-protocol group."
                )));
                return d;
            };
            let mut d = DescribedGroup::default();
            d.group_state = str_bytes(cg.state().name());
            d.group_epoch = cg.epoch;
            d.assignment_epoch = cg.assignment_epoch;
            d.assignor_name = str_bytes(&cg.assignor);
            d.authorized_operations = i32::MIN;
            let empty = Partitions::new();
            d.members = cg
                .members
                .values()
                .map(|m| {
                    let mut dm = Member::default();
                    dm.member_id = str_bytes(&m.id);
                    dm.instance_id = m.instance_id.as_deref().map(str_bytes);
                    dm.rack_id = m.rack_id.as_deref().map(str_bytes);
                    dm.member_epoch = m.epoch;
                    dm.client_id = str_bytes(&m.client_id);
                    dm.client_host = str_bytes(&m.client_host);
                    let topics: BTreeSet<&String> = m.topics.iter().collect();
                    dm.subscribed_topic_names =
                        topics.into_iter().map(|t| str_bytes(t).into()).collect();
                    dm.subscribed_topic_regex = m.regex.as_deref().map(str_bytes);
                    dm.assignment = described_assignment(&m.assigned, &names);
                    dm.target_assignment =
                        described_assignment(cg.target.get(&m.id).unwrap_or(&empty), &names);
                    if version >= 1 {
                        // 1: a member of the consumer protocol (0 would be classic).
                        dm.member_type = 1;
                    }
                    dm
                })
                .collect();
            d
        })
        .await;
        let mut d = described.unwrap_or_else(|e| {
            let mut d = DescribedGroup::default();
            d.error_code = e.code();
            d
        });
        d.group_id = str_bytes(&id).into();
        if !req.include_authorized_operations {
            d.authorized_operations = i32::MIN;
        }
        resp.groups.push(d);
    }
    resp
}
