//! The shared handle to a cluster: bootstrap, the metadata cache (brokers,
//! topics, partition leaders), and one pooled connection per broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::{Error, Result};
use crate::transport::connection::{Connection, ConnectionConfig};

/// How to reach a cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to learn the cluster from.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Requests in flight per broker connection.
    pub max_in_flight: usize,
    /// Largest response frame accepted.
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// A config for a comma-separated bootstrap list (`host:port,host:port`).
    pub fn new(brokers: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: brokers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "rill-client".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 5,
            max_response_bytes: 256 << 20,
        }
    }

    fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionMetadata>,
}

/// What the client knows of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

struct Inner {
    config: ClientConfig,
    metadata: Mutex<Metadata>,
    /// Incremented whenever `metadata` changes, so a copy of some of it
    /// (a producer's partition counts) knows when it is stale.
    metadata_version: std::sync::atomic::AtomicU64,
    /// One connection per broker address, replaced when it fails.
    connections: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

/// A cheap, clonable handle shared by producers, consumers and admin.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish()
    }
}

impl Client {
    /// Connects to a bootstrap broker and loads the list of brokers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(Error::InvalidArgument(
                "the bootstrap broker list is empty".into(),
            ));
        }
        let client = Client {
            inner: Arc::new(Inner {
                config,
                metadata: Mutex::new(Metadata::default()),
                metadata_version: std::sync::atomic::AtomicU64::new(0),
                connections: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        client.refresh(Some(&[])).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A copy of the cached metadata.
    pub fn metadata(&self) -> Metadata {
        self.lock_metadata().clone()
    }

    fn lock_metadata(&self) -> std::sync::MutexGuard<'_, Metadata> {
        self.inner
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever the cached metadata does.
    pub fn metadata_version(&self) -> u64 {
        self.inner
            .metadata_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Partition count of a cached topic.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.lock_metadata()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
    }

    /// The cached leader of a partition (None if unknown or leaderless).
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let m = self.lock_metadata();
        // Sorted by partition when merged: a consumer asks this for each
        // of its partitions on every fetch, so no linear scan.
        let parts = &m.topics.get(topic)?.partitions;
        let p = &parts[parts
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()?];
        (p.leader >= 0).then_some(p.leader)
    }

    /// Fetches metadata for `topics` (all topics when `None`; only brokers
    /// for an empty list) and merges it into the cache. Topics the broker
    /// does not know are dropped from the cache and reported by name.
    pub async fn refresh(&self, topics: Option<&[&str]>) -> Result<Metadata> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut r = MetadataRequestTopic::default();
                    r.name = Some(TopicName(StrBytes::from_string(t.to_string())));
                    r
                })
                .collect()
        });
        let conn = self.any_connection().await?;
        let version = conn.version(kafka_protocol::messages::ApiKey::Metadata)?;
        if version >= 8 {
            request.include_topic_authorized_operations = false;
        }
        let response = conn.send_versioned(&request, version).await?;
        let mut m = self.lock_metadata();
        m.cluster_id = response.cluster_id.map(|s| s.to_string());
        m.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        m.brokers = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        if topics.is_none() {
            m.topics.clear();
        }
        for t in &response.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                m.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            m.topics.insert(
                name.clone(),
                TopicMetadata {
                    name,
                    id: t.topic_id.to_string(),
                    internal: t.is_internal,
                    partitions,
                },
            );
        }
        self.inner
            .metadata_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(m.clone())
    }

    /// Makes sure `topic` is cached; `UnknownTopicOrPartition` if the
    /// cluster does not have it.
    pub async fn ensure_topic(&self, topic: &str) -> Result<i32> {
        if let Some(n) = self.partition_count(topic) {
            return Ok(n);
        }
        self.refresh(Some(&[topic])).await?;
        self.partition_count(topic)
            .ok_or_else(|| Error::UnknownTopicOrPartition(topic.to_string()))
    }

    /// The connection to broker `node`, opened (or reopened) on demand.
    pub async fn connection(&self, node: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(node)?;
        self.connection_to(&addr).await
    }

    fn broker_addr(&self, node: i32) -> Result<String> {
        self.lock_metadata()
            .brokers
            .get(&node)
            .map(|b| b.addr())
            .ok_or_else(|| Error::Protocol(format!("broker {node} is not in the metadata")))
    }

    /// A new connection to broker `node` that no one else uses: for
    /// requests the broker may hold, such as a consumer's long-polling
    /// Fetch. A broker answers a connection's requests in order, so a held
    /// request on a shared connection would delay every request queued
    /// behind it (a producer's acknowledgements by up to `fetch_max_wait`).
    pub async fn dedicated_connection(&self, node: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(node)?;
        Ok(Arc::new(
            Connection::connect(&addr, self.inner.config.connection()).await?,
        ))
    }

    async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>> {
        let mut conns = self.inner.connections.lock().await;
        if let Some(c) = conns.get(addr) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Connection::connect(addr, self.inner.config.connection()).await?);
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A connection to any broker: known brokers first, then the bootstrap
    /// list.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let mut candidates: Vec<String> = self
            .lock_metadata()
            .brokers
            .values()
            .map(|b| b.addr())
            .collect();
        candidates.extend(self.inner.config.bootstrap.iter().cloned());
        let mut last = None;
        for addr in &candidates {
            match self.connection_to(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::NoBrokerReachable {
            tried: candidates.join(", "),
            last: last.map(|e| e.to_string()).unwrap_or_default(),
        })
    }

    /// The connection to the controller (or any broker if none is known).
    pub async fn controller_connection(&self) -> Result<Arc<Connection>> {
        let controller = self.lock_metadata().controller;
        match controller {
            Some(id) => match self.connection(id).await {
                Ok(c) => Ok(c),
                Err(_) => self.any_connection().await,
            },
            None => self.any_connection().await,
        }
    }
}
