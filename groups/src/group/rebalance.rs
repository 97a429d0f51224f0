//! The rebalance of a classic group: JoinGroup until every member has
//! joined (or the rebalance timeout), the leader's choice of protocol and
//! its assignment handed out through SyncGroup, static members rejoining
//! into their old place.

use bytes::Bytes;
use rill_net::kafka_protocol::ResponseError;

use super::*;

impl Group {
    /// Protocols every member (and `extra`) supports, in `extra`'s order.
    pub(super) fn common_protocols<'a>(&self, extra: &'a [(String, Bytes)]) -> Vec<&'a str> {
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
    pub(super) fn rejoin_static(
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

    pub(super) fn add_member(
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

    pub(super) fn update_member(
        &mut self,
        now: i64,
        token: Token,
        req: &Join,
        effects: &mut Vec<Effect>,
    ) {
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
    pub(super) fn cancel_syncs(&mut self, effects: &mut Vec<Effect>) {
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

    pub(super) fn prepare_rebalance(&mut self, now: i64, effects: &mut Vec<Effect>) {
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

    pub(super) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.join_waiter.is_some())
    }

    pub(super) fn maybe_complete_join(&mut self, now: i64, effects: &mut Vec<Effect>) {
        if self.state == GroupState::PreparingRebalance && !self.initial_delay && self.all_joined()
        {
            self.complete_join(now, effects);
        }
    }

    /// Ends the join phase: members that did not rejoin go, the generation
    /// moves on, a protocol and a leader are chosen and every joined member
    /// is answered (the leader with the member list).
    pub(super) fn complete_join(&mut self, now: i64, effects: &mut Vec<Effect>) {
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

    pub(super) fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect()
    }

    /// The protocol most members rank highest among those all support.
    pub(super) fn select_protocol(&self) -> Option<String> {
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
    pub(super) fn join_reply(&self, member: &str) -> JoinReply {
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
    pub(super) fn check_member(
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

    pub(super) fn sync_reply(&self, assignment: Bytes) -> SyncReply {
        SyncReply {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }
}
