//! One consumer group under the classic protocol (JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup), as a pure state machine: calls carry the time,
//! answers that must wait (a join until the rebalance completes, a sync until
//! the leader's assignment arrives) come back later as [`Effect`]s, and what
//! must be made durable comes back as [`Persist`]. Kafka's `GroupCoordinator`
//! rules, state by state:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                 ▲       │ no members left                     │ leader's sync
//!   └─────────────────┼───────┘                                     ▼
//!                     └──── join with new metadata, leave, expiry ── Stable
//! ```
//!
//! Members that got MEMBER_ID_REQUIRED (KIP-394) are pending until they join
//! with their id or their session runs out; static members (KIP-345) keep
//! their place across restarts by `group.instance.id`.

use std::collections::BTreeMap;

use bytes::Bytes;
use rill_net::kafka_protocol::ResponseError;

mod rebalance;

/// Identifies a waiting request; the driver maps it to its reply channel.
pub type Token = u64;

/// How long a group may wait, and for what (broker settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: the first rebalance of an empty
    /// group waits this long for more members.
    pub initial_rebalance_delay_ms: i32,
    /// Groups under the KIP-848 consumer protocol.
    pub consumer: super::consumer::ConsumerLimits,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            consumer: super::consumer::ConsumerLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Deleted; requests for it find nothing.
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Its session ends then unless a heartbeat, join or sync comes first.
    pub expires_at: i64,
    join_waiter: Option<Token>,
    sync_waiter: Option<Token>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A JoinGroup request, as the group needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id is given one and must join again with it.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinReply {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// A static leader rejoining a stable group: it must not assign again.
    pub skip_assignment: bool,
}

