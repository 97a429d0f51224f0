//! Consumer groups from the admin side: list, describe (members and their
//! assigned partitions), committed offsets, resetting them, deleting groups.
//! Requests go to the group's coordinator (FindCoordinator).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::admin::Admin;
use crate::cluster::Client;
use crate::error::{Error, Result};
use crate::offsets::TopicPartition;
use crate::transport::connection::Connection;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
    /// "classic" or "consumer" (the KIP-848 protocol); "" from brokers
    /// that do not say.
    pub group_type: String,
}

/// A group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its partitions, for a "consumer" group in a stable state.
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor in use (range, roundrobin, … chosen by the members of a
    /// classic group; uniform or range on the broker for a consumer group).
    pub protocol: String,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: String,
    pub members: Vec<GroupMember>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The partitions of a ConsumerProtocolAssignment, sorted; empty for
/// anything else.
pub(crate) fn decode_assignment(b: &[u8]) -> Vec<TopicPartition> {
    rill_net::consumer_protocol::decode_assignment(b)
        .into_iter()
        .map(|(t, p)| TopicPartition::new(t, p))
        .collect()
}

impl Admin {
    /// The connection to `group`'s coordinator.
    async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        coordinator(&self.client, group, false).await
    }

    /// Every group of the cluster (of each broker, merged).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let meta = self.client.refresh(None).await?;
        let mut out = Vec::new();
        for node in meta.brokers.keys() {
            let conn = self.client.connection(*node).await?;
            let (resp, _) = conn.send(&ListGroupsRequest::default()).await?;
            Error::check(resp.error_code, || "listing groups".to_string())?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
                group_type: g.group_type.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// A group's state and members ("Dead" for a group that does not exist).
    /// A KIP-848 consumer group is described by ConsumerGroupDescribe, a
    /// classic one by DescribeGroups.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.coordinator(group).await?;
        if conn.version(ApiKey::ConsumerGroupDescribe).is_ok() {
            let mut req = ConsumerGroupDescribeRequest::default();
            req.group_ids = vec![GroupId(str_bytes(group))];
            let (resp, _) = conn.send(&req).await?;
            let g = resp
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| Error::Protocol("empty ConsumerGroupDescribe answer".into()))?;
            if g.error_code != ResponseError::GroupIdNotFound.code() {
                Error::check(g.error_code, || format!("describing group {group}"))?;
                return Ok(GroupDescription {
                    group_id: group.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: "consumer".into(),
                    protocol: g.assignor_name.to_string(),
                    group_type: "consumer".into(),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| GroupMember {
                            member_id: m.member_id.to_string(),
                            instance_id: m.instance_id.map(|s| s.to_string()),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: m
                                .assignment
                                .topic_partitions
                                .iter()
                                .flat_map(|tp| {
                                    tp.partitions
                                        .iter()
                                        .map(|p| TopicPartition::new(tp.topic_name.as_str(), *p))
                                })
                                .collect(),
                        })
                        .collect(),
                });
            }
        }
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(str_bytes(group))];
        let (resp, _) = conn.send(&req).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty DescribeGroups answer".into()))?;
        Error::check(g.error_code, || format!("describing group {group}"))?;
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            group_type: "classic".into(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// The offsets `group` has committed, per partition (-1: none).
    pub async fn committed_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let conn = self.coordinator(group).await?;
        fetch_offsets(&conn, group, &Member::OUTSIDE, None).await
    }

    /// Sets `group`'s committed offsets from outside the group (generation
    /// -1): the coordinator takes this only while the group has no members.
    pub async fn set_committed_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        let conn = self.coordinator(group).await?;
        commit_offsets(&conn, group, &Member::OUTSIDE, offsets).await
    }

    /// Deletes groups (each must have no members); one result per group.
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::new();
        for group in groups {
            let conn = self.coordinator(group).await?;
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(str_bytes(group))];
            let (resp, _) = conn.send(&req).await?;
            let code = resp.results.first().map(|r| r.error_code).unwrap_or(0);
            out.push((
                group.to_string(),
                Error::check(code, || format!("deleting group {group}")),
            ));
        }
        Ok(out)
    }
}

