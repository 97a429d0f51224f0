//! Consumer group costs on an in-process broker (one shard, loopback), in
//! one run: how long a classic-protocol group of N members over P
//! partitions takes to form (every member joined and synced, range
//! assignment by the leader, as clients do), how long a rebalance takes when
//! one more member joins a stable group (the others learn it from their
//! heartbeats, every 100 ms here), and OffsetCommit throughput and latency
//! (10 partitions per commit, one at a time, each answered once durable).
//!
//! Then the same group shapes through rill-client's `GroupConsumer`, on the
//! classic protocol and on KIP-848 (server-side uniform assignor,
//! incremental hand-over): formed = every member polling and the
//! partitions spread evenly (no two members' counts differ by more than one),
//! rebalance = one more member until it is even again. Heartbeats every
//! 100 ms on both protocols.
//!
//! `cargo bench -p rill --bench groups`. The group initial rebalance delay
//! is 0 here, so formation is the protocol's cost alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_client::transport::connection::Connection;
use rill_client::{Admin, Client, ClientConfig, NewTopic};
use rill_net::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_net::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_net::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_net::kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::kafka_protocol::ResponseError;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A ConsumerProtocolAssignment of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let parts: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    rill_net::consumer_protocol::encode_assignment(&parts)
}

struct Member {
    conn: Arc<Connection>,
    id: String,
    generation: i32,
}

/// Joins (through MEMBER_ID_REQUIRED) and syncs; the leader assigns ranges.
async fn join_and_sync(m: &mut Member, group: &str, topic: &str, partitions: i32) {
    loop {
        let mut j = JoinGroupRequest::default();
        j.group_id = GroupId(s(group));
        j.session_timeout_ms = 30_000;
        j.rebalance_timeout_ms = 60_000;
        j.member_id = s(&m.id);
        j.protocol_type = s("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = s("range");
        p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        j.protocols = vec![p];
        let (r, _) = m.conn.send(&j).await.expect("join");
        if r.error_code == ResponseError::MemberIdRequired.code() {
            m.id = r.member_id.to_string();
            continue;
        }
        assert_eq!(r.error_code, 0, "join failed");
        m.id = r.member_id.to_string();
        m.generation = r.generation_id;
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(group));
        sync.generation_id = r.generation_id;
        sync.member_id = s(&m.id);
        if r.leader == r.member_id {
            let n = r.members.len() as i32;
            sync.assignments = r
                .members
                .iter()
                .enumerate()
                .map(|(k, member)| {
                    let mine: Vec<i32> = (0..partitions).filter(|p| p % n == k as i32).collect();
                    let mut a = SyncGroupRequestAssignment::default();
                    a.member_id = member.member_id.clone();
                    a.assignment = assignment(topic, &mine);
                    a
                })
                .collect();
        }
        let (r, _) = m.conn.send(&sync).await.expect("sync");
        if r.error_code == ResponseError::RebalanceInProgress.code() {
            continue;
        }
        assert_eq!(r.error_code, 0, "sync failed");
        return;
    }
}

