//! Topic administration and offset queries.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::cluster::{Client, TopicMetadata};
use crate::error::{Error, Result};
use crate::offsets::{list_offsets_at, OffsetSpec, TopicPartition};

const RESOURCE_TOPIC: i8 = 2;

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// -1 for the broker's default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }

    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// One config of a topic as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    /// True when set on the topic, false when a default.
    pub is_override: bool,
    /// Where the value comes from (DescribeConfigs v1+; `Default` on v0).
    pub source: ConfigSource,
    pub sensitive: bool,
}

/// Kafka's `ConfigSource`: which layer a config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// A dynamic config of this broker.
    DynamicBroker,
    /// A dynamic cluster-wide default.
    DynamicDefaultBroker,
    /// The broker's configuration file or flags.
    StaticBroker,
    /// The built-in default.
    Default,
    /// A source this client does not name.
    Other(i8),
}

impl ConfigSource {
    fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// A short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            ConfigSource::Topic => "topic",
            ConfigSource::DynamicBroker => "broker (dynamic)",
            ConfigSource::DynamicDefaultBroker => "cluster default (dynamic)",
            ConfigSource::StaticBroker => "broker (static)",
            ConfigSource::Default | ConfigSource::Other(_) => "default",
        }
    }
}

/// A change to one config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    /// Back to the default.
    Delete(String),
}

/// Administrative operations on a cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) client: Client,
    timeout: Duration,
}

impl Admin {
    pub fn new(client: Client) -> Admin {
        Admin {
            client,
            timeout: Duration::from_secs(30),
        }
    }

    fn timeout_ms(&self) -> i32 {
        self.timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// Creates topics; the result per topic, in order.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, Result<()>)>> {
        let conn = self.client.controller_connection().await?;
        let mut request = CreateTopicsRequest::default();
        request.timeout_ms = self.timeout_ms();
        request.topics = topics
            .iter()
            .map(|t| {
                let mut c = CreatableTopic::default();
                c.name = TopicName(StrBytes::from_string(t.name.clone()));
                c.num_partitions = t.partitions;
                c.replication_factor = t.replication_factor;
                c.configs = t
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        let mut e = CreatableTopicConfig::default();
                        e.name = StrBytes::from_string(k.clone());
                        e.value = Some(StrBytes::from_string(v.clone()));
                        e
                    })
                    .collect();
                c
            })
            .collect();
        let (response, _) = conn.send(&request).await?;
        let mut by_name: HashMap<String, Result<()>> = response
            .topics
            .into_iter()
            .map(|r| {
                let name = r.name.0.to_string();
                let outcome = if r.error_code == 0 {
                    Ok(())
                } else {
                    Err(Error::kafka(
                        r.error_code,
                        format!("creating topic {name}"),
                        r.error_message.map(|m| m.to_string()),
                    ))
                };
                (name, outcome)
            })
            .collect();
        Ok(topics
            .iter()
            .map(|t| {
                let r = by_name.remove(&t.name).unwrap_or_else(|| {
                    Err(Error::Protocol(format!("no answer for topic {}", t.name)))
                });
                (t.name.clone(), r)
            })
            .collect())
    }

    /// Creates one topic; an error if it exists or is invalid.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        self.create_topics(&[topic]).await?.remove(0).1
    }

    /// Deletes topics; the result per topic, in order.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let conn = self.client.controller_connection().await?;
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = self.timeout_ms();
        request.topic_names = names
            .iter()
            .map(|n| TopicName(StrBytes::from_string(n.to_string())))
            .collect();
        let (response, _) = conn.send(&request).await?;
        let mut by_name: HashMap<String, i16> = response
            .responses
            .into_iter()
            .filter_map(|r| r.name.map(|n| (n.0.to_string(), r.error_code)))
            .collect();
        Ok(names
            .iter()
            .map(|n| {
                let r = match by_name.remove(*n) {
                    Some(code) => Error::check(code, || format!("deleting topic {n}")),
                    None => Err(Error::Protocol(format!("no answer for topic {n}"))),
                };
                (n.to_string(), r)
            })
            .collect())
    }

    /// Every topic of the cluster, by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>> {
        let m = self.client.refresh(None).await?;
        Ok(m.topics.into_values().collect())
    }

    /// Partitions, leaders and replicas of one topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicMetadata> {
        let m = self.client.refresh(Some(&[name])).await?;
        m.topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(&self, topic: &str, count: i32) -> Result<()> {
        let conn = self.client.controller_connection().await?;
        let mut request = CreatePartitionsRequest::default();
        request.timeout_ms = self.timeout_ms();
        let mut t = CreatePartitionsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.count = count;
        t.assignments = None; // the broker places them
        request.topics = vec![t];
        let (response, _) = conn.send(&request).await?;
        let r = response
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty CreatePartitions answer".into()))?;
        if r.error_code != 0 {
            return Err(Error::kafka(
                r.error_code,
                format!("growing {topic} to {count} partitions"),
                r.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// Every config of a topic, defaults included.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let conn = self.client.any_connection().await?;
        let mut request = DescribeConfigsRequest::default();
        let mut r = DescribeConfigsResource::default();
        r.resource_type = RESOURCE_TOPIC;
        r.resource_name = StrBytes::from_string(topic.to_string());
        r.configuration_keys = None;
        request.resources = vec![r];
        let (response, version) = conn.send(&request).await?;
        let result = response
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty DescribeConfigs answer".into()))?;
        if result.error_code != 0 {
            if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(Error::UnknownTopicOrPartition(topic.to_string()));
            }
            return Err(Error::kafka(
                result.error_code,
                format!("describing the configs of {topic}"),
                result.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                read_only: c.read_only,
                // v1+: source 1 = topic config; v0 had is_default instead.
                is_override: version >= 1 && c.config_source == 1,
                source: if version >= 1 {
                    ConfigSource::from_code(c.config_source)
                } else {
                    ConfigSource::Default
                },
                sensitive: c.is_sensitive,
            })
            .collect())
    }

    /// Sets or deletes topic configs (IncrementalAlterConfigs).
    pub async fn alter_topic_configs(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let conn = self.client.any_connection().await?;
        let mut request = IncrementalAlterConfigsRequest::default();
        let mut r = AlterConfigsResource::default();
        r.resource_type = RESOURCE_TOPIC;
        r.resource_name = StrBytes::from_string(topic.to_string());
        r.configs = changes
            .iter()
            .map(|c| {
                let mut a = AlterableConfig::default();
                match c {
                    ConfigChange::Set(k, v) => {
                        a.name = StrBytes::from_string(k.clone());
                        a.config_operation = 0;
                        a.value = Some(StrBytes::from_string(v.clone()));
                    }
                    ConfigChange::Delete(k) => {
                        a.name = StrBytes::from_string(k.clone());
                        a.config_operation = 1;
                        a.value = None;
                    }
                }
                a
            })
            .collect();
        request.resources = vec![r];
        let (response, _) = conn.send(&request).await?;
        let r = response
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty IncrementalAlterConfigs answer".into()))?;
        if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(Error::UnknownTopicOrPartition(topic.to_string()));
        }
        if r.error_code != 0 {
            return Err(Error::kafka(
                r.error_code,
                format!("altering the configs of {topic}"),
                r.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// (offset, timestamp) per partition for `spec`.
    pub async fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Vec<(TopicPartition, Result<(i64, i64)>)>> {
        list_offsets_at(&self.client, partitions).await
    }
}