/// A connection to `group`'s coordinator (`dedicated`: one no one else
/// uses, for requests the coordinator may hold, such as JoinGroup).
pub(crate) async fn coordinator(
    client: &Client,
    group: &str,
    dedicated: bool,
) -> Result<Arc<Connection>> {
    let conn = client.any_connection().await?;
    let version = conn.version(ApiKey::FindCoordinator)?;
    let mut req = FindCoordinatorRequest::default();
    if version >= 4 {
        req.coordinator_keys = vec![str_bytes(group)];
    } else {
        req.key = str_bytes(group);
    }
    let resp = conn.send_versioned(&req, version).await?;
    let (code, node, message) = if version >= 4 {
        let c = resp
            .coordinators
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty FindCoordinator answer".into()))?;
        (c.error_code, c.node_id.0, c.error_message)
    } else {
        (resp.error_code, resp.node_id.0, resp.error_message)
    };
    if code != 0 {
        return Err(Error::kafka(
            code,
            format!("finding the coordinator of group {group}"),
            message.map(|m| m.to_string()),
        ));
    }
    if !client.metadata().brokers.contains_key(&node) {
        client.refresh(None).await?;
    }
    if dedicated {
        client.dedicated_connection(node).await
    } else {
        client.connection(node).await
    }
}

/// Who commits: a member (id, generation, static instance id), or
/// [`Member::OUTSIDE`] the group (generation -1: an admin tool).
pub(crate) struct Member<'a> {
    pub id: &'a str,
    pub generation: i32,
    pub instance_id: Option<&'a str>,
}

impl Member<'_> {
    pub const OUTSIDE: Member<'static> = Member {
        id: "",
        generation: -1,
        instance_id: None,
    };
}

/// OffsetCommit of `offsets` for `group`, every partition's error checked.
pub(crate) async fn commit_offsets(
    conn: &Connection,
    group: &str,
    member: &Member<'_>,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (tp, o) in offsets {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push((tp.partition, *o));
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.generation_id_or_member_epoch = member.generation;
    req.member_id = str_bytes(member.id);
    if conn.version(ApiKey::OffsetCommit)? >= 7 {
        req.group_instance_id = member.instance_id.map(str_bytes);
    }
    req.topics = by_topic
        .iter()
        .map(|(topic, parts)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(str_bytes(topic));
            t.partitions = parts
                .iter()
                .map(|(p, o)| {
                    let mut rp = OffsetCommitRequestPartition::default();
                    rp.partition_index = *p;
                    rp.committed_offset = *o;
                    rp
                })
                .collect();
            t
        })
        .collect();
    let (resp, _) = conn.send(&req).await?;
    for t in resp.topics {
        for p in t.partitions {
            Error::check(p.error_code, || {
                format!(
                    "committing an offset of group {group} for {}-{}",
                    t.name.0, p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

/// OffsetFetch of `group` from its coordinator: `partitions` (`None`:
/// every partition the group committed), -1 where nothing is committed.
/// A consumer-protocol member says who it is (v9+: the coordinator checks
/// its epoch); everyone else is [`Member::OUTSIDE`].
pub(crate) async fn fetch_offsets(
    conn: &Connection,
    group: &str,
    member: &Member<'_>,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let version = conn.version(ApiKey::OffsetFetch)?;
    let by_topic: Option<BTreeMap<&str, Vec<i32>>> = partitions.map(|ps| {
        let mut m: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in ps {
            m.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        m
    });
    let mut req = OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(str_bytes(group));
        if version >= 9 && !member.id.is_empty() {
            g.member_id = Some(str_bytes(member.id));
            g.member_epoch = member.generation;
        }
        g.topics = by_topic.as_ref().map(|m| {
            m.iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopics::default();
                    rt.name = TopicName(str_bytes(t));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
        req.groups = vec![g];
    } else {
        req.group_id = GroupId(str_bytes(group));
        req.topics = by_topic.as_ref().map(|m| {
            m.iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopic::default();
                    rt.name = TopicName(str_bytes(t));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
    }
    let resp = conn.send_versioned(&req, version).await?;
    let context = || format!("fetching the offsets of group {group}");
    // (topic, partition, offset, error) from either layout.
    let mut rows: Vec<(String, i32, i64, i16)> = Vec::new();
    if version >= 8 {
        for g in resp.groups {
            Error::check(g.error_code, context)?;
            for t in g.topics {
                rows.extend(t.partitions.into_iter().map(|p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )
                }));
            }
        }
    } else {
        Error::check(resp.error_code, context)?;
        for t in resp.topics {
            rows.extend(t.partitions.into_iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )
            }));
        }
    }
    let mut out = BTreeMap::new();
    for (topic, partition, offset, code) in rows {
        Error::check(code, || {
            format!("the committed offset of {topic}-{partition}")
        })?;
        out.insert(TopicPartition::new(topic, partition), offset);
    }
    Ok(out)
}
