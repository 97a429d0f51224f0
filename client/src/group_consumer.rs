//! A consumer in a group: `subscribe` to topics (or a pattern), `poll`,
//! `commit`. The group's members share the topics' partitions — each record
//! goes to one member — and every group reads everything.
//!
//! Two protocols, chosen by [`GroupConfig::protocol`]:
//! - [`GroupProtocol::Consumer`] (the default; KIP-848, `kip848`): the
//!   coordinator assigns (uniform or range), the member reconciles
//!   incrementally — only the partitions that move are revoked and
//!   assigned, the others keep being read through a rebalance — and pattern
//!   subscriptions are matched by the coordinator, new topics included.
//! - [`GroupProtocol::Classic`] (every Kafka-API broker): the leader member
//!   assigns with the range assignor; the next `poll` after the coordinator
//!   asks for a rebalance revokes every partition, rejoins, and resumes.
//!
//! Either way a background task heartbeats, a revocation commits first (with
//! auto-commit), newly assigned partitions resume at their committed
//! offsets, and a member whose session was lost (fenced, unknown member,
//! illegal generation) loses its partitions without a commit.
//!
//! Wraps [`Consumer`] (assign + seek), as that type was built for.

mod kip848;
mod range;

pub use range::range_assign;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::task::JoinHandle;

use crate::cluster::Client;
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset, OffsetReset};
use crate::error::{Error, Result};
use rill_net::consumer_protocol;

use crate::groups::{commit_offsets, coordinator, decode_assignment, fetch_offsets, Member};
use crate::offsets::TopicPartition;
use crate::transport::connection::Connection;
pub use kip848::Subscription;

/// Which group protocol a [`GroupConsumer`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// KIP-848 (`group.protocol=consumer`): server-side assignment,
    /// incremental rebalances, pattern subscriptions.
    Consumer,
    /// JoinGroup/SyncGroup with a client-side range assignor (eager).
    Classic,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    pub protocol: GroupProtocol,
    /// The coordinator's assignor for [`GroupProtocol::Consumer`] ("uniform"
    /// or "range"; `None`: the coordinator's default).
    pub server_assignor: Option<String>,
    /// Static membership (KIP-345): a restart within the session keeps the
    /// member's partitions without a rebalance.
    pub instance_id: Option<String>,
    /// Classic only: the consumer protocol's session and heartbeat interval
    /// are the coordinator's (`--group-consumer-session-timeout-ms`, …).
    pub session_timeout: Duration,
    /// How long a rebalance waits for this member (Kafka's max.poll.interval.ms).
    pub rebalance_timeout: Duration,
    /// Classic only (see `session_timeout`).
    pub heartbeat_interval: Duration,
    /// Commit the positions this often, and before partitions are revoked;
    /// `None`: only [`GroupConsumer::commit`] commits.
    pub auto_commit_interval: Option<Duration>,
    /// Where a partition without a committed offset starts.
    pub offset_reset: OffsetReset,
    /// Fetch settings of the underlying consumer.
    pub consumer: ConsumerConfig,
}

impl GroupConfig {
    pub fn new(group_id: impl Into<String>) -> GroupConfig {
        GroupConfig {
            group_id: group_id.into(),
            protocol: GroupProtocol::Consumer,
            server_assignor: None,
            instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit_interval: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Latest,
            consumer: ConsumerConfig::default(),
        }
    }
}

/// What a rebalance did to this member's partitions: with the consumer
/// protocol only the partitions that moved, with the classic one the whole
/// assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<TopicPartition>),
    /// Taken away in an orderly rebalance (after the commit, with auto-commit).
    Revoked(Vec<TopicPartition>),
    /// Taken away because the session was lost: others may own them already.
    Lost(Vec<TopicPartition>),
}

/// One OffsetCommit, ready to send.
struct Commit {
    conn: Arc<Connection>,
    group: String,
    member_id: String,
    generation: i32,
    instance_id: Option<String>,
    positions: Vec<(TopicPartition, i64)>,
}