impl JoinReply {
    fn failed(error: ResponseError, member_id: &str) -> JoinReply {
        JoinReply {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReply {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncReply {
    fn failed(error: ResponseError) -> SyncReply {
        SyncReply {
            error: Some(error),
            ..Default::default()
        }
    }
}

/// An answer for a request that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Join(Token, JoinReply),
    Sync(Token, SyncReply),
    /// Answer these syncs only once the group's new state is durable (the
    /// driver persists [`Group::snapshot`] first; on failure it answers
    /// them with the error instead).
    SyncAfterPersist(Vec<(Token, SyncReply)>),
    /// The group's membership changed in a way worth recording.
    Persist,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// What is recorded of a group in the offsets topic (besides its offsets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupSnapshot {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<SnapshotMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order (the first is the next leader when the leader leaves).
    pub members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED → when they lapse.
    pending: BTreeMap<String, i64>,
    /// When the current rebalance (join phase) or sync phase gives up waiting.
    deadline: Option<i64>,
    /// The first rebalance of an empty group, waiting for more members.
    initial_delay: bool,
    /// When the state last changed (offsets of an empty group expire from it).
    pub state_since: i64,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// Set while the group is a KIP-848 consumer-protocol group (its
    /// classic part is then empty); the offsets are shared.
    pub consumer: Option<super::consumer::ConsumerGroup>,
    limits: GroupLimits,
}

impl Group {
    pub fn new(id: &str, now: i64, limits: GroupLimits) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: BTreeMap::new(),
            deadline: None,
            initial_delay: false,
            state_since: now,
            offsets: BTreeMap::new(),
            consumer: None,
            limits,
        }
    }

    /// A group as the offsets topic recorded it: members are back with fresh
    /// sessions (they expire unless they heartbeat), no rebalance needed.
    pub fn restore(id: &str, s: GroupSnapshot, now: i64, limits: GroupLimits) -> Group {
        let mut g = Group::new(id, s.state_timestamp.min(now), limits);
        g.generation = s.generation;
        g.protocol_type = (!s.protocol_type.is_empty()).then_some(s.protocol_type.clone());
        g.protocol = s.protocol.clone();
        g.leader = s.leader;
        g.members = s
            .members
            .into_iter()
            .map(|m| Member {
                expires_at: now + m.session_timeout_ms as i64,
                protocols: vec![(s.protocol.clone().unwrap_or_default(), m.subscription)],
                id: m.id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: s.protocol_type.clone(),
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
            })
            .collect();
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    /// What the offsets topic records of the group now.
    pub fn snapshot(&self, now: i64) -> GroupSnapshot {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupSnapshot {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: now,
            members: self
                .members
                .iter()
                .map(|m| SnapshotMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn member_of_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.pending.is_empty()
            && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// Whether classic-protocol members (or ids handed out to join) exist.
    pub fn has_classic_members(&self) -> bool {
        !self.members.is_empty() || !self.pending.is_empty()
    }

    /// Whether the group is a consumer-protocol group with members.
    pub fn is_active_consumer_group(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// The clock of an empty group (offset expiry) restarts when a
    /// consumer-protocol group loses its last member or gains its first.
    pub fn consumer_membership_changed(&mut self, was_empty: bool, now: i64) {
        let empty = self.consumer.as_ref().is_none_or(|c| c.members.is_empty());
        if empty != was_empty {
            self.state_since = now;
        }
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        if self.state != state {
            self.state = state;
            self.state_since = now;
        }
    }

    /// A Heartbeat.
    pub fn heartbeat(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::PreparingRebalance {
            // Still a member: keep its session, tell it to rejoin.
            self.check_member(member_id, instance_id, self.generation)
                .or_else(|e| {
                    if e == ResponseError::IllegalGeneration {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            let m = self.member_mut(member_id).expect("checked");
            m.expires_at = now + m.session_timeout_ms as i64;
            return Err(ResponseError::RebalanceInProgress);
        }
        self.check_member(member_id, instance_id, generation)?;
        let m = self.member_mut(member_id).expect("checked");
        m.expires_at = now + m.session_timeout_ms as i64;
        Ok(())
    }

    /// A LeaveGroup of one member, by id or (v3+) by instance id.
    pub fn leave(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: Option<&str>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let id = match instance_id {
            Some(i) => {
                let m = self
                    .member_of_instance(i)
                    .ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && m.id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                m.id.clone()
            }
            None => {
                if self.pending.remove(member_id).is_some() {
                    self.maybe_complete_join(now, effects);
                    return Ok(());
                }
                self.member(member_id)
                    .ok_or(ResponseError::UnknownMemberId)?
                    .id
                    .clone()
            }
        };
        self.remove_member(now, &id, ResponseError::UnknownMemberId, effects);
        effects.push(Effect::Persist);
        Ok(())
    }

    /// Takes a member out (left, expired, fenced); what it waited for is
    /// answered with `why`, and the others rebalance.
    fn remove_member(&mut self, now: i64, id: &str, why: ResponseError, effects: &mut Vec<Effect>) {
        let Some(at) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(at);
        if let Some(t) = m.join_waiter {
            effects.push(Effect::Join(t, JoinReply::failed(why, id)));
        }
        if let Some(t) = m.sync_waiter {
            effects.push(Effect::Sync(t, SyncReply::failed(why)));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, effects);
                self.maybe_complete_join(now, effects);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, effects),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// The clock moved: sessions, pending member ids and phase deadlines
    /// that ran out take effect.
    pub fn tick(&mut self, now: i64, effects: &mut Vec<Effect>) {
        let lapsed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending.remove(&id);
            self.maybe_complete_join(now, effects);
        }
        // A member waiting for its join or sync answer is not expected to heartbeat.
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.expires_at <= now && m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(now, &id, ResponseError::UnknownMemberId, effects);
            effects.push(Effect::Persist);
        }
        if self.deadline.is_some_and(|d| d <= now) {
            match self.state {
                GroupState::PreparingRebalance => self.complete_join(now, effects),
                GroupState::CompletingRebalance => {
                    // The leader's assignment never came: those that did
                    // not sync go, the rest rebalance.
                    let silent: Vec<String> = self
                        .members
                        .iter()
                        .filter(|m| m.sync_waiter.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in silent {
                        self.remove_member(now, &id, ResponseError::UnknownMemberId, effects);
                    }
                    effects.push(Effect::Persist);
                }
                _ => self.deadline = None,
            }
        }
    }

    /// Whether an OffsetCommit from this member and generation may commit.
    /// A generation below 0 with no member id is a commit from outside the
    /// group (a standalone consumer, an admin tool): only an empty group
    /// takes it.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.check_member(member_id, instance_id, generation)
    }

    /// Offsets of a group that has been empty this long go (KIP-211's
    /// `offsets.retention.minutes`); returns the partitions that went.
    pub fn expire_offsets(&mut self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        if self.state != GroupState::Empty
            || self.is_active_consumer_group()
            || now - self.state_since < retention_ms
        {
            return Vec::new();
        }
        std::mem::take(&mut self.offsets).into_keys().collect()
    }

    /// The earliest moment something in this group is due.
    pub fn next_due(&self) -> Option<i64> {
        let sessions = self
            .members
            .iter()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.expires_at);
        sessions
            .chain(self.pending.values().copied())
            .chain(self.deadline)
            .chain(self.consumer.as_ref().and_then(|c| c.next_due()))
            .min()
    }
}

#[cfg(test)]
mod tests;
