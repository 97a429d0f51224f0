//! The KIP-848 consumer group protocol from the member's side: one request,
//! ConsumerGroupHeartbeat, joins, heartbeats, reports the partitions the
//! member owns and leaves; the coordinator assigns (uniform or range) and
//! answers with this member's target assignment and its member epoch.
//!
//! A background task heartbeats; `GroupConsumer::poll` reconciles: it
//! revokes what the target no longer holds (committing first, with
//! auto-commit), then takes up what is new at its committed offsets, and the
//! next heartbeat — sent at once — tells the coordinator, which may then
//! give the released partitions to others. Fencing (FENCED_MEMBER_EPOCH,
//! UNKNOWN_MEMBER_ID) loses every partition without a commit and rejoins at
//! epoch 0 under the same member id.
//!
//! [`State`] is the protocol logic without I/O: what the next request says
//! and what an answer changes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cluster::{Client, Metadata};
use crate::error::{Error, Result};
use crate::groups::coordinator;
use crate::offsets::TopicPartition;
use crate::transport::connection::Connection;

/// Epoch of a request that leaves the group (a dynamic member).
pub const LEAVE_EPOCH: i32 = -1;
/// Epoch of a static member's leave: its place is kept for its session.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// What the member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    Topics(Vec<String>),
    /// A regular expression (RE2/J syntax) the coordinator matches against
    /// every topic name, new topics included.
    Pattern(String),
}

/// What does not change over a member's life.
#[derive(Debug, Clone)]
pub struct Params {
    pub group: String,
    pub instance_id: Option<String>,
    pub rebalance_timeout: Duration,
    pub server_assignor: Option<String>,
}

/// The member's side of the protocol, shared by the heartbeat task and
/// `poll`.
#[derive(Debug)]
pub struct State {
    pub member_id: String,
    pub epoch: i32,
    /// What `poll` has reconciled, or is reconciling towards: the
    /// partitions this member consumes or may be about to.
    pub owned: BTreeSet<TopicPartition>,
    /// The coordinator's newest assignment for this member, not yet
    /// reconciled by `poll`.
    pub target: Option<BTreeSet<TopicPartition>>,
    /// Fenced: every owned partition is lost (`poll` tells the listener).
    pub lost: bool,
    /// Bumped at every fencing, so a reconciliation begun before one does
    /// not report partitions of the old membership.
    pub incarnation: u64,
    /// An error no retry cures; `poll` returns it.
    pub failed: Option<Error>,
    pub interval: Duration,
    /// Every request carries it; `subscribe` may change it at any time.
    pub subscription: Subscription,
    /// The next request is the leave.
    pub leaving: bool,
}

/// What the heartbeat task does after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait the heartbeat interval (or until woken).
    Wait,
    /// Heartbeat again at once (a rejoin after fencing).
    Now,
    /// Find the coordinator again, after a short pause.
    Rediscover,
    /// Try again after a short pause.
    Backoff,
    /// Stop: failed (see `State::failed`) or left.
    Stop,
}

impl State {
    pub fn new(subscription: Subscription) -> State {
        State {
            // KIP-1082: the member names itself (ConsumerGroupHeartbeat v1).
            member_id: Uuid::new_v4().to_string(),
            epoch: 0,
            owned: BTreeSet::new(),
            target: None,
            lost: false,
            incarnation: 0,
            failed: None,
            interval: Duration::from_secs(5),
            subscription,
            leaving: false,
        }
    }