impl Commit {
    async fn send(self) -> Result<()> {
        let member = Member {
            id: &self.member_id,
            generation: self.generation,
            instance_id: self.instance_id.as_deref(),
        };
        commit_offsets(&self.conn, &self.group, &member, &self.positions).await
    }
}

/// What [`GroupConsumer::on_rebalance`] is given.
type Listener = Box<dyn FnMut(&Rebalance) + Send + Sync>;

const OK: u8 = 0;
const REJOIN: u8 = 1;
const LOST: u8 = 2;

pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    consumer: Consumer,
    subscription: Option<Subscription>,
    /// The consumer protocol's membership, once joined.
    session: Option<kip848::Session>,
    conn: Option<Arc<Connection>>,
    member_id: String,
    generation: i32,
    state: Arc<AtomicU8>,
    joined: bool,
    heartbeat: Option<JoinHandle<()>>,
    last_commit: Instant,
    /// Resolves when the newest `commit_async` has its answer.
    pending_commit: Option<tokio::sync::oneshot::Receiver<()>>,
    listener: Option<Listener>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl GroupConsumer {
    pub fn new(client: Client, config: GroupConfig) -> GroupConsumer {
        let consumer = Consumer::new(client.clone(), config.consumer.clone());
        GroupConsumer {
            client,
            consumer,
            config,
            subscription: None,
            session: None,
            conn: None,
            member_id: String::new(),
            generation: -1,
            state: Arc::new(AtomicU8::new(OK)),
            joined: false,
            heartbeat: None,
            last_commit: Instant::now(),
            pending_commit: None,
            listener: None,
        }
    }

    /// Called with every assignment, revocation and loss.
    pub fn on_rebalance(&mut self, f: impl FnMut(&Rebalance) + Send + Sync + 'static) {
        self.listener = Some(Box::new(f));
    }

    /// The topics to consume; takes effect at the next heartbeat (consumer
    /// protocol) or `poll` (classic: a rejoin).
    pub fn subscribe(&mut self, topics: &[&str]) {
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        self.set_subscription(Subscription::Topics(topics));
    }

    /// Every topic whose whole name matches `regex` (RE2/J syntax, as
    /// Kafka's `SubscribedTopicRegex`), including topics created later. The
    /// coordinator matches it: consumer protocol only.
    pub fn subscribe_pattern(&mut self, regex: &str) {
        self.set_subscription(Subscription::Pattern(regex.to_string()));
    }

    fn set_subscription(&mut self, sub: Subscription) {
        if let Some(session) = &self.session {
            session.state.lock().unwrap().subscription = sub.clone();
            session.wake.notify_one();
        }
        self.subscription = Some(sub);
        self.state.store(REJOIN, Ordering::SeqCst);
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// Moves an assigned partition's position (the next commit commits it).
    pub fn seek(&mut self, tp: &TopicPartition, offset: Offset) -> Result<()> {
        self.consumer.seek(tp, offset)
    }

    /// The offset of the next record `poll` returns for an assigned partition.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.position(tp)
    }

    pub fn member_id(&self) -> String {
        match &self.session {
            Some(s) => s.member().0,
            None => self.member_id.clone(),
        }
    }

    /// The classic generation, or the consumer protocol's member epoch.
    pub fn generation(&self) -> i32 {
        match &self.session {
            Some(s) => s.member().1,
            None => self.generation,
        }
    }

    fn tell(&mut self, event: Rebalance) {
        if let Some(l) = &mut self.listener {
            l(&event);
        }
    }

    /// Records from the assigned partitions, rejoining the group first when
    /// it rebalances.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let Some(sub) = self.subscription.clone() else {
            return Err(Error::InvalidArgument("subscribe before polling".into()));
        };
        match self.config.protocol {
            GroupProtocol::Consumer => self.reconcile(sub).await?,
            GroupProtocol::Classic => {
                if matches!(sub, Subscription::Pattern(_)) {
                    return Err(Error::InvalidArgument(
                        "a pattern subscription needs the consumer group protocol (KIP-848)".into(),
                    ));
                }
                let state = self.state.load(Ordering::SeqCst);
                if !self.joined || state != OK {
                    self.rebalance(state == LOST).await?;
                }
            }
        }
        if let Some(every) = self.config.auto_commit_interval {
            if self.last_commit.elapsed() >= every {
                // A failed auto-commit is retried at the next interval or revocation.
                let _ = self.commit().await;
            }
        }
        self.consumer.poll(timeout).await
    }

    fn kip848_params(&self) -> kip848::Params {
        kip848::Params {
            group: self.config.group_id.clone(),
            instance_id: self.config.instance_id.clone(),
            rebalance_timeout: self.config.rebalance_timeout,
            server_assignor: self.config.server_assignor.clone(),
        }
    }

    /// The consumer protocol: joins on the first call, then applies what
    /// the heartbeats brought — a loss, then the newest target: revoke what
    /// it no longer holds (committing first), take up what is new at its
    /// committed offsets, and have the next heartbeat report it at once.
    /// A step that fails for now (the coordinator moving) is retried at the
    /// next `poll`.
    async fn reconcile(&mut self, sub: Subscription) -> Result<()> {
        if self.session.is_none() {
            let session = kip848::Session::start(
                self.client.clone(),
                self.kip848_params(),
                sub,
                self.config.rebalance_timeout + self.config.session_timeout,
            )
            .await?;
            self.session = Some(session);
        }
        let current: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let (lost, target, incarnation) = {
            let session = self.session.as_ref().expect("joined");
            let mut s = session.state.lock().unwrap();
            if let Some(e) = s.failed.clone() {
                return Err(e);
            }
            let lost = std::mem::take(&mut s.lost);
            let target = s.target.take();
            if let Some(t) = &target {
                // Until reconciled, heartbeats claim both what is held and
                // what is being taken up.
                s.owned = if lost { BTreeSet::new() } else { current };
                s.owned.extend(t.iter().cloned());
            }
            (lost, target, s.incarnation)
        };
        if lost {
            let owned = self.consumer.assignment();
            self.consumer.assign(&[]).await?;
            if !owned.is_empty() {
                self.tell(Rebalance::Lost(owned));
            }
        }
        let Some(target) = target else {
            return Ok(());
        };
        let owned: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&target).cloned().collect();
        let added: Vec<TopicPartition> = target.difference(&owned).cloned().collect();
        let kept: Vec<TopicPartition> = owned.intersection(&target).cloned().collect();
        if !revoked.is_empty() {
            if self.config.auto_commit_interval.is_some() {
                // A failed commit re-delivers what was not committed, no more.
                let _ = self.commit_partitions(&revoked).await;
            }
            self.consumer.assign(&kept).await?;
            self.tell(Rebalance::Revoked(revoked));
        }
        if !added.is_empty() {
            match self.take_up(&target, &added).await {
                Ok(()) => self.tell(Rebalance::Assigned(added)),
                Err(e) => {
                    tracing::warn!(group = %self.config.group_id, error = %e,
                        "taking up newly assigned partitions failed; retrying at the next poll");
                    self.consumer.assign(&kept).await?;
                    let session = self.session.as_ref().expect("joined");
                    let mut s = session.state.lock().unwrap();
                    if s.incarnation == incarnation {
                        s.target.get_or_insert(target);
                        s.owned = kept.into_iter().collect();
                    }
                    return Ok(());
                }
            }
        }
        let session = self.session.as_ref().expect("joined");
        let mut s = session.state.lock().unwrap();
        if s.incarnation == incarnation && s.owned != target {
            s.owned = target;
            drop(s);
            session.wake.notify_one();
        }
        Ok(())
    }

    /// Assigns `target` (of which `added` is new) and moves each new
    /// partition to its committed offset, or where `offset_reset` says.
    async fn take_up(
        &mut self,
        target: &BTreeSet<TopicPartition>,
        added: &[TopicPartition],
    ) -> Result<()> {
        let all: Vec<TopicPartition> = target.iter().cloned().collect();
        if self.consumer.assign(&all).await.is_err() {
            // A partition beyond the cached count: partitions were added.
            let topics: BTreeSet<&str> = added.iter().map(|tp| tp.topic.as_str()).collect();
            self.client
                .refresh(Some(&topics.into_iter().collect::<Vec<_>>()))
                .await?;
            self.consumer.assign(&all).await?;
        }
        self.resume_at_committed(added).await
    }

    /// Moves assigned partitions to their committed offsets, or where
    /// `offset_reset` says for those without one (both protocols).
    async fn resume_at_committed(&mut self, parts: &[TopicPartition]) -> Result<()> {
        let committed = self.fetch_committed(parts).await?;
        for tp in parts {
            let at = match committed.get(tp) {
                Some(&o) if o >= 0 => Offset::At(o),
                _ => match self.config.offset_reset {
                    OffsetReset::Earliest => Offset::Beginning,
                    _ => Offset::End,
                },
            };
            self.consumer.seek(tp, at)?;
        }
        Ok(())
    }

    async fn rebalance(&mut self, lost: bool) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let owned = self.consumer.assignment();
        if self.joined && !owned.is_empty() {
            if lost {
                self.tell(Rebalance::Lost(owned));
            } else {
                if self.config.auto_commit_interval.is_some() {
                    let _ = self.commit().await;
                }
                self.tell(Rebalance::Revoked(owned));
            }
        }
        if lost {
            self.member_id.clear();
            self.generation = -1;
        }
        self.consumer.assign(&[]).await?;
        self.joined = false;
        self.state.store(OK, Ordering::SeqCst);
        let mine = self.join_and_sync().await?;
        self.consumer.assign(&mine).await?;
        self.resume_at_committed(&mine).await?;
        self.joined = true;
        self.start_heartbeat().await?;
        self.tell(Rebalance::Assigned(mine));
        Ok(())
    }

    async fn connection(&mut self) -> Result<Arc<Connection>> {
        if let Some(c) = &self.conn {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let c = coordinator(&self.client, &self.config.group_id, true).await?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    /// JoinGroup (through MEMBER_ID_REQUIRED) and SyncGroup until a
    /// generation holds; returns this member's partitions.
    async fn join_and_sync(&mut self) -> Result<Vec<TopicPartition>> {
        let deadline = Instant::now() + self.config.rebalance_timeout + self.config.session_timeout;
        loop {
            if Instant::now() > deadline {
                return Err(Error::Protocol(format!(
                    "joining group {} timed out",
                    self.config.group_id
                )));
            }
            let conn = self.connection().await?;
            let mut j = JoinGroupRequest::default();
            j.group_id = GroupId(s(&self.config.group_id));
            j.session_timeout_ms = self.config.session_timeout.as_millis() as i32;
            j.rebalance_timeout_ms = self.config.rebalance_timeout.as_millis() as i32;
            j.member_id = s(&self.member_id);
            if conn.version(ApiKey::JoinGroup)? >= 5 {
                j.group_instance_id = self.config.instance_id.as_deref().map(s);
            }
            j.protocol_type = s("consumer");
            let mut p = JoinGroupRequestProtocol::default();
            p.name = s("range");
            let topics = match &self.subscription {
                Some(Subscription::Topics(ts)) => ts.clone(),
                _ => Vec::new(),
            };
            p.metadata = consumer_protocol::encode_subscription(&topics);
            j.protocols = vec![p];
            let (r, _) = conn.send(&j).await?;
            let code = ResponseError::try_from_code(r.error_code);
            match code {
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = r.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(e) if e.is_retriable() || e == ResponseError::RebalanceInProgress => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Some(ResponseError::NotCoordinator)
                | Some(ResponseError::CoordinatorNotAvailable) => {
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Some(_) => {
                    return Err(Error::kafka(
                        r.error_code,
                        format!("joining group {}", self.config.group_id),
                        None,
                    ))
                }
                None => {}
            }
            self.member_id = r.member_id.to_string();
            self.generation = r.generation_id;
            let mut sync = SyncGroupRequest::default();
            sync.group_id = GroupId(s(&self.config.group_id));
            sync.generation_id = r.generation_id;
            sync.member_id = s(&self.member_id);
            if conn.version(ApiKey::SyncGroup)? >= 3 {
                sync.group_instance_id = self.config.instance_id.as_deref().map(s);
            }
            if r.leader == r.member_id && !r.skip_assignment {
                sync.assignments = self
                    .assign(
                        &r.members
                            .iter()
                            .map(|m| (m.member_id.to_string(), m.metadata.clone()))
                            .collect::<Vec<_>>(),
                    )
                    .await?;
            }
            let (sr, _) = conn.send(&sync).await?;
            match ResponseError::try_from_code(sr.error_code) {
                None => return Ok(decode_assignment(&sr.assignment)),
                Some(ResponseError::UnknownMemberId) | Some(ResponseError::IllegalGeneration) => {
                    if sr.error_code == ResponseError::UnknownMemberId.code() {
                        self.member_id.clear();
                    }
                    continue;
                }
                Some(ResponseError::RebalanceInProgress) => continue,
                Some(e) if e.is_retriable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Some(_) => {
                    return Err(Error::kafka(
                        sr.error_code,
                        format!("syncing group {}", self.config.group_id),
                        None,
                    ))
                }
            }
        }
    }

    /// The leader's work: range-assign every subscribed topic among the members.
    async fn assign(&self, members: &[(String, Bytes)]) -> Result<Vec<SyncGroupRequestAssignment>> {
        let subs: Vec<(String, Vec<String>)> = members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    consumer_protocol::decode_subscription(m).unwrap_or_default(),
                )
            })
            .collect();
        let mut topics: Vec<String> = subs.iter().flat_map(|(_, t)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let mut partitions = BTreeMap::new();
        for t in topics {
            if let Ok(n) = self.client.ensure_topic(&t).await {
                partitions.insert(t, n);
            }
        }
        Ok(range_assign(&subs, &partitions)
            .into_iter()
            .map(|(id, parts)| {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = s(&id);
                a.assignment = consumer_protocol::encode_assignment(
                    &parts
                        .iter()
                        .map(|tp| (tp.topic.clone(), tp.partition))
                        .collect::<Vec<_>>(),
                );
                a
            })
            .collect())
    }

    async fn fetch_committed(
        &mut self,
        parts: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        if parts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let conn = self.connection().await?;
        let (id, epoch) = match &self.session {
            Some(s) => s.member(),
            None => (String::new(), -1),
        };
        let member = Member {
            id: &id,
            generation: epoch,
            instance_id: self.config.instance_id.as_deref(),
        };
        fetch_offsets(&conn, &self.config.group_id, &member, Some(parts)).await
    }

    async fn start_heartbeat(&mut self) -> Result<()> {
        let conn = coordinator(&self.client, &self.config.group_id, true).await?;
        let state = self.state.clone();
        let (group, member, generation, instance) = (
            self.config.group_id.clone(),
            self.member_id.clone(),
            self.generation,
            self.config.instance_id.clone(),
        );
        let every = self.config.heartbeat_interval;
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut h = HeartbeatRequest::default();
                h.group_id = GroupId(s(&group));
                h.generation_id = generation;
                h.member_id = s(&member);
                if conn.version(ApiKey::Heartbeat).unwrap_or(0) >= 3 {
                    h.group_instance_id = instance.as_deref().map(s);
                }
                let code = match conn.send(&h).await {
                    Ok((r, _)) => r.error_code,
                    Err(_) => continue, // the coordinator is unreachable for now
                };
                match ResponseError::try_from_code(code) {
                    None => {}
                    Some(ResponseError::RebalanceInProgress) => {
                        state.store(REJOIN, Ordering::SeqCst);
                        return;
                    }
                    Some(ResponseError::UnknownMemberId)
                    | Some(ResponseError::IllegalGeneration)
                    | Some(ResponseError::FencedInstanceId) => {
                        state.store(LOST, Ordering::SeqCst);
                        return;
                    }
                    Some(_) => {}
                }
            }
        }));
        Ok(())
    }

    /// Commits the position of every assigned partition (the offset of the
    /// next record `poll` would return), synchronously.
    pub async fn commit(&mut self) -> Result<()> {
        let all = self.consumer.assignment();
        self.commit_partitions(&all).await
    }

    /// Commits the positions of every assigned partition as of now without
    /// waiting for the answer; the handle resolves with the outcome (drop it
    /// to ignore it). Commits reach the coordinator in the order they were
    /// made, async or not: each waits for the one before.
    pub async fn commit_async(&mut self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let all = self.consumer.assignment();
        let commit = self.prepare_commit(&all).await?;
        let before = self.pending_commit.take();
        let (done, pending) = tokio::sync::oneshot::channel::<()>();
        self.pending_commit = Some(pending);
        Ok(tokio::spawn(async move {
            if let Some(b) = before {
                let _ = b.await;
            }
            let outcome = match commit {
                Some(c) => c.send().await,
                None => Ok(()),
            };
            // Dropped unsent if this task dies: the next commit goes ahead.
            let _ = done.send(());
            outcome
        }))
    }

    async fn commit_partitions(&mut self, parts: &[TopicPartition]) -> Result<()> {
        let commit = self.prepare_commit(parts).await?;
        if let Some(b) = self.pending_commit.take() {
            let _ = b.await;
        }
        match commit {
            Some(c) => c.send().await,
            None => Ok(()),
        }
    }

    /// What committing `parts` now sends (`None`: nothing to commit).
    async fn prepare_commit(&mut self, parts: &[TopicPartition]) -> Result<Option<Commit>> {
        let positions: Vec<(TopicPartition, i64)> = parts
            .iter()
            .filter_map(|tp| self.consumer.position(tp).map(|o| (tp.clone(), o)))
            .collect();
        self.last_commit = Instant::now();
        let (member_id, generation) = match &self.session {
            Some(s) => s.member(),
            None if self.joined => (self.member_id.clone(), self.generation),
            None => return Ok(None),
        };
        if positions.is_empty() {
            return Ok(None);
        }
        Ok(Some(Commit {
            conn: self.connection().await?,
            group: self.config.group_id.clone(),
            member_id,
            generation,
            instance_id: self.config.instance_id.clone(),
            positions,
        }))
    }

    /// Commits (with auto-commit) and leaves the group, so the others
    /// rebalance at once. A static member does not leave: a restart within
    /// its session takes its place back.
    pub async fn close(mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if self.session.is_some() {
            // Commit with the epoch still held, then leave (a static member:
            // epoch -2, its place kept for its session).
            if self.config.auto_commit_interval.is_some() {
                self.commit().await?;
            }
            let owned = self.consumer.assignment();
            if !owned.is_empty() {
                self.tell(Rebalance::Revoked(owned));
            }
            let session = self.session.take().expect("checked above");
            return session
                .leave(
                    self.client.clone(),
                    self.kip848_params(),
                    Duration::from_secs(5),
                )
                .await;
        }
        if !self.joined {
            return Ok(());
        }
        if self.config.auto_commit_interval.is_some() {
            self.commit().await?;
        }
        let owned = self.consumer.assignment();
        self.tell(Rebalance::Revoked(owned));
        if self.config.instance_id.is_some() {
            return Ok(());
        }
        let conn = self.connection().await?;
        let version = conn.version(ApiKey::LeaveGroup)?;
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(s(&self.config.group_id));
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = s(&self.member_id);
            req.members = vec![m];
        } else {
            req.member_id = s(&self.member_id);
        }
        let resp = conn.send_versioned(&req, version).await?;
        Error::check(resp.error_code, || {
            format!("leaving group {}", self.config.group_id)
        })
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}
