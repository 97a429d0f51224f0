//! The group coordinator's requests around the pure [`Group`] state
//! machine: a group lives on the shard that owns its `__consumer_offsets`
//! partition (its in-memory table is [`crate::shard::group_table`]); answers that
//! wait are channels keyed by [`Token`](super::group::Token); what a group decides to make
//! durable is appended to its partition before the waiting answers go out.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use rill_net::kafka_protocol::ResponseError;
use rill_storage::batch::{BatchBuilder, Compression};

use super::consumer::{ConsumerGroup, Heartbeat, HeartbeatError, HeartbeatReply, TopicImage};
use super::group::{Committed, Effect, Group, Join, JoinReply, SyncReply};
use super::records::OffsetsRecord;
use super::{partition_for, OFFSETS_TOPIC};
use crate::cluster::state::ClusterMeta;
use crate::cluster::MetadataCommand;
use crate::partition::Partition;
use crate::shard::group_table::{now_ms, Waiter};
use crate::shard::Shard;

/// Largest metadata string a commit may carry (`offset.metadata.max.bytes`).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Sends the answers `effects` carry and starts the appends they ask for.
fn dispatch(shard: &Rc<Shard>, part: &Rc<Partition>, group: &str, effects: Vec<Effect>) {
    let c = &shard.groups;
    let mut persist = false;
    let mut after_persist = Vec::new();
    for e in effects {
        match e {
            Effect::Join(t, r) => {
                if let Some(Waiter::Join(tx)) = c.waiters.borrow_mut().remove(&t) {
                    let _ = tx.try_send(r);
                }
            }
            Effect::Sync(t, r) => {
                if let Some(Waiter::Sync(tx)) = c.waiters.borrow_mut().remove(&t) {
                    let _ = tx.try_send(r);
                }
            }
            Effect::Persist => persist = true,
            Effect::SyncAfterPersist(replies) => {
                persist = true;
                after_persist.extend(replies);
            }
        }
    }
    if !persist {
        return;
    }
    let (shard, part, group) = (shard.clone(), part.clone(), group.to_string());
    glommio::spawn_local(async move {
        let c = &shard.groups;
        // The group as it is when the append starts: later changes
        // append their own, newer snapshot.
        let (record, generation) = {
            let groups = c.groups.borrow();
            let Some(g) = groups.get(&group) else { return };
            let record = OffsetsRecord::Group {
                group: group.clone(),
                value: Some(g.snapshot(now_ms())),
            };
            (record, g.generation)
        };
        let result = append(&part, &[record]).await;
        if result.is_err() && !after_persist.is_empty() {
            let mut effects = Vec::new();
            if let Some(g) = c.groups.borrow_mut().get_mut(&group) {
                g.assignment_not_persisted(now_ms(), generation, &mut effects);
            }
            dispatch(&shard, &part, &group, effects);
        }
        for (t, mut r) in after_persist {
            if let Err(e) = result {
                r = SyncReply {
                    error: Some(e),
                    ..Default::default()
                };
            }
            if let Some(Waiter::Sync(tx)) = c.waiters.borrow_mut().remove(&t) {
                let _ = tx.try_send(r);
            }
        }
    })
    .detach();
}

/// Appends records to the offsets partition and waits until they are durable.
pub async fn append(part: &Partition, records: &[OffsetsRecord]) -> Result<(), ResponseError> {
    let now = now_ms();
    let mut b = BatchBuilder::new(256 * records.len());
    for r in records {
        let (k, v) = r.encode();
        b.push(now, Some(&k), v.as_deref(), &[]);
    }
    let batch = b
        .finish(Compression::None)
        .map_err(|_| ResponseError::UnknownServerError)?;
    part.append_durable(batch).await.map_err(|e| {
        tracing::warn!(error = %e, "appending to the offsets topic failed");
        ResponseError::CoordinatorNotAvailable
    })?;
    Ok(())
}

/// The records that delete every trace of a group but its offsets.
fn group_tombstones(group: &str) -> [OffsetsRecord; 2] {
    [
        OffsetsRecord::ConsumerGroup {
            group: group.to_string(),
            value: None,
        },
        OffsetsRecord::Group {
            group: group.to_string(),
            value: None,
        },
    ]
}

