//! The classic group protocol: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, and the admin side: ListGroups, DescribeGroups,
//! DeleteGroups. Each request goes to the shard coordinating its group
//! (`groups::coordinator::on_coordinator`); the decisions are the pure
//! `groups::group` state machine's.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use rill_net::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use rill_net::kafka_protocol::messages::find_coordinator_response::Coordinator;
use rill_net::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_net::kafka_protocol::messages::leave_group_response::MemberResponse;
use rill_net::kafka_protocol::messages::list_groups_response::ListedGroup;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::kafka_protocol::ResponseError;

use super::{str_bytes, Context};
use crate::error_code::code;
use crate::groups::coordinator::ensure_offsets_topic;
use crate::groups::coordinator::{self, on_coordinator, SyncRequest};
use crate::groups::group::{GroupState, Join, JoinReply};
use crate::groups::OFFSETS_TOPIC;
use crate::shard::Shard;

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

pub async fn find_coordinator(
    cx: &Context<'_>,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if cx.version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    // Groups (0) and transactions (1) are coordinated by this broker; the
    // offsets topic must exist before a client is sent to its coordinator.
    let error = if !(0..=1).contains(&req.key_type) {
        Some(ResponseError::InvalidRequest)
    } else {
        ensure_offsets_topic(cx.shard).await.err()
    };
    let (host, port) = cx.shard.advertised.clone();
    let node = cx.shard.config.node_id;
    let mut resp = FindCoordinatorResponse::default();
    if cx.version >= 4 {
        resp.coordinators = keys
            .into_iter()
            .map(|k| {
                let mut c = Coordinator::default();
                c.key = str_bytes(&k);
                c.error_code = code(error);
                if error.is_none() {
                    c.node_id = node.into();
                    c.host = str_bytes(&host);
                    c.port = port as i32;
                } else {
                    c.node_id = (-1).into();
                    c.port = -1;
                }
                c
            })
            .collect();
    } else {
        resp.error_code = code(error);
        if error.is_none() {
            resp.node_id = node.into();
            resp.host = str_bytes(&host);
            resp.port = port as i32;
        } else {
            resp.node_id = (-1).into();
            resp.port = -1;
        }
    }
    resp
}

fn join_response(cx: &Context<'_>, r: JoinReply) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = code(r.error);
    resp.generation_id = r.generation;
    if cx.version >= 7 {
        resp.protocol_type = r.protocol_type.as_deref().map(str_bytes);
    }
    resp.protocol_name = if cx.version >= 7 {
        r.protocol_name.as_deref().map(str_bytes)
    } else {
        // Not nullable before v7: "" stands for none.
        Some(str_bytes(r.protocol_name.as_deref().unwrap_or("")))
    };
    resp.leader = str_bytes(&r.leader);
    resp.skip_assignment = r.skip_assignment && cx.version >= 9;
    resp.member_id = str_bytes(&r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(&id);
            m.group_instance_id = instance.as_deref().map(str_bytes);
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}

pub(super) fn client_host(cx: &Context<'_>) -> String {
    cx.connection
        .peer
        .map(|p| format!("/{}", p.ip()))
        .unwrap_or_else(|| "/unknown".into())
}

pub async fn join_group(cx: &Context<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let group = req.group_id.to_string();
    let failed = |e| JoinReply {
        error: Some(e),
        generation: -1,
        member_id: req.member_id.to_string(),
        ..Default::default()
    };
    if group.is_empty() {
        return join_response(cx, failed(ResponseError::InvalidGroupId));
    }
    let join = Join {
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        client_id: cx.client_id.unwrap_or("").to_string(),
        client_host: client_host(cx),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if cx.version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: cx.version >= 4,
    };
    let reply = on_coordinator(cx.shard, group, move |s, part, group| {
        coordinator::join(s, part, group, join)
    })
    .await
    .unwrap_or_else(failed);
    join_response(cx, reply)
}

pub async fn sync_group(cx: &Context<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = req.group_id.to_string();
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        generation: req.generation_id,
        protocol_type: opt(&req.protocol_type),
        protocol_name: opt(&req.protocol_name),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let reply = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        on_coordinator(cx.shard, group, move |s, part, group| {
            coordinator::sync(s, part, group, sync)
        })
        .await
    };
    let mut resp = SyncGroupResponse::default();
    match reply {
        Ok(r) => {
            resp.error_code = code(r.error);
            if cx.version >= 5 {
                resp.protocol_type = r.protocol_type.as_deref().map(str_bytes);
                resp.protocol_name = r.protocol_name.as_deref().map(str_bytes);
            }
            resp.assignment = r.assignment;
        }
        Err(e) => resp.error_code = code(Some(e)),
    }
    resp
}