    /// The next heartbeat. Every request carries the whole of what the
    /// member is (subscription, owned partitions), which the coordinator
    /// accepts at any epoch; `topic_id` names a topic by id (`None`: not
    /// known yet, left out).
    pub fn request(
        &self,
        params: &Params,
        topic_id: impl Fn(&str) -> Option<Uuid>,
    ) -> ConsumerGroupHeartbeatRequest {
        let s = |v: &str| StrBytes::from_string(v.to_string());
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(s(&params.group));
        req.member_id = s(&self.member_id);
        req.instance_id = params.instance_id.as_deref().map(s);
        if self.leaving {
            req.member_epoch = if params.instance_id.is_some() {
                STATIC_LEAVE_EPOCH
            } else {
                LEAVE_EPOCH
            };
            return req;
        }
        req.member_epoch = self.epoch;
        req.rebalance_timeout_ms =
            params.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32;
        req.server_assignor = params.server_assignor.as_deref().map(s);
        match &self.subscription {
            Subscription::Topics(ts) => {
                req.subscribed_topic_names = Some(ts.iter().map(|t| TopicName(s(t))).collect())
            }
            Subscription::Pattern(p) => req.subscribed_topic_regex = Some(s(p)),
        }
        let mut owned: Vec<TopicPartitions> = Vec::new();
        if self.epoch > 0 {
            // What it holds and what it was given but `poll` has not taken
            // up yet: it may take that up any moment, so it must not go to
            // anyone else meanwhile (reporting less than it may hold would
            // tell the coordinator it was released).
            let claim: BTreeSet<&TopicPartition> = self
                .owned
                .iter()
                .chain(self.target.iter().flatten())
                .collect();
            for tp in claim {
                let Some(id) = topic_id(&tp.topic) else {
                    continue;
                };
                match owned.last_mut() {
                    Some(last) if last.topic_id == id => last.partitions.push(tp.partition),
                    _ => {
                        let mut t = TopicPartitions::default();
                        t.topic_id = id;
                        t.partitions = vec![tp.partition];
                        owned.push(t);
                    }
                }
            }
        }
        req.topic_partitions = Some(owned);
        req
    }

    /// Applies an answer. `topic_name` names a topic id of the assignment
    /// (`None`: unknown — the caller refreshes its metadata first).
    pub fn on_response(
        &mut self,
        resp: &ConsumerGroupHeartbeatResponse,
        topic_name: impl Fn(&Uuid) -> Option<String>,
    ) -> Next {
        let error = ResponseError::try_from_code(resp.error_code);
        let context = || format!("heartbeating in group as member {}", self.member_id);
        match error {
            None => {}
            Some(ResponseError::FencedMemberEpoch) | Some(ResponseError::UnknownMemberId) => {
                self.fence();
                return Next::Now;
            }
            Some(ResponseError::NotCoordinator)
            | Some(ResponseError::CoordinatorNotAvailable)
            | Some(ResponseError::CoordinatorLoadInProgress) => return Next::Rediscover,
            // The static member this one replaces has not left yet.
            Some(ResponseError::UnreleasedInstanceId) => return Next::Backoff,
            Some(e) if e.is_retriable() => return Next::Backoff,
            Some(_) => {
                self.failed = Some(Error::kafka(
                    resp.error_code,
                    context(),
                    resp.error_message.as_ref().map(|m| m.to_string()),
                ));
                return Next::Stop;
            }
        }
        if self.leaving {
            return Next::Stop;
        }
        if let Some(id) = &resp.member_id {
            if !id.is_empty() {
                self.member_id = id.to_string();
            }
        }
        self.epoch = resp.member_epoch;
        if resp.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
        }
        if let Some(a) = &resp.assignment {
            let mut target = BTreeSet::new();
            for t in &a.topic_partitions {
                // An id the caller could not name even after a metadata
                // refresh is a topic deleted meanwhile: nothing to consume.
                if let Some(name) = topic_name(&t.topic_id) {
                    target.extend(
                        t.partitions
                            .iter()
                            .map(|p| TopicPartition::new(name.clone(), *p)),
                    );
                }
            }
            self.target = Some(target);
        }
        Next::Wait
    }

    /// The coordinator no longer knows this member at its epoch: everything
    /// owned is lost; rejoin at epoch 0 under the same id.
    pub fn fence(&mut self) {
        self.epoch = 0;
        self.lost = true;
        self.owned.clear();
        self.target = None;
        self.incarnation += 1;
    }
}