fn consumer_record(group: &str, cg: &ConsumerGroup) -> OffsetsRecord {
    OffsetsRecord::ConsumerGroup {
        group: group.to_string(),
        value: Some(Box::new(cg.clone())),
    }
}

/// The broker's topics, as consumer-protocol groups see them.
impl TopicImage for ClusterMeta {
    fn version(&self) -> u64 {
        self.version
    }
    fn lookup(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        self.topics
            .get(name)
            .map(|t| (t.id, t.partitions.len() as i32))
    }
    fn names(&self) -> Vec<&str> {
        self.topics
            .keys()
            .filter(|n| n.as_str() != OFFSETS_TOPIC)
            .map(|n| n.as_str())
            .collect()
    }
}

/// A ConsumerGroupHeartbeat (KIP-848): the group's answer, given once what
/// changed is durable.
pub async fn consumer_heartbeat(
    shard: Rc<Shard>,
    part: Rc<Partition>,
    group: String,
    hb: Heartbeat,
) -> Result<HeartbeatReply, HeartbeatError> {
    let c = &shard.groups;
    let now = now_ms();
    let meta = shard.meta();
    let limits = c.limits.consumer;
    let outcome = {
        let mut groups = c.groups.borrow_mut();
        if !groups.contains_key(&group) && hb.epoch != 0 {
            return Err(HeartbeatError {
                error: ResponseError::UnknownMemberId,
                message: format!("group {group} has no member {}", hb.member_id),
            });
        }
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, now, c.limits));
        if g.has_classic_members() {
            return Err(HeartbeatError {
                error: ResponseError::GroupIdNotFound,
                message: format!("group {group} is a classic group with members"),
            });
        }
        let was_empty = !g.is_active_consumer_group();
        let cg = g.consumer.get_or_insert_with(ConsumerGroup::new);
        let before = cg.epoch;
        let outcome = cg
            .heartbeat(now, hb, &*meta, &limits)
            .map(|(reply, changed)| (reply, changed.then(|| consumer_record(&group, cg))));
        if cg.epoch != before {
            tracing::debug!(%group, epoch = cg.epoch, members = cg.members.len(), "consumer group epoch");
        }
        if cg.members.is_empty() && cg.epoch == 0 {
            g.consumer = None;
        }
        g.consumer_membership_changed(was_empty, now);
        outcome
    };
    c.prune(&group);
    let (reply, record) = outcome?;
    if let Some(record) = record {
        append(&part, &[record]).await.map_err(|e| HeartbeatError {
            error: e,
            message: "recording the group failed".into(),
        })?;
    }
    Ok(reply)
}

/// OffsetFetch v9 from a member of a consumer-protocol group: its epoch
/// must be current.
pub fn check_fetching_member(
    shard: &Rc<Shard>,
    group: &str,
    member_id: &str,
    epoch: i32,
) -> Result<(), ResponseError> {
    if member_id.is_empty() {
        // An admin client or a standalone consumer.
        return Ok(());
    }
    let groups = shard.groups.groups.borrow();
    match groups.get(group).and_then(|g| g.consumer.as_ref()) {
        Some(cg) => cg.check_member_epoch(member_id, epoch),
        None => Ok(()),
    }
}

/// Where a group's coordinator lives.
pub fn offsets_partition(shard: &Shard, group: &str) -> Option<i32> {
    let meta = shard.meta();
    let n = meta.topics.get(OFFSETS_TOPIC)?.partitions.len() as i32;
    Some(partition_for(group, n))
}

/// Runs `f` on the coordinator of `group` (the shard owning its offsets
/// partition), with that partition loaded. While that partition is still
/// opening (a starting broker listens before its partitions are open) the
/// answer is COORDINATOR_LOAD_IN_PROGRESS, as Kafka's while it loads a
/// group partition: every client retries it against the same coordinator.
pub async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    group: String,
    f: F,
) -> Result<T, ResponseError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, Rc<Partition>, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    ensure_offsets_topic(shard).await?;
    let p = offsets_partition(shard, &group).ok_or(ResponseError::CoordinatorNotAvailable)?;
    shard
        .on_partition(OFFSETS_TOPIC.to_string(), p, move |s, part| async move {
            s.groups.ensure_loaded(p, &part).await?;
            Ok(f(s, part, group).await)
        })
        .await
        .map_err(|e| match e {
            ResponseError::UnknownTopicOrPartition => ResponseError::CoordinatorNotAvailable,
            ResponseError::NotLeaderOrFollower => ResponseError::CoordinatorLoadInProgress,
            e => e,
        })?
}

