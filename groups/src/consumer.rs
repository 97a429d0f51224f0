//! One group under the KIP-848 consumer protocol (ConsumerGroupHeartbeat),
//! as a pure state machine: a heartbeat in, an answer and whether the group
//! must be made durable out; the clock moves through [`ConsumerGroup::tick`].
//!
//! Three epochs drive it, as in Kafka's coordinator:
//! - the **group epoch** grows whenever what the assignment depends on
//!   changes: a member joins or leaves, a subscription changes, a subscribed
//!   topic gains partitions or a regex matches another topic;
//! - the **assignment epoch** is the group epoch the target assignment was
//!   computed at (by a server-side [`assignor`](super::assignor));
//! - each **member epoch** reaches the assignment epoch through
//!   reconciliation: a member first gives up what it must (it stays at its
//!   epoch, `UnrevokedPartitions`, until a heartbeat shows it no longer owns
//!   them), then gets the target's partitions that are free; those another
//!   member still holds wait (`UnreleasedPartitions`) until it lets go.
//!   So no partition ever has two owners, and a member that does not revoke
//!   within its rebalance timeout is fenced.
//!
//! Static members (`group.instance.id`) leaving with epoch -2 keep their
//! place and partitions until their session runs out; the same instance
//! joining again takes them over without a rebalance.

use std::collections::{BTreeMap, BTreeSet};

use rill_net::kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::{self, AssignmentSpec, Partitions};

/// The member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for now (it will be back).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Broker settings for consumer-protocol groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerLimits {
    /// `group.consumer.session.timeout.ms`: a member not heard from this
    /// long is removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`, told to every member.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub max_members: usize,
}

impl ConsumerLimits {
    /// Kafka's defaults.
    pub const DEFAULT: ConsumerLimits = ConsumerLimits {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_members: usize::MAX,
    };
}

impl Default for ConsumerLimits {
    fn default() -> Self {
        ConsumerLimits::DEFAULT
    }
}

/// The topics a group can see (the broker's metadata; a map in tests).
pub trait TopicImage {
    /// Changes whenever topics or their partition counts do.
    fn version(&self) -> u64;
    /// (id, partition count) of a topic.
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Names of the topics a regex subscription may match (no internal ones).
    fn names(&self) -> Vec<&str>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// At the assignment epoch with its whole target.
    Stable,
    /// Must give up `revoking` before it moves on.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for partitions others still hold.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout_ms: i32,
    pub topics: BTreeSet<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// What it owns now.
    pub assigned: Partitions,
    /// What it owned and must give up.
    pub revoking: Partitions,
    /// Its session ends then unless it heartbeats.
    #[serde(skip)]
    pub expires_at: i64,
    /// It is fenced then if it still holds `revoking`.
    #[serde(skip)]
    pub revoke_deadline: Option<i64>,
}

/// A ConsumerGroupHeartbeat, as the group needs it (`None`: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub topics: Option<Vec<String>>,
    /// `Some("")` clears the regex.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns, when it says.
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub epoch: i32,
    /// The member's whole assignment, when it is news to it.
    pub assignment: Option<Partitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    pub error: ResponseError,
    pub message: String,
}

fn fail<T>(error: ResponseError, message: impl Into<String>) -> Result<T, HeartbeatError> {
    Err(HeartbeatError {
        error,
        message: message.into(),
    })
}

/// The state Kafka's ConsumerGroupDescribe and ListGroups name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// Checks a regex the way a subscription uses it (the whole topic name
/// must match, as Kafka's RE2/J `matches()`).
pub fn compile_regex(r: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{r})$"))
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment (at `assignment_epoch`), by member.
    pub target: BTreeMap<String, Partitions>,
    /// The subscribed topics (name → id, partitions) the target was
    /// computed from.
    pub subscribed: BTreeMap<String, (Uuid, i32)>,
    /// Each subscribed regex → the topics it matched.
    pub resolved: BTreeMap<String, BTreeSet<String>>,
    /// The assignor of the last target.
    pub assignor: String,
    /// The topic image version `subscribed` was computed at.
    #[serde(skip)]
    image_version: Option<u64>,
}