/// The member epoch, shared with commits.
pub(crate) struct Session {
    pub state: Arc<Mutex<State>>,
    pub wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Session {
    /// Joins (the first heartbeat, answered before this returns, so the
    /// first `poll` already has an assignment when the coordinator gives
    /// one at once) and starts heartbeating.
    pub async fn start(
        client: Client,
        params: Params,
        subscription: Subscription,
        deadline: Duration,
    ) -> Result<Session> {
        let state = Arc::new(Mutex::new(State::new(subscription)));
        let wake = Arc::new(Notify::new());
        let mut hb = Heartbeater {
            client,
            params,
            conn: None,
            state: state.clone(),
        };
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match hb.beat().await {
                Next::Wait => break,
                Next::Stop => {
                    let e = state.lock().unwrap().failed.clone();
                    return Err(e.unwrap_or_else(|| Error::Protocol("the group was left".into())));
                }
                Next::Now => {}
                Next::Rediscover | Next::Backoff => {
                    if tokio::time::Instant::now() > until {
                        return Err(Error::Protocol(format!(
                            "joining group {} timed out",
                            hb.params.group
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let w = wake.clone();
        let task = tokio::spawn(async move { hb.run(w).await });
        Ok(Session { state, wake, task })
    }

    /// The member id and epoch commits carry.
    pub fn member(&self) -> (String, i32) {
        let s = self.state.lock().unwrap();
        (s.member_id.clone(), s.epoch)
    }

    /// Leaves the group: epoch -1 (a static member: -2, keeping its place
    /// for its session). Waits for the answer up to `timeout`.
    pub async fn leave(self, client: Client, params: Params, timeout: Duration) -> Result<()> {
        self.task.abort();
        self.state.lock().unwrap().leaving = true;
        let mut hb = Heartbeater {
            client,
            params,
            conn: None,
            state: self.state.clone(),
        };
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            match hb.beat().await {
                Next::Stop => {
                    return match self.state.lock().unwrap().failed.take() {
                        Some(e) if !is_gone(&e) => Err(e),
                        _ => Ok(()),
                    }
                }
                Next::Now | Next::Wait => return Ok(()),
                Next::Rediscover | Next::Backoff => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
        Err(Error::Protocol(format!(
            "leaving group {} timed out",
            hb.params.group
        )))
    }
}

/// A leave that finds the member already gone has nothing left to do.
fn is_gone(e: &Error) -> bool {
    matches!(e, Error::Kafka { code, .. }
        if *code == ResponseError::UnknownMemberId.code()
            || *code == ResponseError::FencedMemberEpoch.code())
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Heartbeater {
    client: Client,
    params: Params,
    conn: Option<Arc<Connection>>,
    state: Arc<Mutex<State>>,
}

impl Heartbeater {
    async fn run(mut self, wake: Arc<Notify>) {
        let mut next = Next::Wait;
        loop {
            let interval = self.state.lock().unwrap().interval;
            match next {
                Next::Stop => return,
                Next::Now => {}
                Next::Wait => {
                    let _ = tokio::time::timeout(interval, wake.notified()).await;
                }
                Next::Rediscover | Next::Backoff => {
                    tokio::time::sleep(Duration::from_millis(100).min(interval)).await
                }
            }
            next = self.beat().await;
        }
    }

    /// One heartbeat and its answer.
    async fn beat(&mut self) -> Next {
        let conn = match &self.conn {
            Some(c) if c.is_alive() => c.clone(),
            _ => match coordinator(&self.client, &self.params.group, true).await {
                Ok(c) => {
                    if c.version(ApiKey::ConsumerGroupHeartbeat).is_err() {
                        self.state.lock().unwrap().failed = Some(Error::Protocol(
                            "the group coordinator does not speak the consumer group protocol \
                             (KIP-848, ConsumerGroupHeartbeat); use GroupProtocol::Classic"
                                .into(),
                        ));
                        return Next::Stop;
                    }
                    self.conn = Some(c.clone());
                    c
                }
                Err(_) => return Next::Backoff,
            },
        };
        let meta = self.client.metadata();
        let req = {
            let state = self.state.lock().unwrap();
            state.request(&self.params, |t| {
                meta.topics.get(t).and_then(|m| Uuid::parse_str(&m.id).ok())
            })
        };
        let resp = match conn.send(&req).await {
            Ok((r, _)) => r,
            Err(_) => {
                self.conn = None;
                return Next::Backoff;
            }
        };
        let mut names = topic_names(&meta);
        let unknown = resp.assignment.as_ref().is_some_and(|a| {
            a.topic_partitions
                .iter()
                .any(|t| !names.contains_key(&t.topic_id))
        });
        if unknown {
            if let Ok(fresh) = self.client.refresh(None).await {
                names = topic_names(&fresh);
            }
        }
        let next = self
            .state
            .lock()
            .unwrap()
            .on_response(&resp, |id| names.get(id).cloned());
        if next == Next::Rediscover {
            self.conn = None;
        }
        next
    }
}

fn topic_names(meta: &Metadata) -> std::collections::HashMap<Uuid, String> {
    meta.topics
        .values()
        .filter_map(|t| Some((Uuid::parse_str(&t.id).ok()?, t.name.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions as Assigned,
    };

    fn params() -> Params {
        Params {
            group: "g".into(),
            instance_id: None,
            rebalance_timeout: Duration::from_secs(300),
            server_assignor: None,
        }
    }

    fn answer(epoch: i32, parts: Option<&[i32]>, id: Uuid) -> ConsumerGroupHeartbeatResponse {
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.member_epoch = epoch;
        r.heartbeat_interval_ms = 250;
        r.assignment = parts.map(|ps| {
            let mut a = Assignment::default();
            let mut t = Assigned::default();
            t.topic_id = id;
            t.partitions = ps.to_vec();
            a.topic_partitions = vec![t];
            a
        });
        r
    }

    #[test]
    fn a_join_reports_nothing_owned_and_later_heartbeats_report_what_poll_reconciled() {
        let id = Uuid::new_v4();
        let name = |u: &Uuid| (*u == id).then(|| "t".to_string());
        let mut s = State::new(Subscription::Topics(vec!["t".into()]));
        let join = s.request(&params(), |_| Some(id));
        assert_eq!(join.member_epoch, 0);
        assert_eq!(join.topic_partitions, Some(vec![]));
        assert_eq!(join.rebalance_timeout_ms, 300_000);
        assert_eq!(
            s.on_response(&answer(3, Some(&[0, 2]), id), name),
            Next::Wait
        );
        assert_eq!(s.epoch, 3);
        assert_eq!(s.interval, Duration::from_millis(250));
        let target = s.target.take().unwrap();
        assert_eq!(target.len(), 2);
        s.owned = target;
        let hb = s.request(&params(), |_| Some(id));
        assert_eq!(hb.member_epoch, 3);
        let owned = hb.topic_partitions.unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].partitions, vec![0, 2]);
        // No assignment in the answer: the target stays as reconciled.
        assert_eq!(s.on_response(&answer(3, None, id), name), Next::Wait);
        assert!(s.target.is_none());
    }

    #[test]
    fn fencing_loses_everything_and_rejoins_at_epoch_zero_under_the_same_id() {
        let id = Uuid::new_v4();
        let mut s = State::new(Subscription::Topics(vec!["t".into()]));
        let me = s.member_id.clone();
        s.on_response(&answer(5, Some(&[1]), id), |_| Some("t".into()));
        s.owned = s.target.take().unwrap();
        let mut fenced = ConsumerGroupHeartbeatResponse::default();
        fenced.error_code = ResponseError::FencedMemberEpoch.code();
        assert_eq!(s.on_response(&fenced, |_| None), Next::Now);
        assert!(s.lost && s.owned.is_empty() && s.epoch == 0);
        assert_eq!(s.incarnation, 1);
        let rejoin = s.request(&params(), |_| Some(id));
        assert_eq!(rejoin.member_id.as_str(), me);
        assert_eq!(rejoin.member_epoch, 0);
        assert_eq!(rejoin.topic_partitions, Some(vec![]));
    }

    #[test]
    fn errors_are_retried_rediscovered_or_fatal() {
        let mut s = State::new(Subscription::Topics(vec!["t".into()]));
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.error_code = ResponseError::NotCoordinator.code();
        assert_eq!(s.on_response(&r, |_| None), Next::Rediscover);
        r.error_code = ResponseError::UnreleasedInstanceId.code();
        assert_eq!(s.on_response(&r, |_| None), Next::Backoff);
        r.error_code = ResponseError::GroupMaxSizeReached.code();
        assert_eq!(s.on_response(&r, |_| None), Next::Stop);
        assert!(s.failed.is_some());
    }

    #[test]
    fn a_leave_says_only_who_leaves() {
        let mut s = State::new(Subscription::Topics(vec!["t".into()]));
        s.epoch = 7;
        s.leaving = true;
        let r = s.request(&params(), |_| None);
        assert_eq!(r.member_epoch, LEAVE_EPOCH);
        assert!(r.subscribed_topic_names.is_none());
        let mut p = params();
        p.instance_id = Some("i".into());
        assert_eq!(s.request(&p, |_| None).member_epoch, STATIC_LEAVE_EPOCH);
    }
}