pub async fn join(shard: Rc<Shard>, part: Rc<Partition>, group: String, req: Join) -> JoinReply {
    let c = &shard.groups;
    let token = c.token();
    let (tx, rx) = async_channel::bounded(1);
    c.waiters.borrow_mut().insert(token, Waiter::Join(tx));
    let now = now_ms();
    let mut effects = Vec::new();
    let member = req.member_id.clone();
    let now_reply = {
        let mut groups = c.groups.borrow_mut();
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group, now, c.limits));
        if g.is_active_consumer_group() {
            // Members of the consumer protocol own its partitions.
            Some(JoinReply {
                error: Some(ResponseError::InconsistentGroupProtocol),
                member_id: req.member_id.clone(),
                generation: -1,
                ..Default::default()
            })
        } else {
            // An empty consumer-protocol group becomes a classic one.
            g.consumer = None;
            g.join(now, token, req, &mut effects)
        }
    };
    dispatch(&shard, &part, &group, effects);
    match now_reply {
        Some(r) => {
            c.waiters.borrow_mut().remove(&token);
            c.prune(&group);
            r
        }
        None => rx.recv().await.unwrap_or_else(|_| JoinReply {
            error: Some(ResponseError::CoordinatorNotAvailable),
            member_id: member,
            generation: -1,
            ..Default::default()
        }),
    }
}

pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub async fn sync(
    shard: Rc<Shard>,
    part: Rc<Partition>,
    group: String,
    req: SyncRequest,
) -> SyncReply {
    let c = &shard.groups;
    let token = c.token();
    let (tx, rx) = async_channel::bounded(1);
    c.waiters.borrow_mut().insert(token, Waiter::Sync(tx));
    let mut effects = Vec::new();
    let now_reply = match c.groups.borrow_mut().get_mut(&group) {
        None => Some(SyncReply {
            error: Some(ResponseError::UnknownMemberId),
            ..Default::default()
        }),
        Some(g) => g.sync(
            now_ms(),
            token,
            &req.member_id,
            req.instance_id.as_deref(),
            req.generation,
            (req.protocol_type.as_deref(), req.protocol_name.as_deref()),
            req.assignments,
            &mut effects,
        ),
    };
    dispatch(&shard, &part, &group, effects);
    match now_reply {
        Some(r) => {
            c.waiters.borrow_mut().remove(&token);
            r
        }
        None => rx.recv().await.unwrap_or_else(|_| SyncReply {
            error: Some(ResponseError::CoordinatorNotAvailable),
            ..Default::default()
        }),
    }
}

pub fn heartbeat(
    shard: &Rc<Shard>,
    group: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), ResponseError> {
    match shard.groups.groups.borrow_mut().get_mut(group) {
        None => Err(ResponseError::UnknownMemberId),
        Some(g) => g.heartbeat(now_ms(), member_id, instance_id, generation),
    }
}

/// LeaveGroup for several members; one result each.
pub fn leave(
    shard: &Rc<Shard>,
    part: &Rc<Partition>,
    group: &str,
    members: Vec<(String, Option<String>)>,
) -> Vec<Result<(), ResponseError>> {
    let c = &shard.groups;
    let mut effects = Vec::new();
    let results = match c.groups.borrow_mut().get_mut(group) {
        None => members
            .iter()
            .map(|_| Err(ResponseError::UnknownMemberId))
            .collect(),
        Some(g) => members
            .iter()
            .map(|(id, instance)| g.leave(now_ms(), id, instance.as_deref(), &mut effects))
            .collect(),
    };
    dispatch(shard, part, group, effects);
    results
}

/// One partition's offset in an OffsetCommit.
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

pub struct CommitRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub partitions: Vec<CommitPartition>,
}

