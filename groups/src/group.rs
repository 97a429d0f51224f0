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

    /// Protocols every member (and `extra`) supports, in `extra`'s order.
    fn common_protocols<'a>(&self, extra: &'a [(String, Bytes)]) -> Vec<&'a str> {
        extra
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// A JoinGroup. The answer comes now (`Some`), or later as an
    /// [`Effect::Join`] for `token`; `effects` are answers to other waiting
    /// requests this join released.
    pub fn join(
        &mut self,
        now: i64,
        token: Token,
        req: Join,
        effects: &mut Vec<Effect>,
    ) -> Option<JoinReply> {
        let fail = |e| Some(JoinReply::failed(e, &req.member_id));
        if !(self.limits.min_session_timeout_ms..=self.limits.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        let known = !req.member_id.is_empty();
        let replacing = req
            .instance_id
            .as_deref()
            .and_then(|i| self.member_of_instance(i))
            .map(|m| m.id.clone());
        // Protocol checks against the others (a member replacing itself does not count).
        let others_have_members = self
            .members
            .iter()
            .any(|m| Some(&m.id) != replacing.as_ref() && m.id != req.member_id);
        if others_have_members {
            if self
                .protocol_type
                .as_deref()
                .is_some_and(|t| t != req.protocol_type)
            {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            let others: Vec<&Member> = self
                .members
                .iter()
                .filter(|m| Some(&m.id) != replacing.as_ref() && m.id != req.member_id)
                .collect();
            let common = req.protocols.iter().any(|(n, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            });
            if !common {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
        }

        if !known {
            let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(old) = replacing {
                return self.rejoin_static(now, token, req, &old, new_id, effects);
            }
            if req.require_known_member_id && req.instance_id.is_none() {
                self.pending
                    .insert(new_id.clone(), now + req.session_timeout_ms as i64);
                return Some(JoinReply::failed(ResponseError::MemberIdRequired, &new_id));
            }
            self.add_member(now, token, req, new_id, effects);
            return None;
        }

        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            self.add_member(now, token, req, id, effects);
            return None;
        }
        let Some(member) = self.member(&req.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if req.instance_id.is_some() && member.instance_id != req.instance_id {
            return fail(ResponseError::FencedInstanceId);
        }
        let same = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(now, token, &req, effects);
                self.maybe_complete_join(now, effects);
                None
            }
            GroupState::CompletingRebalance if same => Some(self.join_reply(&req.member_id)),
            GroupState::Stable if same && !is_leader => Some(self.join_reply(&req.member_id)),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(now, token, &req, effects);
                self.prepare_rebalance(now, effects);
                self.maybe_complete_join(now, effects);
                None
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    /// A static member (by `group.instance.id`) joining without its member id
    /// (it restarted): it takes the place of its old id, which is fenced.
    fn rejoin_static(
        &mut self,
        now: i64,
        token: Token,
        req: Join,
        old: &str,
        new_id: String,
        effects: &mut Vec<Effect>,
    ) -> Option<JoinReply> {
        let was_leader = self.leader.as_deref() == Some(old);
        let member = self.member_mut(old).expect("the instance's member");
        let same = member.protocols == req.protocols;
        // Whatever the old incarnation waits for is fenced.
        if let Some(t) = member.join_waiter.take() {
            effects.push(Effect::Join(
                t,
                JoinReply::failed(ResponseError::FencedInstanceId, old),
            ));
        }
        if let Some(t) = member.sync_waiter.take() {
            effects.push(Effect::Sync(
                t,
                SyncReply::failed(ResponseError::FencedInstanceId),
            ));
        }
        member.id = new_id.clone();
        member.expires_at = now + req.session_timeout_ms as i64;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && same {
            // No rebalance: it keeps its assignment (KIP-345).
            effects.push(Effect::Persist);
            let mut reply = self.join_reply(&new_id);
            if was_leader {
                reply.skip_assignment = true;
                reply.members = self.member_list();
            }
            return Some(reply);
        }
        self.update_member(
            now,
            token,
            &Join {
                member_id: new_id,
                ..req
            },
            effects,
        );
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, effects);
        }
        self.maybe_complete_join(now, effects);
        None
    }

    fn add_member(
        &mut self,
        now: i64,
        token: Token,
        req: Join,
        id: String,
        effects: &mut Vec<Effect>,
    ) {
        self.members.push(Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            expires_at: now + req.session_timeout_ms as i64,
            join_waiter: Some(token),
            sync_waiter: None,
        });
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        match self.state {
            GroupState::Empty => {
                // The first members of an empty group wait a little for others.
                self.set_state(GroupState::PreparingRebalance, now);
                self.initial_delay = self.limits.initial_rebalance_delay_ms > 0;
                self.deadline = Some(now + self.limits.initial_rebalance_delay_ms.max(0) as i64);
                self.cancel_syncs(effects);
            }
            GroupState::PreparingRebalance if self.initial_delay => {
                // Each newcomer extends the wait, within the rebalance timeout.
                let cap = self.state_since + req.rebalance_timeout_ms.max(0) as i64;
                let extended = now + self.limits.initial_rebalance_delay_ms as i64;
                self.deadline = Some(extended.min(cap.max(now)));
            }
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(now, effects),
        }
        self.maybe_complete_join(now, effects);
    }

    fn update_member(&mut self, now: i64, token: Token, req: &Join, effects: &mut Vec<Effect>) {
        let m = self.member_mut(&req.member_id).expect("a member");
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.expires_at = now + req.session_timeout_ms as i64;
        // A second join from the same member replaces the first (whose
        // connection is most likely gone).
        if let Some(old) = m.join_waiter.replace(token) {
            effects.push(Effect::Join(
                old,
                JoinReply::failed(ResponseError::RebalanceInProgress, &req.member_id),
            ));
        }
    }

    /// Syncs waiting in a rebalance that is starting over learn it.
    fn cancel_syncs(&mut self, effects: &mut Vec<Effect>) {
        for m in &mut self.members {
            if let Some(t) = m.sync_waiter.take() {
                effects.push(Effect::Sync(
                    t,
                    SyncReply::failed(ResponseError::RebalanceInProgress),
                ));
            }
        }
    }

    /// The new generation's assignment could not be made durable: its
    /// members were told so (COORDINATOR_NOT_AVAILABLE), so the group
    /// starts over rather than stay Stable on an assignment nobody got
    /// (Kafka does the same).
    pub fn assignment_not_persisted(
        &mut self,
        now: i64,
        generation: i32,
        effects: &mut Vec<Effect>,
    ) {
        if self.generation == generation && self.state == GroupState::Stable {
            for m in &mut self.members {
                m.assignment = Bytes::new();
            }
            self.prepare_rebalance(now, effects);
            self.maybe_complete_join(now, effects);
        }
    }

    fn prepare_rebalance(&mut self, now: i64, effects: &mut Vec<Effect>) {
        self.cancel_syncs(effects);
        self.set_state(GroupState::PreparingRebalance, now);
        self.initial_delay = false;
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .max(0);
        self.deadline = Some(now + timeout as i64);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now: i64, effects: &mut Vec<Effect>) {
        if self.state == GroupState::PreparingRebalance && !self.initial_delay && self.all_joined()
        {
            self.complete_join(now, effects);
        }
    }

    /// Ends the join phase: members that did not rejoin go, the generation
    /// moves on, a protocol and a leader are chosen and every joined member
    /// is answered (the leader with the member list).
    fn complete_join(&mut self, now: i64, effects: &mut Vec<Effect>) {
        self.members.retain(|m| m.join_waiter.is_some());
        self.pending.clear();
        self.initial_delay = false;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.deadline = None;
            self.set_state(GroupState::Empty, now);
            effects.push(Effect::Persist);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = Some(self.members[0].id.clone());
        }
        for m in &mut self.members {
            m.assignment = Bytes::new();
        }
        self.set_state(GroupState::CompletingRebalance, now);
        // Members that do not sync within the rebalance timeout are dropped.
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.deadline = Some(now + timeout.max(0) as i64);
        let ids: Vec<(String, Token)> = self
            .members
            .iter_mut()
            .map(|m| {
                m.expires_at = now + m.session_timeout_ms as i64;
                (m.id.clone(), m.join_waiter.take().expect("joined"))
            })
            .collect();
        for (id, token) in ids {
            let mut reply = self.join_reply(&id);
            if self.leader.as_deref() == Some(id.as_str()) {
                reply.members = self.member_list();
            }
            effects.push(Effect::Join(token, reply));
        }
    }

    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect()
    }

    /// The protocol most members rank highest among those all support.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols(&self.members[0].protocols);
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in &self.members {
            if let Some(choice) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == choice.0) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; ties go to the first member's preference.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| c.to_string())
    }

    /// The current generation's join answer for `member` (no member list).
    fn join_reply(&self, member: &str) -> JoinReply {
        JoinReply {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    /// Checks a member's identity and generation (sync, heartbeat, commit).
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(i) = instance_id {
            if let Some(m) = self.member_of_instance(i) {
                if m.id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// A SyncGroup: answered now, or later as an [`Effect`] for `token`.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        now: i64,
        token: Token,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        effects: &mut Vec<Effect>,
    ) -> Option<SyncReply> {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return Some(SyncReply::failed(e));
        }
        let (ptype, pname) = protocol;
        if ptype.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || pname.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Some(SyncReply::failed(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                Some(SyncReply::failed(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = self.member(member_id).expect("checked");
                Some(self.sync_reply(m.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                let is_leader = self.leader.as_deref() == Some(member_id);
                let m = self.member_mut(member_id).expect("checked");
                m.sync_waiter = Some(token);
                m.expires_at = now + m.session_timeout_ms as i64;
                if is_leader {
                    for m in &mut self.members {
                        m.assignment = assignments
                            .iter()
                            .find(|(id, _)| *id == m.id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now);
                    self.deadline = None;
                    let replies: Vec<(Token, SyncReply)> = self
                        .members
                        .iter_mut()
                        .filter_map(|m| m.sync_waiter.take().map(|t| (t, m.assignment.clone())))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|(t, a)| (t, self.sync_reply(a)))
                        .collect();
                    effects.push(Effect::SyncAfterPersist(replies));
                }
                None
            }
            GroupState::Empty | GroupState::Dead => {
                Some(SyncReply::failed(ResponseError::UnknownMemberId))
            }
        }
    }

    fn sync_reply(&self, assignment: Bytes) -> SyncReply {
        SyncReply {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
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
mod tests {
    use super::*;

    const LIMITS: GroupLimits = GroupLimits {
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 0,
        consumer: crate::consumer::ConsumerLimits::DEFAULT,
    };

    fn join(member_id: &str, protocols: &[&str]) -> Join {
        Join {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id.
    fn new_member(g: &mut Group, now: i64, token: Token, effects: &mut Vec<Effect>) -> String {
        let r = g.join(now, token, join("", &["range"]), effects).unwrap();
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        assert!(g
            .join(now, token, join(&r.member_id, &["range"]), effects)
            .is_none());
        r.member_id
    }

    fn joins(effects: &[Effect]) -> Vec<(Token, JoinReply)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Join(t, r) => Some((*t, r.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_members_join_sync_and_become_stable() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        // Alone and nobody pending: the join completes at once.
        let done = joins(&fx);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].1.generation, done[0].1.leader.as_str()),
            (1, a.as_str())
        );
        assert_eq!(g.state, GroupState::CompletingRebalance);
        fx.clear();
        assert!(g
            .sync(
                0,
                2,
                &a,
                None,
                1,
                (None, None),
                vec![(a.clone(), Bytes::from("all"))],
                &mut fx
            )
            .is_none());
        let Effect::SyncAfterPersist(replies) = &fx[0] else {
            panic!("{fx:?}")
        };
        assert_eq!(replies[0].1.assignment, Bytes::from("all"));
        assert_eq!(g.state, GroupState::Stable);

        // A second member: the first is told to rejoin by its heartbeat.
        fx.clear();
        let b = new_member(&mut g, 10, 3, &mut fx);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(11, &a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(g.join(12, 4, join(&a, &["range"]), &mut fx).is_none());
        let done = joins(&fx);
        assert_eq!(done.len(), 2);
        let leader = done.iter().find(|(t, _)| *t == 4).unwrap();
        assert_eq!(leader.1.members.len(), 2, "the leader gets the member list");
        assert_eq!(leader.1.generation, 2);
        let follower = done.iter().find(|(t, _)| *t == 3).unwrap();
        assert!(follower.1.members.is_empty());
        fx.clear();
        // The follower syncs first and waits for the leader.
        assert!(g
            .sync(
                13,
                5,
                &b,
                None,
                2,
                (Some("consumer"), Some("range")),
                vec![],
                &mut fx
            )
            .is_none());
        assert!(fx.is_empty());
        g.sync(
            14,
            6,
            &a,
            None,
            2,
            (None, None),
            vec![
                (a.clone(), Bytes::from("p0")),
                (b.clone(), Bytes::from("p1")),
            ],
            &mut fx,
        );
        let Effect::SyncAfterPersist(replies) = &fx[0] else {
            panic!()
        };
        let mut got: Vec<_> = replies
            .iter()
            .map(|(t, r)| (*t, r.assignment.clone()))
            .collect();
        got.sort();
        assert_eq!(got, vec![(5, Bytes::from("p1")), (6, Bytes::from("p0"))]);
        assert_eq!(g.heartbeat(15, &b, None, 2), Ok(()));
        assert_eq!(
            g.heartbeat(15, &b, None, 1),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat(15, "nobody", None, 2),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn an_expired_member_is_removed_and_the_rest_rebalance() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
        let b = new_member(&mut g, 0, 3, &mut fx);
        g.join(0, 4, join(&a, &["range"]), &mut fx);
        g.sync(0, 5, &a, None, 2, (None, None), vec![], &mut fx);
        g.sync(0, 6, &b, None, 2, (None, None), vec![], &mut fx);
        assert_eq!(g.state, GroupState::Stable);
        fx.clear();
        // b heartbeats, a goes silent past its 10 s session.
        g.heartbeat(9_000, &b, None, 2).unwrap();
        g.tick(10_000, &mut fx);
        assert!(g.member(&a).is_none(), "a expired");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(10_001, &b, None, 2),
            Err(ResponseError::RebalanceInProgress)
        );
        g.join(10_002, 7, join(&b, &["range"]), &mut fx);
        let done = joins(&fx);
        assert_eq!(done.last().unwrap().1.leader, b, "the survivor leads");
        assert_eq!(g.generation, 3);
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
        let b = new_member(&mut g, 100, 3, &mut fx);
        fx.clear();
        // a keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
        assert_eq!(
            g.heartbeat(9_000, &a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        g.tick(15_000, &mut fx);
        assert!(g.member(&a).is_some());
        g.heartbeat(15_000, &a, None, 1).unwrap_err();
        g.tick(20_100, &mut fx);
        assert!(g.member(&a).is_none());
        assert_eq!(joins(&fx)[0].1.member_id, b);
        assert_eq!(g.state, GroupState::CompletingRebalance);
    }

    #[test]
    fn leaving_and_the_last_member_leaving() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
        assert_eq!(
            g.leave(1, "x", None, &mut fx),
            Err(ResponseError::UnknownMemberId)
        );
        g.leave(1, &a, None, &mut fx).unwrap();
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.members.is_empty());
        assert_eq!(g.generation, 2);
        assert_eq!(
            g.check_commit("", None, -1),
            Ok(()),
            "an empty group takes outside commits"
        );
    }

    #[test]
    fn outside_commits_to_an_active_group_and_stale_generations_are_refused() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        assert_eq!(
            g.check_commit(&a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
        assert_eq!(g.check_commit(&a, None, 1), Ok(()));
        assert_eq!(
            g.check_commit(&a, None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.check_commit("", None, -1),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn incompatible_protocols_and_bad_timeouts() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        new_member(&mut g, 0, 1, &mut fx);
        let r = g.join(0, 2, join("", &["roundrobin"]), &mut fx).unwrap();
        assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
        let mut bad = join("", &["range"]);
        bad.session_timeout_ms = 10;
        assert_eq!(
            g.join(0, 3, bad, &mut fx).unwrap().error,
            Some(ResponseError::InvalidSessionTimeout)
        );
    }

    #[test]
    fn the_protocol_most_members_prefer_wins() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let r = g
            .join(0, 1, join("", &["range", "cooperative-sticky"]), &mut fx)
            .unwrap();
        g.join(
            0,
            1,
            join(&r.member_id, &["range", "cooperative-sticky"]),
            &mut fx,
        );
        let a = r.member_id;
        g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
        let r = g
            .join(0, 3, join("", &["cooperative-sticky", "range"]), &mut fx)
            .unwrap();
        g.join(
            0,
            3,
            join(&r.member_id, &["cooperative-sticky", "range"]),
            &mut fx,
        );
        let r2 = g
            .join(0, 4, join("", &["cooperative-sticky", "range"]), &mut fx)
            .unwrap();
        g.join(
            0,
            4,
            join(&r2.member_id, &["cooperative-sticky", "range"]),
            &mut fx,
        );
        g.join(0, 5, join(&a, &["range", "cooperative-sticky"]), &mut fx);
        assert_eq!(g.protocol.as_deref(), Some("cooperative-sticky"));
    }

    #[test]
    fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let mut j = join("", &["range"]);
        j.instance_id = Some("i-1".into());
        assert!(
            g.join(0, 1, j.clone(), &mut fx).is_none(),
            "static members need no second join"
        );
        let a = joins(&fx)[0].1.member_id.clone();
        g.sync(
            0,
            2,
            &a,
            None,
            1,
            (None, None),
            vec![(a.clone(), Bytes::from("mine"))],
            &mut fx,
        );
        fx.clear();
        // Restarted: no member id, same instance id.
        let r = g.join(100, 3, j, &mut fx).unwrap();
        assert_eq!(r.error, None);
        assert_ne!(r.member_id, a);
        assert_eq!(r.generation, 1, "no rebalance");
        assert!(r.skip_assignment, "it led: it must not assign again");
        assert_eq!(g.state, GroupState::Stable);
        let s = g
            .sync(
                101,
                4,
                &r.member_id,
                Some("i-1"),
                1,
                (None, None),
                vec![],
                &mut fx,
            )
            .unwrap();
        assert_eq!(s.assignment, Bytes::from("mine"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat(102, &a, Some("i-1"), 1),
            Err(ResponseError::FencedInstanceId)
        );
    }

    #[test]
    fn an_assignment_that_was_not_persisted_starts_a_new_rebalance() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        g.sync(
            0,
            2,
            &a,
            None,
            1,
            (None, None),
            vec![(a.clone(), Bytes::from("x"))],
            &mut fx,
        );
        assert_eq!(g.state, GroupState::Stable);
        g.assignment_not_persisted(1, 0, &mut fx);
        assert_eq!(
            g.state,
            GroupState::Stable,
            "an older generation's failure changes nothing"
        );
        g.assignment_not_persisted(1, 1, &mut fx);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(2, &a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(g.member(&a).unwrap().assignment.is_empty());
    }

    #[test]
    fn snapshots_restore_a_stable_group() {
        let mut g = Group::new("g", 0, LIMITS);
        let mut fx = Vec::new();
        let a = new_member(&mut g, 0, 1, &mut fx);
        g.sync(
            0,
            2,
            &a,
            None,
            1,
            (None, None),
            vec![(a.clone(), Bytes::from("mine"))],
            &mut fx,
        );
        let back = Group::restore("g", g.snapshot(5), 1_000, LIMITS);
        assert_eq!(back.state, GroupState::Stable);
        assert_eq!(back.generation, 1);
        assert_eq!(back.member(&a).unwrap().assignment, Bytes::from("mine"));
        assert_eq!(back.member(&a).unwrap().expires_at, 11_000);
    }
}