/// Heartbeats until told to rejoin, then rejoins and syncs.
async fn follow_rebalance(m: &mut Member, group: &str, topic: &str, partitions: i32) {
    loop {
        let mut h = HeartbeatRequest::default();
        h.group_id = GroupId(s(group));
        h.generation_id = m.generation;
        h.member_id = s(&m.id);
        let (r, _) = m.conn.send(&h).await.expect("heartbeat");
        if r.error_code == ResponseError::RebalanceInProgress.code() {
            return join_and_sync(m, group, topic, partitions).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(addr: &str) -> Arc<Connection> {
    let client = Client::connect(ClientConfig::new(addr)).await.unwrap();
    client.dedicated_connection(0).await.unwrap()
}

async fn form(
    addr: &str,
    group: &str,
    topic: &str,
    n: usize,
    partitions: i32,
) -> (Duration, Duration) {
    let mut members = Vec::new();
    for _ in 0..n {
        members.push(Member {
            conn: connect(addr).await,
            id: String::new(),
            generation: -1,
        });
    }
    let start = Instant::now();
    let tasks: Vec<_> = members
        .into_iter()
        .map(|mut m| {
            let (group, topic) = (group.to_string(), topic.to_string());
            tokio::spawn(async move {
                join_and_sync(&mut m, &group, &topic, partitions).await;
                m
            })
        })
        .collect();
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.unwrap());
    }
    // All synced, possibly over several generations as members arrived.
    let formed = start.elapsed();
    // One more member: everyone rebalances.
    let start = Instant::now();
    let mut tasks: Vec<_> = members
        .into_iter()
        .map(|mut m| {
            let (group, topic) = (group.to_string(), topic.to_string());
            tokio::spawn(async move { follow_rebalance(&mut m, &group, &topic, partitions).await })
        })
        .collect();
    let mut newcomer = Member {
        conn: connect(addr).await,
        id: String::new(),
        generation: -1,
    };
    let (g, t) = (group.to_string(), topic.to_string());
    tasks.push(tokio::spawn(async move {
        join_and_sync(&mut newcomer, &g, &t, partitions).await
    }));
    for t in tasks {
        t.await.unwrap();
    }
    (formed, start.elapsed())
}

async fn commits(addr: &str, topic: &str, count: usize) -> (f64, hdrhistogram::Histogram<u64>) {
    let conn = connect(addr).await;
    let mut fc = FindCoordinatorRequest::default();
    fc.key = s("committer");
    conn.send_versioned(&fc, 3).await.unwrap();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    for i in 0..count {
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s("committer"));
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partitions = (0..10)
            .map(|p| {
                let mut rp = OffsetCommitRequestPartition::default();
                rp.partition_index = p;
                rp.committed_offset = i as i64;
                rp
            })
            .collect();
        req.topics = vec![t];
        let sent = Instant::now();
        let (r, _) = conn.send(&req).await.unwrap();
        hist.record(sent.elapsed().as_micros() as u64).unwrap();
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    (count as f64 / start.elapsed().as_secs_f64(), hist)
}

/// Members of one group as rill-client runs them: each polls in its own
/// task and publishes how many partitions it owns.
struct ClientGroup {
    owned: Vec<Arc<std::sync::atomic::AtomicUsize>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ClientGroup {
    fn add(&mut self, addr: &str, group: &str, topic: &str, protocol: rill_client::GroupProtocol) {
        use std::sync::atomic::Ordering;
        let owned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        self.owned.push(owned.clone());
        let (addr, group, topic, stop) = (
            addr.to_string(),
            group.to_string(),
            topic.to_string(),
            self.stop.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
            let mut config = rill_client::GroupConfig::new(group);
            config.protocol = protocol;
            config.heartbeat_interval = Duration::from_millis(100);
            let mut m = rill_client::GroupConsumer::new(client, config);
            m.subscribe(&[topic.as_str()]);
            while !stop.load(Ordering::Relaxed) {
                m.poll(Duration::from_millis(20)).await.unwrap();
                owned.store(m.assignment().len(), Ordering::Relaxed);
            }
            m.close().await.unwrap();
        }));
    }

    /// Waits until the partitions are spread evenly over every member.
    async fn even(&self, partitions: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let counts: Vec<usize> = self
                .owned
                .iter()
                .map(|o| o.load(std::sync::atomic::Ordering::Relaxed))
                .collect();
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            if counts.iter().sum::<usize>() == partitions && max - min <= 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }
}

/// (formed, rebalance after one more member) through rill-client.
async fn form_with_client(
    addr: &str,
    group: &str,
    topic: &str,
    n: usize,
    protocol: rill_client::GroupProtocol,
) -> (Duration, Duration) {
    let partitions = 500;
    let mut g = ClientGroup {
        owned: Vec::new(),
        tasks: Vec::new(),
        stop: Arc::default(),
    };
    let start = Instant::now();
    for _ in 0..n {
        g.add(addr, group, topic, protocol);
    }
    assert!(g.even(partitions).await, "the group never spread evenly");
    let formed = start.elapsed();
    let start = Instant::now();
    g.add(addr, group, topic, protocol);
    assert!(
        g.even(partitions).await,
        "the group never spread evenly again"
    );
    let rebalance = start.elapsed();
    g.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in g.tasks {
        t.await.unwrap();
    }
    (formed, rebalance)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rill_broker::BrokerConfig::ephemeral(dir.path()).unwrap();
    config.group_limits.initial_rebalance_delay_ms = 0;
    config.group_limits.consumer.heartbeat_interval_ms = 100;
    config.offsets_topic_num_partitions = 8;
    let broker = rill_broker::Broker::start(config).expect("a broker");
    let addr = broker.addr().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
        Admin::new(client).create_topic(NewTopic::new("wide", 500)).await.unwrap();
        println!("{:>8} {:>11} {:>10} {:>22}", "members", "partitions", "formed", "rebalance (+1 member)");
        for (i, (n, p)) in [(1, 10), (10, 100), (20, 200), (50, 500)].into_iter().enumerate() {
            let (formed, rebalance) = form(&addr, &format!("bench-{i}"), "wide", n, p).await;
            println!(
                "{n:>8} {p:>11} {:>8.1} ms {:>20.1} ms",
                formed.as_secs_f64() * 1e3,
                rebalance.as_secs_f64() * 1e3
            );
        }
        println!(
            "\nrill-client GroupConsumer over 500 partitions\n{:>8} {:>10} {:>12} {:>22}",
            "members", "protocol", "formed", "rebalance (+1 member)"
        );
        for (i, n) in [1usize, 10, 20].into_iter().enumerate() {
            for protocol in [rill_client::GroupProtocol::Classic, rill_client::GroupProtocol::Consumer] {
                let group = format!("client-{i}-{protocol:?}");
                let (formed, rebalance) = form_with_client(&addr, &group, "wide", n, protocol).await;
                println!(
                    "{n:>8} {:>10} {:>9.1} ms {:>19.1} ms",
                    format!("{protocol:?}").to_lowercase(),
                    formed.as_secs_f64() * 1e3,
                    rebalance.as_secs_f64() * 1e3
                );
            }
        }
        let (rate, hist) = commits(&addr, "wide", 3_000).await;
        println!(
            "OffsetCommit of 10 partitions, one at a time: {rate:.0}/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999)
        );
    });
    broker.stop();
    let _ = broker.wait();
}