/// OffsetCommit: the error of each partition, in request order.
pub async fn commit(
    shard: Rc<Shard>,
    part: Rc<Partition>,
    group: String,
    req: CommitRequest,
) -> Vec<Option<ResponseError>> {
    let c = &shard.groups;
    let now = now_ms();
    let checked = {
        let mut groups = c.groups.borrow_mut();
        let outside = req.generation < 0 && req.member_id.is_empty();
        match groups.get(&group) {
            Some(g) => match &g.consumer {
                // The generation field carries the member epoch (v9+).
                Some(cg) if !g.has_classic_members() => {
                    cg.check_member_epoch(&req.member_id, req.generation)
                }
                _ => g.check_commit(&req.member_id, req.instance_id.as_deref(), req.generation),
            },
            None if outside => {
                groups.insert(group.clone(), Group::new(&group, now, c.limits));
                Ok(())
            }
            None => Err(ResponseError::UnknownMemberId),
        }
    };
    if let Err(e) = checked {
        return req.partitions.iter().map(|_| Some(e)).collect();
    }
    let meta = shard.meta();
    let mut errors = Vec::with_capacity(req.partitions.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for p in &req.partitions {
        let metadata = p.metadata.clone().unwrap_or_default();
        let known = meta
            .topics
            .get(&p.topic)
            .is_some_and(|t| p.partition >= 0 && (p.partition as usize) < t.partitions.len());
        let error = if metadata.len() > OFFSET_METADATA_MAX_BYTES {
            Some(ResponseError::OffsetMetadataTooLarge)
        } else if !known {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        };
        if error.is_none() {
            let committed = Committed {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata,
                commit_timestamp: now,
            };
            records.push(OffsetsRecord::Offset {
                group: group.clone(),
                topic: p.topic.clone(),
                partition: p.partition,
                value: Some(committed.clone()),
            });
            accepted.push(((p.topic.clone(), p.partition), committed));
        }
        errors.push(error);
    }
    if records.is_empty() {
        return errors;
    }
    match append(&part, &records).await {
        Ok(()) => {
            let mut groups = c.groups.borrow_mut();
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now, c.limits));
            g.offsets.extend(accepted);
            errors
        }
        Err(e) => errors.into_iter().map(|err| err.or(Some(e))).collect(),
    }
}

/// OffsetFetch: committed offsets of `topics` (`None`: every partition the
/// group has committed), or the group's error.
pub fn fetch(
    shard: &Rc<Shard>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> BTreeMap<String, Vec<(i32, Option<Committed>)>> {
    let groups = shard.groups.groups.borrow();
    let offsets = groups.get(group).map(|g| &g.offsets);
    let mut out: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
    match topics {
        Some(topics) => {
            for (topic, partitions) in topics {
                let entry = out.entry(topic.clone()).or_default();
                for p in partitions {
                    let c = offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned());
                    entry.push((p, c));
                }
            }
        }
        None => {
            for ((topic, p), c) in offsets.into_iter().flatten() {
                out.entry(topic.clone())
                    .or_default()
                    .push((*p, Some(c.clone())));
            }
        }
    }
    out
}

/// DeleteGroups of one group: only an empty one; its offsets and metadata
/// are deleted from the offsets topic.
pub async fn delete_group(
    shard: Rc<Shard>,
    part: Rc<Partition>,
    group: String,
) -> Result<(), ResponseError> {
    let c = &shard.groups;
    let records = {
        let groups = c.groups.borrow();
        let g = groups.get(&group).ok_or(ResponseError::GroupIdNotFound)?;
        if !g.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut records: Vec<OffsetsRecord> = g
            .offsets
            .keys()
            .map(|(topic, partition)| OffsetsRecord::Offset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            })
            .collect();
        records.extend(group_tombstones(&group));
        records
    };
    append(&part, &records).await?;
    c.groups.borrow_mut().remove(&group);
    Ok(())
}