fn is_subset(owned: Option<&Partitions>, of: &Partitions) -> bool {
    owned.is_none_or(|o| {
        o.iter()
            .all(|(t, ps)| ps.is_empty() || of.get(t).is_some_and(|a| ps.is_subset(a)))
    })
}

/// Whether the member may still hold any of `revoking` (it does not say:
/// assume so).
fn owns_any(owned: Option<&Partitions>, revoking: &Partitions) -> bool {
    match owned {
        None => true,
        Some(o) => o
            .iter()
            .any(|(t, ps)| revoking.get(t).is_some_and(|r| !r.is_disjoint(ps))),
    }
}

fn prune(p: &mut Partitions) {
    p.retain(|_, s| !s.is_empty());
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup {
            assignor: assignor::DEFAULT_ASSIGNOR.to_string(),
            ..Default::default()
        }
    }

    /// The group as recorded: every member gets a fresh session (it is
    /// removed unless it heartbeats) and a fresh revocation deadline.
    pub fn restore(mut self, now: i64, limits: &ConsumerLimits) -> ConsumerGroup {
        for m in self.members.values_mut() {
            m.expires_at = now + limits.session_timeout_ms as i64;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline = Some(now + m.rebalance_timeout_ms.max(0) as i64);
            }
        }
        self
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    fn member_of_instance(&self, instance: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// One heartbeat; `Ok((reply, changed))`, where `changed` means the
    /// group must be recorded before the reply goes out.
    pub fn heartbeat(
        &mut self,
        now: i64,
        hb: Heartbeat,
        image: &dyn TopicImage,
        limits: &ConsumerLimits,
    ) -> Result<(HeartbeatReply, bool), HeartbeatError> {
        if hb.epoch == LEAVE_EPOCH || hb.epoch == STATIC_LEAVE_EPOCH {
            return self.leave(now, hb, image);
        }
        if hb.epoch < 0 {
            return fail(ResponseError::InvalidRequest, "invalid member epoch");
        }
        if let Some(a) = &hb.assignor {
            if !assignor::ASSIGNORS.contains(&a.as_str()) {
                return fail(
                    ResponseError::UnsupportedAssignor,
                    format!("assignor {a} is not one of {:?}", assignor::ASSIGNORS),
                );
            }
        }
        if let Some(r) = hb.regex.as_deref().filter(|r| !r.is_empty()) {
            if let Err(e) = compile_regex(r) {
                return fail(
                    ResponseError::InvalidRegularExpression,
                    format!("invalid regular expression {r}: {e}"),
                );
            }
        }
        let id = hb.member_id.clone();
        let mut bump = false;
        let mut changed = false;
        let mut replaced: Option<ConsumerMember> = None;
        if let Some(instance) = hb.instance_id.as_deref() {
            let existing = self
                .member_of_instance(instance)
                .map(|m| (m.id.clone(), m.epoch));
            match existing {
                Some((old, epoch)) if old != id => {
                    if hb.epoch != 0 {
                        return fail(
                            ResponseError::FencedInstanceId,
                            format!("instance {instance} is member {old}"),
                        );
                    }
                    if epoch != STATIC_LEAVE_EPOCH {
                        return fail(
                            ResponseError::UnreleasedInstanceId,
                            format!("instance {instance} is still used by member {old}"),
                        );
                    }
                    replaced = self.members.remove(&old);
                    let target = self.target.remove(&old).unwrap_or_default();
                    self.target.insert(id.clone(), target);
                }
                None if hb.epoch != 0 => {
                    return fail(
                        ResponseError::UnknownMemberId,
                        format!("instance {instance} is unknown"),
                    );
                }
                _ => {}
            }
        }
        let before = self.members.get(&id).cloned();
        if hb.epoch == 0 {
            if let Some(old) = replaced {
                // The same instance, back: its place, epoch and partitions.
                let epoch = if old.epoch == STATIC_LEAVE_EPOCH {
                    old.previous_epoch
                } else {
                    old.epoch
                };
                self.members.insert(
                    id.clone(),
                    ConsumerMember {
                        id: id.clone(),
                        epoch,
                        ..old
                    },
                );
                changed = true;
            } else if let Some(m) = self.members.get_mut(&id) {
                // A member joining again under its own id owns nothing now
                // (it gave everything up before rejoining): start it over.
                m.assigned.clear();
                m.revoking.clear();
                m.previous_epoch = m.epoch;
                m.epoch = 0;
                m.state = MemberState::Stable;
                m.revoke_deadline = None;
                changed = true;
            } else {
                if self.members.len() >= limits.max_members {
                    return fail(
                        ResponseError::GroupMaxSizeReached,
                        format!("the group has {} members", self.members.len()),
                    );
                }
                if hb.topics.is_none() && hb.regex.is_none() {
                    return fail(ResponseError::InvalidRequest, "a joining member subscribes");
                }
                self.members.insert(
                    id.clone(),
                    ConsumerMember {
                        id: id.clone(),
                        instance_id: hb.instance_id.clone(),
                        rack_id: None,
                        client_id: String::new(),
                        client_host: String::new(),
                        epoch: 0,
                        previous_epoch: 0,
                        state: MemberState::Stable,
                        rebalance_timeout_ms: hb.rebalance_timeout_ms.max(0),
                        topics: BTreeSet::new(),
                        regex: None,
                        assignor: None,
                        assigned: Partitions::new(),
                        revoking: Partitions::new(),
                        expires_at: 0,
                        revoke_deadline: None,
                    },
                );
                bump = true;
                changed = true;
            }
        } else {
            let Some(m) = self.members.get(&id) else {
                return fail(
                    ResponseError::UnknownMemberId,
                    format!("member {id} is not in the group"),
                );
            };
            if hb.epoch > m.epoch
                || (hb.epoch < m.epoch
                    && (hb.epoch != m.previous_epoch || !is_subset(hb.owned.as_ref(), &m.assigned)))
            {
                return fail(
                    ResponseError::FencedMemberEpoch,
                    format!(
                        "member epoch {} is not the coordinator's {}: abandon the partitions and rejoin",
                        hb.epoch, m.epoch
                    ),
                );
            }
        }
        {
            let m = self.members.get_mut(&id).expect("the member");
            m.expires_at = now + limits.session_timeout_ms as i64;
            m.client_id = hb.client_id.clone();
            m.client_host = hb.client_host.clone();
            if let Some(r) = &hb.rack_id {
                m.rack_id = Some(r.clone());
            }
            if hb.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
            }
            if let Some(a) = &hb.assignor {
                m.assignor = Some(a.clone());
            }
            if hb.instance_id.is_some() {
                m.instance_id = hb.instance_id.clone();
            }
            if let Some(topics) = &hb.topics {
                let topics: BTreeSet<String> = topics.iter().cloned().collect();
                if topics != m.topics {
                    m.topics = topics;
                    bump = true;
                }
            }
            if let Some(r) = &hb.regex {
                let r = (!r.is_empty()).then(|| r.clone());
                if r != m.regex {
                    m.regex = r;
                    bump = true;
                }
            }
            if before.as_ref() != Some(m) {
                changed = true;
            }
        }
        if self.refresh_subscriptions(image, bump) {
            bump = true;
        }
        if bump {
            self.epoch += 1;
            changed = true;
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target();
        }
        let assigned_before = before.as_ref().map(|m| m.assigned.clone());
        if self.reconcile(now, &id, hb.owned.as_ref()) {
            changed = true;
        }
        let m = &self.members[&id];
        let news = assigned_before.as_ref() != Some(&m.assigned);
        let assignment = (hb.owned.is_some() || hb.epoch == 0 || news).then(|| m.assigned.clone());
        Ok((
            HeartbeatReply {
                member_id: id,
                epoch: m.epoch,
                assignment,
            },
            changed,
        ))
    }

    /// A heartbeat with epoch -1 (leave) or -2 (a static member, for now).
    fn leave(
        &mut self,
        _now: i64,
        hb: Heartbeat,
        image: &dyn TopicImage,
    ) -> Result<(HeartbeatReply, bool), HeartbeatError> {
        let id = match hb.instance_id.as_deref() {
            Some(instance) => {
                let Some(m) = self.member_of_instance(instance) else {
                    return fail(
                        ResponseError::UnknownMemberId,
                        format!("instance {instance} is unknown"),
                    );
                };
                if m.id != hb.member_id {
                    return fail(
                        ResponseError::FencedInstanceId,
                        format!("instance {instance} is member {}", m.id),
                    );
                }
                m.id.clone()
            }
            None if hb.epoch == STATIC_LEAVE_EPOCH => {
                return fail(
                    ResponseError::InvalidRequest,
                    "only a static member leaves with epoch -2",
                )
            }
            None => {
                if !self.members.contains_key(&hb.member_id) {
                    return fail(
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the group", hb.member_id),
                    );
                }
                hb.member_id.clone()
            }
        };
        if hb.epoch == STATIC_LEAVE_EPOCH {
            let m = self.members.get_mut(&id).expect("found");
            if m.epoch != STATIC_LEAVE_EPOCH {
                m.previous_epoch = m.epoch;
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove(&id, image);
        }
        Ok((
            HeartbeatReply {
                member_id: id,
                epoch: hb.epoch,
                assignment: None,
            },
            true,
        ))
    }

    /// Takes a member out; the others are reassigned its partitions.
    fn remove(&mut self, id: &str, image: &dyn TopicImage) {
        if self.members.remove(id).is_none() {
            return;
        }
        self.target.remove(id);
        self.refresh_subscriptions(image, true);
        self.epoch += 1;
        self.compute_target();
    }

    /// Recomputes which topics the members subscribe to (regexes resolved
    /// against `image`) when a subscription changed (`force`) or the image
    /// did; whether that changed what the assignment depends on.
    fn refresh_subscriptions(&mut self, image: &dyn TopicImage, force: bool) -> bool {
        if !force && self.image_version == Some(image.version()) {
            return false;
        }
        self.image_version = Some(image.version());
        let regexes: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_ref())
            .collect();
        let mut resolved: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if !regexes.is_empty() {
            let names = image.names();
            for r in regexes {
                let matched = match compile_regex(r) {
                    Ok(re) => names
                        .iter()
                        .filter(|n| re.is_match(n))
                        .map(|n| n.to_string())
                        .collect(),
                    Err(_) => BTreeSet::new(),
                };
                resolved.insert(r.clone(), matched);
            }
        }
        let mut subscribed = BTreeMap::new();
        for m in self.members.values() {
            let via_regex = m.regex.as_ref().and_then(|r| resolved.get(r));
            for name in m.topics.iter().chain(via_regex.into_iter().flatten()) {
                if let Some(t) = image.lookup(name) {
                    subscribed.insert(name.clone(), t);
                }
            }
        }
        let changed = subscribed != self.subscribed || resolved != self.resolved;
        self.subscribed = subscribed;
        self.resolved = resolved;
        changed
    }

    /// The topic ids `m` subscribes to, as of the last refresh.
    fn topic_ids(&self, m: &ConsumerMember) -> BTreeSet<Uuid> {
        let via_regex = m.regex.as_ref().and_then(|r| self.resolved.get(r));
        m.topics
            .iter()
            .chain(via_regex.into_iter().flatten())
            .filter_map(|n| self.subscribed.get(n).map(|(id, _)| *id))
            .collect()
    }

    /// A new target assignment at the group epoch, by the assignor most
    /// members ask for.
    fn compute_target(&mut self) {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let chosen = votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(a, _)| a.to_string())
            .unwrap_or_else(|| assignor::DEFAULT_ASSIGNOR.to_string());
        let members: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.topic_ids(m)))
            .collect();
        let topics: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        self.target = assignor::assign(
            &chosen,
            &AssignmentSpec {
                members: &members,
                topics: &topics,
                previous: &self.target,
            },
        );
        self.assignor = chosen;
        self.assignment_epoch = self.epoch;
    }

    /// Whether another member than `id` owns the partition (or is giving it up).
    fn held_by_other(&self, id: &str, t: &Uuid, p: i32) -> bool {
        self.members.values().any(|m| {
            m.id != id
                && (m.assigned.get(t).is_some_and(|s| s.contains(&p))
                    || m.revoking.get(t).is_some_and(|s| s.contains(&p)))
        })
    }

    /// Moves member `id` toward the target as far as it can now (Kafka's
    /// CurrentAssignmentBuilder); whether anything changed.
    fn reconcile(&mut self, now: i64, id: &str, owned: Option<&Partitions>) -> bool {
        let m = &self.members[id];
        if m.epoch == STATIC_LEAVE_EPOCH {
            return false;
        }
        let proceed = match m.state {
            MemberState::Stable => m.epoch != self.assignment_epoch,
            MemberState::UnrevokedPartitions => !owns_any(owned, &m.revoking),
            MemberState::UnreleasedPartitions => true,
        };
        if !proceed {
            return false;
        }
        let target = self.target.get(id).cloned().unwrap_or_default();
        let mut keep = Partitions::new();
        let mut revoke = Partitions::new();
        for (t, ps) in &m.assigned {
            let want = target.get(t);
            for &p in ps {
                if want.is_some_and(|w| w.contains(&p)) {
                    keep.entry(*t).or_default().insert(p);
                } else {
                    revoke.entry(*t).or_default().insert(p);
                }
            }
        }
        let mut unreleased = false;
        let mut add = Partitions::new();
        for (t, ps) in &target {
            for &p in ps {
                if keep.get(t).is_some_and(|k| k.contains(&p)) {
                    continue;
                }
                if self.held_by_other(id, t, p) {
                    unreleased = true;
                } else {
                    add.entry(*t).or_default().insert(p);
                }
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let before = self.members[id].clone();
        let m = self.members.get_mut(id).expect("the member");
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = keep;
            m.revoking = revoke;
            if before.state != MemberState::UnrevokedPartitions {
                m.revoke_deadline = Some(now + m.rebalance_timeout_ms.max(0) as i64);
            }
        } else {
            for (t, ps) in add {
                keep.entry(t).or_default().extend(ps);
            }
            prune(&mut keep);
            m.assigned = keep;
            m.revoking.clear();
            m.revoke_deadline = None;
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
            }
        }
        *m != before
    }

    /// The clock moved: members whose session ran out, or that did not give
    /// up their partitions within their rebalance timeout, are removed.
    /// Whether the group changed.
    pub fn tick(&mut self, now: i64, image: &dyn TopicImage) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expires_at <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id, image);
        }
        gone
    }

    /// The earliest moment something in this group is due.
    pub fn next_due(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| [Some(m.expires_at), m.revoke_deadline])
            .flatten()
            .min()
    }

    /// Whether an OffsetCommit (or a fetch with `require_stable`) from this
    /// member at this epoch may proceed. A negative epoch with no member id
    /// comes from outside the group: only an empty group takes it.
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        match epoch.cmp(&m.epoch) {
            std::cmp::Ordering::Greater => Err(ResponseError::FencedMemberEpoch),
            std::cmp::Ordering::Less => Err(ResponseError::StaleMemberEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The topic names any member subscribes to now.
    pub fn subscribed_topics(&self) -> Vec<String> {
        self.subscribed.keys().cloned().collect()
    }
}

/// A topic image of fixed topics, for tests and the simulation.
#[cfg(test)]
pub(crate) mod test_image {
    use super::*;

    pub struct Image {
        pub version: u64,
        pub topics: BTreeMap<String, (Uuid, i32)>,
    }

    impl TopicImage for Image {
        fn version(&self) -> u64 {
            self.version
        }
        fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
            self.topics.get(name).copied()
        }
        fn names(&self) -> Vec<&str> {
            self.topics.keys().map(|s| s.as_str()).collect()
        }
    }
}

#[cfg(test)]
mod tests;
