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
mod tests {
    use super::test_image::Image;
    use super::*;

    fn image(topics: &[(&str, u8, i32)]) -> Image {
        Image {
            version: 1,
            topics: topics
                .iter()
                .map(|(n, id, p)| (n.to_string(), (Uuid::from_bytes([*id; 16]), *p)))
                .collect(),
        }
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            epoch: 0,
            rebalance_timeout_ms: 10_000,
            topics: Some(topics.iter().map(|s| s.to_string()).collect()),
            owned: Some(Partitions::new()),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Default::default()
        }
    }

    fn count(p: &Partitions) -> usize {
        p.values().map(|s| s.len()).sum()
    }

    fn overlap(a: &Partitions, b: &Partitions) -> bool {
        a.iter()
            .any(|(t, ps)| b.get(t).is_some_and(|q| !q.is_disjoint(ps)))
    }

    #[test]
    fn a_second_member_gets_half_only_after_the_first_revokes_it() {
        let img = image(&[("t", 1, 8)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        let (a, changed) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
        assert!(changed);
        assert_eq!((a.epoch, count(a.assignment.as_ref().unwrap())), (1, 8));
        let a_owns = a.assignment.unwrap();
        let (b, _) = g.heartbeat(10, join("b", &["t"]), &img, &limits).unwrap();
        // b is at epoch 2 but its partitions are a's until a lets go.
        assert_eq!(b.epoch, 2);
        assert_eq!(count(b.assignment.as_ref().unwrap()), 0);
        assert_eq!(g.state(), ConsumerGroupState::Reconciling);
        // a hears it must give up four, and stays at epoch 1.
        let (a2, _) = g
            .heartbeat(20, beat("a", 1, &a_owns), &img, &limits)
            .unwrap();
        assert_eq!(a2.epoch, 1);
        let a_keeps = a2.assignment.unwrap();
        assert_eq!(count(&a_keeps), 4);
        // b asks again before a confirmed: still nothing.
        let (b2, _) = g
            .heartbeat(30, beat("b", 2, &Partitions::new()), &img, &limits)
            .unwrap();
        assert_eq!(b2.assignment.map(|p| count(&p)), Some(0));
        // a confirms; b then gets the other four.
        let (a3, _) = g
            .heartbeat(40, beat("a", 1, &a_keeps), &img, &limits)
            .unwrap();
        assert_eq!(a3.epoch, 2);
        let (b3, _) = g
            .heartbeat(50, beat("b", 2, &Partitions::new()), &img, &limits)
            .unwrap();
        let b_owns = b3.assignment.unwrap();
        assert_eq!(count(&b_owns), 4);
        assert!(!overlap(&a_keeps, &b_owns));
        assert_eq!(g.state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn epochs_are_checked() {
        let img = image(&[("t", 1, 4)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        let (a, _) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
        let owned = a.assignment.unwrap();
        let err = g
            .heartbeat(1, beat("a", 7, &owned), &img, &limits)
            .unwrap_err();
        assert_eq!(err.error, ResponseError::FencedMemberEpoch);
        let err = g
            .heartbeat(1, beat("x", 1, &owned), &img, &limits)
            .unwrap_err();
        assert_eq!(err.error, ResponseError::UnknownMemberId);
        assert_eq!(g.check_member_epoch("a", 1), Ok(()));
        assert_eq!(
            g.check_member_epoch("a", 0),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            g.check_member_epoch("a", 2),
            Err(ResponseError::FencedMemberEpoch)
        );
        assert_eq!(
            g.check_member_epoch("", -1),
            Err(ResponseError::UnknownMemberId)
        );
        // A lost answer: the previous epoch with a subset of the partitions is fine.
        g.heartbeat(2, join("b", &["t"]), &img, &limits).unwrap();
        g.heartbeat(3, beat("a", 1, &owned), &img, &limits).unwrap();
        let keep: Partitions = g.members["a"].assigned.clone();
        let (a3, _) = g.heartbeat(4, beat("a", 1, &keep), &img, &limits).unwrap();
        assert_eq!(a3.epoch, 2);
        assert!(g.heartbeat(5, beat("a", 1, &keep), &img, &limits).is_ok());
    }

    #[test]
    fn leaving_expiring_and_fencing_hand_partitions_to_the_others() {
        let img = image(&[("t", 1, 6)]);
        let limits = ConsumerLimits {
            session_timeout_ms: 1_000,
            ..Default::default()
        };
        let mut g = ConsumerGroup::new();
        g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
        g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
        g.heartbeat(0, join("c", &["t"]), &img, &limits).unwrap();
        // c leaves: the target moves its partitions to a and b.
        let (r, changed) = g
            .heartbeat(
                10,
                beat("c", LEAVE_EPOCH, &Partitions::new()),
                &img,
                &limits,
            )
            .unwrap();
        assert!(changed && r.epoch == LEAVE_EPOCH);
        assert_eq!(
            count(&g.target["a"]) + count(&g.target["b"]),
            6,
            "{:?}",
            g.target
        );
        // b goes silent: after its session, a's target is everything.
        g.heartbeat(
            900,
            beat("a", g.members["a"].epoch, &g.members["a"].assigned.clone()),
            &img,
            &limits,
        )
        .unwrap();
        let gone = g.tick(1_001, &img);
        assert_eq!(gone, vec!["b".to_string()]);
        assert_eq!(count(&g.target["a"]), 6);
        let (a, _) = g
            .heartbeat(
                1_002,
                beat("a", g.members["a"].epoch, &g.members["a"].assigned.clone()),
                &img,
                &limits,
            )
            .unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 6);
        assert_eq!(g.state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn a_member_that_does_not_revoke_in_time_is_fenced() {
        let img = image(&[("t", 1, 4)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        let (a, _) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
        let owned = a.assignment.unwrap();
        g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
        g.heartbeat(100, beat("a", 1, &owned), &img, &limits)
            .unwrap();
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        // It keeps reporting all four as owned, past its 10 s rebalance timeout.
        g.heartbeat(5_000, beat("a", 1, &owned), &img, &limits)
            .unwrap();
        assert_eq!(g.next_due(), Some(10_100));
        assert_eq!(g.tick(10_100, &img), vec!["a".to_string()]);
        let (b, _) = g
            .heartbeat(10_200, beat("b", 2, &Partitions::new()), &img, &limits)
            .unwrap();
        assert_eq!(count(b.assignment.as_ref().unwrap()), 4);
    }

    #[test]
    fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
        let img = image(&[("t", 1, 4)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        let mut s = join("s1", &["t"]);
        s.instance_id = Some("inst".into());
        let (a, _) = g.heartbeat(0, s.clone(), &img, &limits).unwrap();
        g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
        g.heartbeat(
            1,
            beat("s1", a.epoch, &a.assignment.clone().unwrap()),
            &img,
            &limits,
        )
        .unwrap();
        let keep = g.members["s1"].assigned.clone();
        let mut hb = beat("s1", 1, &keep);
        hb.instance_id = Some("inst".into());
        g.heartbeat(2, hb, &img, &limits).unwrap();
        g.heartbeat(3, beat("b", 2, &Partitions::new()), &img, &limits)
            .unwrap();
        assert_eq!(g.state(), ConsumerGroupState::Stable);
        let epoch = g.epoch;
        let mine = g.members["s1"].assigned.clone();
        // It leaves for now (-2) and comes back under a new member id.
        let mut leave = beat("s1", STATIC_LEAVE_EPOCH, &Partitions::new());
        leave.instance_id = Some("inst".into());
        g.heartbeat(4, leave, &img, &limits).unwrap();
        // Another instance of the same id cannot take it while it is held.
        let mut other = join("s2", &["t"]);
        other.instance_id = Some("inst".into());
        let (back, _) = g.heartbeat(5, other, &img, &limits).unwrap();
        assert_eq!(back.assignment.as_ref(), Some(&mine));
        assert_eq!(g.epoch, epoch, "no rebalance");
        assert!(!g.members.contains_key("s1"));
        // While it is active, a second process with the same instance is refused.
        let mut third = join("s3", &["t"]);
        third.instance_id = Some("inst".into());
        let err = g.heartbeat(6, third, &img, &limits).unwrap_err();
        assert_eq!(err.error, ResponseError::UnreleasedInstanceId);
    }

    #[test]
    fn regex_subscriptions_follow_new_topics() {
        let mut img = image(&[("orders-eu", 1, 2), ("payments", 2, 2)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        let mut hb = join("a", &[]);
        hb.topics = None;
        hb.regex = Some("orders-.*".into());
        let (a, _) = g.heartbeat(0, hb, &img, &limits).unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 2);
        img.topics
            .insert("orders-us".into(), (Uuid::from_bytes([3; 16]), 3));
        img.version += 1;
        let (a2, changed) = g
            .heartbeat(1, beat("a", a.epoch, &a.assignment.unwrap()), &img, &limits)
            .unwrap();
        assert!(changed);
        assert_eq!(count(a2.assignment.as_ref().unwrap()), 5);
        let mut bad = join("b", &[]);
        bad.regex = Some("(".into());
        assert_eq!(
            g.heartbeat(2, bad, &img, &limits).unwrap_err().error,
            ResponseError::InvalidRegularExpression
        );
    }

    #[test]
    fn a_snapshot_restores_the_group() {
        let img = image(&[("t", 1, 4)]);
        let limits = ConsumerLimits::default();
        let mut g = ConsumerGroup::new();
        g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
        let json = serde_json::to_vec(&g).unwrap();
        let back: ConsumerGroup = serde_json::from_slice(&json).unwrap();
        let back = back.restore(100, &limits);
        assert_eq!(back.members["a"].assigned, g.members["a"].assigned);
        assert_eq!(back.members["a"].expires_at, 100 + 45_000);
        assert_eq!(
            (back.epoch, back.assignment_epoch),
            (g.epoch, g.assignment_epoch)
        );
    }
}
