//! A consumer in a group (the classic protocol, which every Kafka-API
//! broker speaks): `subscribe` to topics, `poll`, `commit`. The group's
//! members share the topics' partitions — each record goes to one member —
//! and every group reads everything. The leader member assigns partitions
//! with the range assignor, as Kafka's default; a background task
//! heartbeats, and the next `poll` after the coordinator asks for a
//! rebalance revokes the partitions (committing first, with auto-commit),
//! rejoins, and resumes every newly assigned partition at its committed
//! offset. A member whose session was lost (UNKNOWN_MEMBER_ID, ILLEGAL
//! GENERATION, FENCED_INSTANCE_ID) loses its partitions without a commit.
//!
//! Wraps [`Consumer`] (assign + seek), as that type was built for.

use std::collections::BTreeMap;
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

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    /// Static membership (KIP-345): a restart within the session keeps the
    /// member's partitions without a rebalance.
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    /// How long a rebalance waits for this member (Kafka's max.poll.interval.ms).
    pub rebalance_timeout: Duration,
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

/// What a rebalance did to this member's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<TopicPartition>),
    /// Taken away in an orderly rebalance (after the commit, with auto-commit).
    Revoked(Vec<TopicPartition>),
    /// Taken away because the session was lost: others may own them already.
    Lost(Vec<TopicPartition>),
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
    topics: Vec<String>,
    conn: Option<Arc<Connection>>,
    member_id: String,
    generation: i32,
    state: Arc<AtomicU8>,
    joined: bool,
    heartbeat: Option<JoinHandle<()>>,
    last_commit: Instant,
    listener: Option<Listener>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The range assignor: per topic, the members subscribed to it (by id)
/// each take a contiguous run of its partitions, the first ones one more.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|(m, _)| (m.clone(), Vec::new()))
        .collect();
    for (topic, &n) in partitions {
        let mut subs: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subs.sort();
        if subs.is_empty() {
            continue;
        }
        let (per, extra) = (n / subs.len() as i32, n % subs.len() as i32);
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            for p in next..next + take {
                out.get_mut(*m)
                    .expect("a member")
                    .push(TopicPartition::new(topic.clone(), p));
            }
            next += take;
        }
    }
    out
}

impl GroupConsumer {
    pub fn new(client: Client, config: GroupConfig) -> GroupConsumer {
        let consumer = Consumer::new(client.clone(), config.consumer.clone());
        GroupConsumer {
            client,
            consumer,
            config,
            topics: Vec::new(),
            conn: None,
            member_id: String::new(),
            generation: -1,
            state: Arc::new(AtomicU8::new(OK)),
            joined: false,
            heartbeat: None,
            last_commit: Instant::now(),
            listener: None,
        }
    }

    /// Called with every assignment, revocation and loss.
    pub fn on_rebalance(&mut self, f: impl FnMut(&Rebalance) + Send + Sync + 'static) {
        self.listener = Some(Box::new(f));
    }

    /// The topics to consume; takes effect at the next `poll` (a rejoin).
    pub fn subscribe(&mut self, topics: &[&str]) {
        self.topics = topics.iter().map(|t| t.to_string()).collect();
        self.topics.sort();
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

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn tell(&mut self, event: Rebalance) {
        if let Some(l) = &mut self.listener {
            l(&event);
        }
    }

    /// Records from the assigned partitions, rejoining the group first when
    /// it rebalances.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.topics.is_empty() {
            return Err(Error::InvalidArgument("subscribe before polling".into()));
        }
        let state = self.state.load(Ordering::SeqCst);
        if !self.joined || state != OK {
            self.rebalance(state == LOST).await?;
        }
        if let Some(every) = self.config.auto_commit_interval {
            if self.last_commit.elapsed() >= every {
                // A failed auto-commit is retried at the next interval or revocation.
                let _ = self.commit().await;
            }
        }
        self.consumer.poll(timeout).await
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
        let committed = self.fetch_committed(&mine).await?;
        for tp in &mine {
            let at = match committed.get(tp) {
                Some(&o) if o >= 0 => Offset::At(o),
                _ => match self.config.offset_reset {
                    OffsetReset::Earliest => Offset::Beginning,
                    _ => Offset::End,
                },
            };
            self.consumer.seek(tp, at)?;
        }
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
            p.metadata = consumer_protocol::encode_subscription(&self.topics);
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
        fetch_offsets(&conn, &self.config.group_id, Some(parts)).await
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
        let positions: Vec<(TopicPartition, i64)> = self
            .consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|o| (tp, o)))
            .collect();
        self.last_commit = Instant::now();
        if positions.is_empty() || !self.joined {
            return Ok(());
        }
        let conn = self.connection().await?;
        let member = Member {
            id: &self.member_id,
            generation: self.generation,
            instance_id: self.config.instance_id.as_deref(),
        };
        commit_offsets(&conn, &self.config.group_id, &member, &positions).await
    }

    /// Commits (with auto-commit) and leaves the group, so the others
    /// rebalance at once. A static member does not leave: a restart within
    /// its session takes its place back.
    pub async fn close(mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_splits_each_topic() {
        let members = vec![
            ("b".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("a".to_string(), vec!["t".to_string()]),
        ];
        let parts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let got = range_assign(&members, &parts);
        let names = |v: &Vec<TopicPartition>| v.iter().map(|tp| tp.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&got["a"]), vec!["t-0", "t-1", "t-2"]);
        assert_eq!(names(&got["b"]), vec!["t-3", "t-4", "u-0", "u-1"]);
    }
}