/// OffsetDelete: the error of each (topic, partition), or the group's.
pub async fn delete_offsets(
    shard: Rc<Shard>,
    part: Rc<Partition>,
    group: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let c = &shard.groups;
    let (records, errors) = {
        let groups = c.groups.borrow();
        let g = groups.get(&group).ok_or(ResponseError::GroupIdNotFound)?;
        let subscribed = super::subscribed_topics(g);
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for (topic, partition) in &partitions {
            if subscribed.contains(topic) {
                errors.push(Some(ResponseError::GroupSubscribedToTopic));
                continue;
            }
            errors.push(None);
            if g.offsets.contains_key(&(topic.clone(), *partition)) {
                records.push(OffsetsRecord::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                });
            }
        }
        (records, errors)
    };
    if !records.is_empty() {
        append(&part, &records).await?;
        let mut groups = c.groups.borrow_mut();
        if let Some(g) = groups.get_mut(&group) {
            for r in &records {
                if let OffsetsRecord::Offset {
                    topic, partition, ..
                } = r
                {
                    g.offsets.remove(&(topic.clone(), *partition));
                }
            }
        }
    }
    Ok(errors)
}

/// The clock moved: every group of this shard checks its deadlines; empty
/// groups' offsets past `retention_ms` are deleted.
pub async fn tick(shard: &Rc<Shard>, retention_ms: Option<i64>) {
    let c = &shard.groups;
    let now = now_ms();
    let due: Vec<String> = c
        .groups
        .borrow()
        .iter()
        .filter(|(_, g)| g.next_due().is_some_and(|d| d <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in due {
        let Some(p) = offsets_partition(shard, &id) else {
            return;
        };
        let Some(part) = shard.partition(OFFSETS_TOPIC, p) else {
            continue;
        };
        let mut effects = Vec::new();
        let mut record = None;
        if let Some(g) = c.groups.borrow_mut().get_mut(&id) {
            g.tick(now, &mut effects);
            let was_empty = !g.is_active_consumer_group();
            if let Some(cg) = g.consumer.as_mut() {
                let gone = cg.tick(now, &*shard.meta());
                if !gone.is_empty() {
                    tracing::info!(group = %id, members = ?gone, epoch = cg.epoch, "consumer group members timed out");
                    record = Some(consumer_record(&id, cg));
                }
            }
            g.consumer_membership_changed(was_empty, now);
        }
        dispatch(shard, &part, &id, effects);
        if let Some(record) = record {
            if let Err(e) = append(&part, &[record]).await {
                tracing::warn!(group = %id, error = %e, "recording a consumer group failed");
            }
        }
    }
    let Some(retention_ms) = retention_ms else {
        return;
    };
    let expired: Vec<(String, Vec<(String, i32)>)> = c
        .groups
        .borrow_mut()
        .iter_mut()
        .map(|(id, g)| (id.clone(), g.expire_offsets(now, retention_ms)))
        .filter(|(_, gone)| !gone.is_empty())
        .collect();
    for (group, gone) in expired {
        let Some(p) = offsets_partition(shard, &group) else {
            return;
        };
        let Some(part) = shard.partition(OFFSETS_TOPIC, p) else {
            continue;
        };
        let mut records: Vec<OffsetsRecord> = gone
            .into_iter()
            .map(|(topic, partition)| OffsetsRecord::Offset {
                group: group.clone(),
                topic,
                partition,
                value: None,
            })
            .collect();
        records.extend(group_tombstones(&group));
        tracing::info!(%group, offsets = records.len() - 2, "offsets of an empty group expired");
        if append(&part, &records).await.is_ok() {
            c.groups.borrow_mut().remove(&group);
        }
    }
}

/// Creates the offsets topic the first time a group needs it.
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<(), ResponseError> {
    if shard.meta().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let partitions = shard.config.offsets_topic_num_partitions;
    let result = shard
        .change_metadata(move |draft, placement| {
            if draft.state().topics.contains_key(OFFSETS_TOPIC) {
                return Ok(());
            }
            let configs: BTreeMap<String, String> = [
                ("cleanup.policy", "compact"),
                // Kafka's offsets.topic.segment.bytes.
                ("segment.bytes", "104857600"),
                ("compression.type", "producer"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let create = MetadataCommand::create_topic(
                draft.state(),
                OFFSETS_TOPIC,
                uuid::Uuid::new_v4(),
                partitions,
                configs,
                placement.shards,
            );
            draft.push(create).expect("the name is free");
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|fits| fits);
    match result {
        Ok(()) => {
            tracing::info!(partitions, "created {OFFSETS_TOPIC}");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "creating {OFFSETS_TOPIC} failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}
