//! Dynamic broker configs: the cluster-wide topic defaults that can change
//! at run time through AlterConfigs / IncrementalAlterConfigs on the BROKER
//! resource, as in Kafka. They are kept with the cluster metadata (persisted
//! and applied on every shard like any metadata change) in two layers: the
//! cluster default (resource name `""`, DYNAMIC_DEFAULT_BROKER_CONFIG) and
//! this broker's own (resource name = node id, DYNAMIC_BROKER_CONFIG), over
//! the static settings from flags and the config file.

use std::collections::BTreeMap;

use crate::cluster::ClusterMeta;
use crate::config::topic_config;
use crate::config::TopicDefaults;

/// A broker config that may change at run time, and the topic config whose
/// default it sets (`None`: not a topic setting).
#[derive(Debug, Clone, Copy)]
pub struct Dynamic {
    pub name: &'static str,
    pub topic_config: Option<&'static str>,
    /// Kafka's `ConfigType` code (DescribeConfigs v3+).
    pub config_type: i8,
}

const fn d(name: &'static str, topic_config: Option<&'static str>, config_type: i8) -> Dynamic {
    Dynamic {
        name,
        topic_config,
        config_type,
    }
}

const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;

pub const DYNAMIC: &[Dynamic] = &[
    d("num.partitions", None, TYPE_INT),
    d("log.retention.ms", Some("retention.ms"), TYPE_LONG),
    d("log.retention.bytes", Some("retention.bytes"), TYPE_LONG),
    d("log.segment.bytes", Some("segment.bytes"), TYPE_INT),
    d("log.roll.ms", Some("segment.ms"), TYPE_LONG),
    d("message.max.bytes", Some("max.message.bytes"), TYPE_INT),
    d("log.flush.interval.ms", Some("flush.ms"), TYPE_LONG),
    d("compression.type", Some("compression.type"), TYPE_STRING),
];

/// Broker configs that are described but only change with a restart.
pub const READ_ONLY: &[&str] = &[
    "broker.id",
    "node.id",
    "log.dirs",
    "listeners",
    "advertised.listeners",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
];

/// Broker configs Kafka changes at run time (its `DynamicBrokerConfig`)
/// for parts Rill does not have: SASL, thread pools, connection limits,
/// metric reporters, replication throttles, config providers. Admin tools
/// written for Kafka set them (librdkafka's own test suite does), so
/// AlterConfigs accepts and records them as Kafka would, and
/// DescribeConfigs shows them with a note that Rill does not use them,
/// never as settings in force. Kafka's log-config synonyms
/// (`log.cleanup.policy`, …) are not here: Rill does use those settings,
/// per topic, so taking a broker-wide value it ignores would mislead.
pub const KAFKA_ONLY: &[&str] = &[
    // SASL (Kafka: per listener, dynamic).
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal.to.local.rules",
    "sasl.kerberos.service.name",
    "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.ticket.renew.window.factor",
    "sasl.login.refresh.buffer.seconds",
    "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter",
    "sasl.mechanism.inter.broker.protocol",
    "principal.builder.class",
    // Thread pools.
    "background.threads",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    // Connection limits.
    "max.connections",
    "max.connection.creation.rate",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    // Metrics, throttles, plugins.
    "metric.reporters",
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "config.providers",
];

/// Whether `name` is a Kafka broker config Rill accepts but does not use.
pub fn kafka_only(name: &str) -> bool {
    KAFKA_ONLY.contains(&name)
}

/// Kafka-only configs whose values are secrets: described without them.
pub fn sensitive(name: &str) -> bool {
    name == "sasl.jaas.config"
}

/// What DescribeConfigs says of a Kafka-only config.
pub const KAFKA_ONLY_NOTE: &str =
    "Recorded for Kafka tools: Rill has no such part and does not use this setting.";

/// Which layer a broker config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Set for this broker (resource name = node id).
    Broker,
    /// Set cluster-wide (resource name `""`).
    ClusterDefault,
    /// From flags, the config file, or the built-in default.
    Static,
}

impl Layer {
    /// Kafka's `ConfigSource` code.
    pub fn source(self) -> i8 {
        match self {
            Layer::Broker => 2,
            Layer::ClusterDefault => 3,
            Layer::Static => 4,
        }
    }
}

pub fn dynamic(name: &str) -> Option<&'static Dynamic> {
    DYNAMIC.iter().find(|c| c.name == name)
}

/// The dynamic broker config that sets the default of a topic config.
pub fn for_topic_config(topic_config: &str) -> Option<&'static Dynamic> {
    DYNAMIC
        .iter()
        .find(|c| c.topic_config == Some(topic_config))
}