pub async fn heartbeat(cx: &Context<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.to_string();
    let (member, instance, generation) = (
        req.member_id.to_string(),
        opt(&req.group_instance_id),
        req.generation_id,
    );
    let result = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        on_coordinator(cx.shard, group, move |s, _, group| async move {
            coordinator::heartbeat(&s, &group, &member, instance.as_deref(), generation)
        })
        .await
        .and_then(|r| r)
    };
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code(result.err());
    resp
}

pub async fn leave_group(cx: &Context<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.to_string();
    let batched = cx.version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let results = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        on_coordinator(cx.shard, group, move |s, part, group| async move {
            coordinator::leave(&s, &part, &group, members)
        })
        .await
    };
    let mut resp = LeaveGroupResponse::default();
    match results {
        Err(e) => resp.error_code = code(Some(e)),
        Ok(results) if !batched => resp.error_code = code(results[0].err()),
        Ok(results) => {
            resp.members = asked
                .iter()
                .zip(results)
                .map(|((id, instance), r)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.as_deref().map(str_bytes);
                    m.error_code = code(r.err());
                    m
                })
                .collect();
        }
    }
    resp
}

/// (group, protocol type, state, group type) of every group the shard
/// coordinates.
async fn local_groups(s: Rc<Shard>) -> Vec<(String, String, &'static str, &'static str)> {
    let Some(topic) = s.meta().topics.get(OFFSETS_TOPIC).cloned() else {
        return Vec::new();
    };
    for (p, placed) in topic.partitions.iter().enumerate() {
        if placed.shard == s.id {
            if let Some(part) = s.partition(OFFSETS_TOPIC, p as i32) {
                let _ = s.groups.ensure_loaded(p as i32, &part).await;
            }
        }
    }
    s.groups
        .groups
        .borrow()
        .values()
        .filter(|g| g.state != GroupState::Dead)
        .map(|g| match &g.consumer {
            Some(cg) => (
                g.id.clone(),
                "consumer".to_string(),
                cg.state().name(),
                "consumer",
            ),
            None => (
                g.id.clone(),
                g.protocol_type.clone().unwrap_or_default(),
                g.state.name(),
                "classic",
            ),
        })
        .collect()
}

pub async fn list_groups(cx: &Context<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let shards = cx.shard.router.shards();
    let mut all = Vec::new();
    for s in 0..shards {
        all.extend(cx.shard.on(s, local_groups).await);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut resp = ListGroupsResponse::default();
    resp.groups = all
        .into_iter()
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|(_, _, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(id, ptype, state, kind)| {
            let mut g = ListedGroup::default();
            g.group_id = str_bytes(&id).into();
            g.protocol_type = str_bytes(&ptype);
            if cx.version >= 4 {
                g.group_state = str_bytes(state);
            }
            if cx.version >= 5 {
                g.group_type = str_bytes(kind);
            }
            g
        })
        .collect();
    resp
}

pub async fn describe_groups(
    cx: &Context<'_>,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups.iter().map(|g| g.to_string()) {
        let described = on_coordinator(cx.shard, id.clone(), move |s, _, group| async move {
            let groups = s.groups.groups.borrow();
            let mut d = DescribedGroup::default();
            d.authorized_operations = i32::MIN;
            match groups.get(&group) {
                // An unknown group is described as Dead, as Kafka does.
                None => d.group_state = str_bytes(GroupState::Dead.name()),
                // Kafka: DescribeGroups is for classic groups; a consumer-
                // protocol group is described by ConsumerGroupDescribe.
                Some(g) if g.consumer.is_some() => {
                    d.error_code = code(Some(ResponseError::GroupIdNotFound));
                }
                Some(g) => {
                    d.group_state = str_bytes(g.state.name());
                    d.protocol_type = str_bytes(g.protocol_type.as_deref().unwrap_or(""));
                    let stable = g.state == GroupState::Stable;
                    d.protocol_data = str_bytes(if stable {
                        g.protocol.as_deref().unwrap_or("")
                    } else {
                        ""
                    });
                    let protocol = g.protocol.clone().unwrap_or_default();
                    d.members = g
                        .members
                        .iter()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = str_bytes(&m.id);
                            dm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                            dm.client_id = str_bytes(&m.client_id);
                            dm.client_host = str_bytes(&m.client_host);
                            if stable {
                                dm.member_metadata = m
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| *n == protocol)
                                    .map(|(_, b)| b.clone())
                                    .unwrap_or_default();
                                dm.member_assignment = m.assignment.clone();
                            }
                            dm
                        })
                        .collect();
                }
            }
            d
        })
        .await;
        let mut d = described.unwrap_or_else(|e| {
            let mut d = DescribedGroup::default();
            d.error_code = code(Some(e));
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

pub async fn delete_groups(cx: &Context<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names.iter().map(|g| g.to_string()) {
        let result = on_coordinator(cx.shard, id.clone(), coordinator::delete_group)
            .await
            .and_then(|r| r);
        let mut r = DeletableGroupResult::default();
        r.group_id = str_bytes(&id).into();
        r.error_code = code(result.err());
        resp.results.push(r);
    }
    resp
}
