//! Committed offsets: OffsetCommit, OffsetFetch (one group, or several per
//! request from v8), OffsetDelete. Stored in `__consumer_offsets` by the
//! group's coordinator; a commit is answered once it is durable.

use rill_net::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use rill_net::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use rill_net::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::ResponseError;

use super::{str_bytes, Context};
use crate::error_code::code;
use crate::groups::coordinator::{self, on_coordinator, CommitPartition, CommitRequest};
use crate::groups::group::Committed;

pub async fn offset_commit(cx: &Context<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let partitions: Vec<CommitPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitPartition {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let count = partitions.len();
    let commit = CommitRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: req.generation_id_or_member_epoch,
        partitions,
    };
    let errors = if group.is_empty() {
        vec![Some(ResponseError::InvalidGroupId); count]
    } else {
        on_coordinator(cx.shard, group, move |s, part, group| {
            coordinator::commit(s, part, group, commit)
        })
        .await
        .unwrap_or_else(|e| vec![Some(e); count])
    };
    let mut errors = errors.into_iter();
    let mut resp = OffsetCommitResponse::default();
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            rt.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut rp = OffsetCommitResponsePartition::default();
                    rp.partition_index = p.partition_index;
                    rp.error_code = code(errors.next().flatten());
                    rp
                })
                .collect();
            rt
        })
        .collect();
    resp
}

type Fetched = std::collections::BTreeMap<String, Vec<(i32, Option<Committed>)>>;

/// One group's committed offsets (`topics: None`: all of them).
/// `member`: (member id, epoch) of a consumer-protocol member asking (v9).
async fn fetch_group(
    cx: &Context<'_>,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(String, i32)>,
) -> Result<Fetched, ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    on_coordinator(cx.shard, group, move |s, _, group| async move {
        if let Some((id, epoch)) = member {
            coordinator::check_fetching_member(&s, &group, &id, epoch)?;
        }
        Ok(coordinator::fetch(&s, &group, topics))
    })
    .await
    .and_then(|r| r)
}

fn partition_values(c: Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

pub async fn offset_fetch(cx: &Context<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if cx.version >= 8 {
        for g in &req.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let member = (cx.version >= 9)
                .then(|| {
                    g.member_id
                        .as_ref()
                        .map(|m| (m.to_string(), g.member_epoch))
                })
                .flatten();
            let fetched = fetch_group(cx, g.group_id.to_string(), topics, member).await;
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = g.group_id.clone();
            match fetched {
                Err(e) => rg.error_code = code(Some(e)),
                Ok(fetched) => {
                    rg.topics = fetched
                        .into_iter()
                        .map(|(name, parts)| {
                            let mut t = OffsetFetchResponseTopics::default();
                            t.name = str_bytes(&name).into();
                            t.partitions = parts
                                .into_iter()
                                .map(|(p, c)| {
                                    let (offset, epoch, metadata) = partition_values(c);
                                    let mut rp = OffsetFetchResponsePartitions::default();
                                    rp.partition_index = p;
                                    rp.committed_offset = offset;
                                    rp.committed_leader_epoch = epoch;
                                    rp.metadata = Some(str_bytes(&metadata));
                                    rp
                                })
                                .collect();
                            t
                        })
                        .collect();
                }
            }
            resp.groups.push(rg);
        }
        return resp;
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match fetch_group(cx, req.group_id.to_string(), topics, None).await {
        Err(e) => {
            resp.error_code = code(Some(e));
            // Before v2 there is no group error: each partition carries it.
            if cx.version < 2 {
                resp.topics = req
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        let mut rt = OffsetFetchResponseTopic::default();
                        rt.name = t.name.clone();
                        rt.partitions = t
                            .partition_indexes
                            .iter()
                            .map(|p| {
                                let mut rp = OffsetFetchResponsePartition::default();
                                rp.partition_index = *p;
                                rp.committed_offset = -1;
                                rp.error_code = code(Some(e));
                                rp
                            })
                            .collect();
                        rt
                    })
                    .collect();
            }
        }
        Ok(fetched) => {
            resp.topics = fetched
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = str_bytes(&name).into();
                    t.partitions = parts
                        .into_iter()
                        .map(|(p, c)| {
                            let (offset, epoch, metadata) = partition_values(c);
                            let mut rp = OffsetFetchResponsePartition::default();
                            rp.partition_index = p;
                            rp.committed_offset = offset;
                            rp.committed_leader_epoch = epoch;
                            rp.metadata = Some(str_bytes(&metadata));
                            rp
                        })
                        .collect();
                    t
                })
                .collect();
        }
    }
    resp
}

pub async fn offset_delete(cx: &Context<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        on_coordinator(cx.shard, group, move |s, part, group| {
            coordinator::delete_offsets(s, part, group, partitions)
        })
        .await
        .and_then(|r| r)
    };
    let mut resp = OffsetDeleteResponse::default();
    match result {
        Err(e) => resp.error_code = code(Some(e)),
        Ok(errors) => {
            let mut errors = errors.into_iter();
            resp.topics = req
                .topics
                .iter()
                .map(|t| {
                    let mut rt = OffsetDeleteResponseTopic::default();
                    rt.name = t.name.clone();
                    rt.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut rp = OffsetDeleteResponsePartition::default();
                            rp.partition_index = p.partition_index;
                            rp.error_code = code(errors.next().flatten());
                            rp
                        })
                        .collect();
                    rt
                })
                .collect();
        }
    }
    resp
}