/// Checks `name = value` for a dynamic broker config; the error says what
/// is wrong, or that the setting is read-only.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match dynamic(name) {
        Some(Dynamic {
            topic_config: Some(t),
            ..
        }) => topic_config::validate(t, value)
            .map_err(|e| e.replace(&format!("`{t}`"), &format!("`{name}`"))),
        Some(_) => match value.trim().parse::<i32>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(()),
            _ => Err(format!(
                "invalid value `{value}` for `{name}`: must be an integer between 1 and 100000"
            )),
        },
        None if kafka_only(name) => Ok(()),
        None if READ_ONLY.contains(&name) => Err(format!(
            "`{name}` is read-only: set it with the broker's flags or config file and restart"
        )),
        None => Err(format!("unknown or unsupported broker config `{name}`")),
    }
}

/// The layers in precedence order, as stored in the metadata.
fn layers(meta: &ClusterMeta, node_id: i32) -> [(Layer, Option<&BTreeMap<String, String>>); 2] {
    [
        (Layer::Broker, meta.broker_configs.get(&node_id.to_string())),
        (Layer::ClusterDefault, meta.broker_configs.get("")),
    ]
}

/// The value and layer of a dynamic config, if a dynamic layer sets it.
pub fn dynamic_value<'m>(
    meta: &'m ClusterMeta,
    node_id: i32,
    name: &str,
) -> Option<(&'m str, Layer)> {
    layers(meta, node_id)
        .into_iter()
        .find_map(|(layer, m)| m.and_then(|m| m.get(name)).map(|v| (v.as_str(), layer)))
}

/// The topic defaults in force: the static ones with the dynamic layers over them.
pub fn effective_defaults(base: &TopicDefaults, meta: &ClusterMeta, node_id: i32) -> TopicDefaults {
    let mut d = base.clone();
    for c in DYNAMIC {
        let Some((v, _)) = dynamic_value(meta, node_id, c.name) else {
            continue;
        };
        let v = v.trim();
        let n = v.parse::<i64>().ok();
        match (c.name, n) {
            ("num.partitions", Some(n)) => d.partitions = n as i32,
            ("log.retention.ms", Some(n)) => d.retention_ms = n,
            ("log.retention.bytes", Some(n)) => d.retention_bytes = n,
            ("log.segment.bytes", Some(n)) => d.segment_bytes = n,
            ("log.roll.ms", Some(n)) => d.segment_ms = n,
            ("message.max.bytes", Some(n)) => d.max_message_bytes = n,
            ("log.flush.interval.ms", Some(n)) => d.flush_ms = n,
            ("compression.type", _) => d.compression_type = v.to_string(),
            // Stored values were validated; anything else is left static.
            _ => {}
        }
    }
    d
}

/// The value of a dynamic config as the effective defaults give it.
pub fn current_value(c: &Dynamic, d: &TopicDefaults) -> String {
    match c.topic_config {
        Some(t) => topic_config::default_value(t, d),
        None => d.partitions.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TopicDefaults {
        TopicDefaults {
            partitions: 1,
            retention_ms: 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 1000,
            max_message_bytes: 1 << 20,
            flush_ms: 1000,
            compression_type: "producer".into(),
            producer_id_expiration_ms: 86_400_000,
        }
    }

    #[test]
    fn layers_override_in_order_and_validation_names_the_setting() {
        let mut meta = ClusterMeta::empty("c");
        meta.broker_configs.insert(
            "".into(),
            [
                ("log.retention.ms".to_string(), "5000".to_string()),
                ("num.partitions".to_string(), "4".to_string()),
            ]
            .into(),
        );
        meta.broker_configs.insert(
            "0".into(),
            [("log.retention.ms".to_string(), "9000".to_string())].into(),
        );
        let d = effective_defaults(&base(), &meta, 0);
        assert_eq!((d.retention_ms, d.partitions), (9000, 4));
        assert_eq!(
            dynamic_value(&meta, 0, "log.retention.ms"),
            Some(("9000", Layer::Broker))
        );
        assert_eq!(
            dynamic_value(&meta, 1, "log.retention.ms"),
            Some(("5000", Layer::ClusterDefault))
        );
        assert!(validate("compression.type", "lz4").is_ok());
        assert!(validate("compression.type", "brotli")
            .unwrap_err()
            .contains("`compression.type`"));
        assert!(validate("log.segment.bytes", "12")
            .unwrap_err()
            .contains("`log.segment.bytes`"));
        assert!(validate("log.dirs", "/x")
            .unwrap_err()
            .contains("read-only"));
        assert!(validate("no.such", "1").unwrap_err().contains("unknown"));
        assert!(validate("sasl.kerberos.min.time.before.relogin", "58000").is_ok());
        assert!(validate("num.partitions", "0").is_err());
    }

    #[test]
    fn every_dynamic_default_names_a_known_topic_config() {
        for c in DYNAMIC {
            if let Some(t) = c.topic_config {
                assert!(topic_config::known(t).is_some(), "{} -> {t}", c.name);
                assert!(
                    validate(c.name, &current_value(c, &base())).is_ok(),
                    "{}",
                    c.name
                );
            }
        }
    }
}
