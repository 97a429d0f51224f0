//! Broker settings: command-line flags, an optional TOML file, defaults that
//! work with no arguments. Flags override the file; the file overrides
//! defaults. Each setting is declared once, in [`settings!`] below: its flag,
//! its TOML key (the same name with underscores), its default and its doc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{BrokerError, IoContext, Result};
pub use topic_config::{TopicDefaults, WriteSizing};

pub mod broker_config;
pub mod topic_config;

/// Declares the settings: `Settings` (every one optional, as given by flags
/// or the file), `Settings::over` (layering) and `Chosen` (defaults applied).
/// A default is written as the text a user would give, and parsed the same way.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $(#[arg($($arg:tt)+)])?
        $name:ident: $ty:ty $(= $default:literal)?;
    )+) => {
        /// Every broker setting, as `rill broker` flags or as keys of the
        /// `--config` TOML file (the flag's name with underscores, e.g.
        /// `data_dir = "/var/lib/rill"`). Unset ones are `None`.
        #[derive(Debug, Clone, Default, Args, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])+
                #[arg(long, help = settings!(@help [$($doc)+] $($default)?) $(, $($arg)+)?)]
                pub $name: Option<$ty>,
            )+
        }

        impl Settings {
            /// These settings, with the ones not set here taken from `under`.
            pub fn over(self, under: Settings) -> Settings {
                Settings { $($name: self.$name.or(under.$name),)+ }
            }

            /// The settings with every default applied.
            pub fn chosen(self) -> Result<Chosen> {
                Ok(Chosen { $($name: settings!(@choose self.$name, $name $(, $default)?),)+ })
            }
        }

        /// [`Settings`] with defaults applied: settings without a default stay optional.
        #[derive(Debug, Clone)]
        pub struct Chosen {
            $(pub $name: settings!(@chosen $ty $(, $default)?),)+
        }
    };
    // Doc comments start with the space after `///`.
    (@help [$($doc:literal)+]) => { concat!($($doc),+).trim_start() };
    (@help [$($doc:literal)+] $default:literal) => {
        concat!($($doc),+, " [default: ", $default, "]").trim_start()
    };
    (@chosen $ty:ty) => { Option<$ty> };
    (@chosen $ty:ty, $default:literal) => { $ty };
    (@choose $value:expr, $name:ident) => { $value };
    (@choose $value:expr, $name:ident, $default:literal) => {
        match $value {
            Some(v) => v,
            None => $default.parse().map_err(|e| {
                BrokerError::Config(format!("the default of {} does not parse: {e}", stringify!($name)))
            })?,
        }
    };
}

settings! {
    /// Directory for topic metadata and partition logs.
    #[arg(value_name = "DIR")]
    data_dir: PathBuf = "./data";
    /// Address the Kafka listener binds. Port 0 picks a free port.
    #[arg(value_name = "HOST:PORT")]
    listen: String = "127.0.0.1:9092";
    /// Address of the admin listener (Prometheus `/metrics`, `/v1/status`, `/v1/status/ready`, `/v1/status/live`); `off` runs none. Port 0 picks a free port.
    #[arg(value_name = "HOST:PORT|off")]
    admin_listen: String = "127.0.0.1:9644";
    /// Give each partition its own series in `/metrics` (log offsets, segments, bytes); turn off on brokers with very many partitions so a scrape does not grow with them.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    metrics_partition_series: bool = "true";
    /// Address given to clients in Metadata answers [default: the bound listener address].
    #[arg(value_name = "HOST:PORT")]
    advertised_listener: String;
    /// Number of shards (one pinned executor per core) [default: every available core].
    cores: usize;
    /// This broker's node id.
    node_id: i32 = "0";
    /// Largest request frame accepted; larger ones are refused and the connection closed.
    max_request_bytes: usize = "104857600";
    /// Memory for caches of recently written batches, split over shards and partitions; an eighth of a shard's share (16 to 64 MiB) is its pool of I/O buffers.
    memory_budget_bytes: usize = "1073741824";
    /// Create unknown topics on Metadata and Produce requests, as Kafka's auto.create.topics.enable.
    #[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    auto_create_topics: bool = "false";
    /// Partitions of topics created without a count.
    default_partitions: i32 = "1";
    /// Topic default `retention.ms`; -1 keeps forever.
    default_retention_ms: i64 = "604800000";
    /// Topic default `retention.bytes`; -1 means no limit.
    default_retention_bytes: i64 = "-1";
    /// Topic default `segment.bytes`.
    default_segment_bytes: i64 = "1073741824";
    /// Topic default `segment.ms`.
    default_segment_ms: i64 = "604800000";
    /// Topic default `max.message.bytes` (largest batch).
    default_max_message_bytes: i64 = "1048588";
    /// Topic default `flush.ms`: 0 syncs before every acknowledgement, N syncs every N ms; acks=all always waits for the sync.
    default_flush_ms: i64 = "1000";
    /// How often retention runs over each shard's partitions (and idle producer ids expire).
    retention_check_interval_ms: u64 = "300000";
    /// How often each shard's cleaner looks for compacted partitions to clean, as Kafka's log.cleaner.backoff.ms.
    log_cleaner_backoff_ms: u64 = "15000";
    /// Memory for each shard's cleaner key map, as Kafka's log.cleaner.dedupe.buffer.size (there shared by all cleaner threads); a log with more keys is cleaned in several passes.
    log_cleaner_dedupe_buffer_bytes: usize = "33554432";
    /// Bytes each shard's cleaner reads and writes per second at most, as Kafka's log.cleaner.io.max.bytes.per.second [default: unlimited].
    log_cleaner_io_max_bytes_per_second: u64;
    /// Partitions of the internal __consumer_offsets topic, created on the first group request (Kafka's offsets.topic.num.partitions).
    offsets_topic_num_partitions: i32 = "50";
    /// Committed offsets of a group that has been empty this long are deleted (Kafka's offsets.retention.minutes).
    offsets_retention_minutes: i64 = "10080";
    /// Shortest session timeout a group member may ask for (Kafka's group.min.session.timeout.ms).
    group_min_session_timeout_ms: i32 = "6000";
    /// Longest session timeout a group member may ask for (Kafka's group.max.session.timeout.ms).
    group_max_session_timeout_ms: i32 = "1800000";
    /// The first rebalance of an empty group waits this long for more members (Kafka's group.initial.rebalance.delay.ms).
    group_initial_rebalance_delay_ms: i32 = "3000";
    /// A member of a consumer-protocol (KIP-848) group not heard from this long is removed (Kafka's group.consumer.session.timeout.ms).
    group_consumer_session_timeout_ms: i32 = "45000";
    /// How often members of consumer-protocol groups are told to heartbeat (Kafka's group.consumer.heartbeat.interval.ms).
    group_consumer_heartbeat_interval_ms: i32 = "5000";
    /// Most members of one consumer-protocol group (Kafka's group.consumer.max.size) [default: unlimited].
    group_consumer_max_size: usize;
    /// An idempotent producer silent this long is forgotten by the partitions it wrote to, as Kafka's producer.id.expiration.ms.
    producer_id_expiration_ms: u64 = "86400000";
    /// io-properties file from `rill tune probe`, sizing segment writes [default: DATA_DIR/io-properties.toml if present, else built-in sizes].
    #[arg(value_name = "FILE")]
    io_properties: PathBuf;
}

/// `rill broker` flags: the settings, and a file to read more of them from.
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// TOML file with settings (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Resolved broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_listener: Option<(String, u16)>,
    /// Where the admin listener binds; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub metrics_partition_series: bool,
    pub cores: usize,
    pub node_id: i32,
    pub max_request_bytes: usize,
    pub memory_budget_bytes: usize,
    pub auto_create_topics: bool,
    pub topic_defaults: TopicDefaults,
    pub retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    pub log_cleaner_dedupe_buffer_bytes: usize,
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    pub offsets_topic_num_partitions: i32,
    pub offsets_retention_minutes: i64,
    pub group_limits: rill_groups::group::GroupLimits,
    /// From the io-properties file; `None` keeps the storage engine's defaults.
    pub write_sizing: Option<WriteSizing>,
}

fn parse_host_port(s: &str) -> Result<(String, u16)> {
    let bad = |why: &str| BrokerError::Config(format!("`{s}` is not HOST:PORT: {why}"));
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

impl BrokerConfig {
    /// The settings a broker runs with when given none (as `rill broker`).
    pub fn defaults() -> Result<BrokerConfig> {
        BrokerConfig::from_settings(Settings::default())
    }

    /// Flags over the `--config` file over defaults.
    pub fn resolve(args: &BrokerArgs) -> Result<BrokerConfig> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        BrokerConfig::from_settings(args.settings.clone().over(file))
    }

    /// Checks `settings` and applies the defaults of those not set.
    pub fn from_settings(settings: Settings) -> Result<BrokerConfig> {
        let s = settings.chosen()?;
        let config = |m: String| BrokerError::Config(m);
        let listen: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&s.listen)
            .map_err(|e| config(format!("cannot resolve --listen `{}`: {e}", s.listen)))?
            .next()
            .ok_or_else(|| config(format!("`{}` resolves to no address", s.listen)))?;
        let advertised_listener = s
            .advertised_listener
            .as_deref()
            .map(parse_host_port)
            .transpose()?;
        let admin_listen = match s.admin_listen.as_str() {
            "off" | "" => None,
            a => Some(
                std::net::ToSocketAddrs::to_socket_addrs(a)
                    .map_err(|e| config(format!("cannot resolve --admin-listen `{a}`: {e}")))?
                    .next()
                    .ok_or_else(|| config(format!("`{a}` resolves to no address")))?,
            ),
        };
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cores = s.cores.unwrap_or(available);
        if cores == 0 || cores > available {
            return Err(config(format!(
                "--cores must be between 1 and the {available} available cores, not {cores}"
            )));
        }
        let d = TopicDefaults {
            partitions: s.default_partitions,
            retention_ms: s.default_retention_ms,
            retention_bytes: s.default_retention_bytes,
            segment_bytes: s.default_segment_bytes,
            segment_ms: s.default_segment_ms,
            max_message_bytes: s.default_max_message_bytes,
            flush_ms: s.default_flush_ms,
            compression_type: "producer".into(),
            producer_id_expiration_ms: s.producer_id_expiration_ms,
        };
        if s.offsets_topic_num_partitions < 1 {
            return Err(config(
                "--offsets-topic-num-partitions must be at least 1".into(),
            ));
        }
        if d.partitions < 1 {
            return Err(config("--default-partitions must be at least 1".into()));
        }
        crate::config::topic_config::validate_defaults(&d)
            .map_err(|e| config(format!("bad broker default: {e}")))?;
        let write_sizing = match s.io_properties {
            Some(path) => Some(read_sizing(&path)?),
            None => {
                let default = s.data_dir.join("io-properties.toml");
                if default.exists() {
                    Some(read_sizing(&default)?)
                } else {
                    None
                }
            }
        };
        Ok(BrokerConfig {
            data_dir: s.data_dir,
            listen,
            advertised_listener,
            admin_listen,
            metrics_partition_series: s.metrics_partition_series,
            cores,
            node_id: s.node_id,
            max_request_bytes: s.max_request_bytes,
            memory_budget_bytes: s.memory_budget_bytes,
            auto_create_topics: s.auto_create_topics,
            topic_defaults: d,
            retention_check_interval_ms: s.retention_check_interval_ms,
            log_cleaner_backoff_ms: s.log_cleaner_backoff_ms,
            log_cleaner_dedupe_buffer_bytes: s.log_cleaner_dedupe_buffer_bytes,
            log_cleaner_io_max_bytes_per_second: s.log_cleaner_io_max_bytes_per_second,
            offsets_topic_num_partitions: s.offsets_topic_num_partitions,
            offsets_retention_minutes: s.offsets_retention_minutes,
            group_limits: rill_groups::group::GroupLimits {
                min_session_timeout_ms: s.group_min_session_timeout_ms,
                max_session_timeout_ms: s.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: s.group_initial_rebalance_delay_ms,
                consumer: rill_groups::consumer::ConsumerLimits {
                    session_timeout_ms: s.group_consumer_session_timeout_ms,
                    heartbeat_interval_ms: s.group_consumer_heartbeat_interval_ms,
                    max_members: s.group_consumer_max_size.unwrap_or(usize::MAX),
                },
            },
            write_sizing,
        })
    }
}

/// Write buffer size and writes in flight from an io-properties file,
/// clamped to what the storage engine accepts.
fn read_sizing(path: &Path) -> Result<WriteSizing> {
    let props = rill_tuning::IoProperties::read(path)?;
    let buffer =
        (props.disk.best_write_block_bytes as usize).clamp(64 << 10, 16 << 20) / 4096 * 4096;
    Ok(WriteSizing {
        buffer_bytes: buffer,
        writes_in_flight: (props.disk.best_write_queue_depth as usize).clamp(1, 64),
    })
}

fn read_file(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path)
        .context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| BrokerError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags_layer_in_that_order() {
        let c = BrokerConfig::resolve(&BrokerArgs::default()).unwrap();
        assert_eq!(
            c.listen,
            "127.0.0.1:9092".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(!c.auto_create_topics);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rill.toml");
        std::fs::write(&file, "data_dir = \"/srv/rill\"\nlisten = \"127.0.0.1:0\"\ndefault_partitions = 6\nauto_create_topics = true\n").unwrap();
        let args = BrokerArgs {
            config: Some(file.clone()),
            settings: Settings {
                default_partitions: Some(3),
                ..Settings::default()
            },
        };
        let c = BrokerConfig::resolve(&args).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/rill"));
        assert_eq!(
            c.topic_defaults.partitions, 3,
            "the flag wins over the file"
        );
        assert!(c.auto_create_topics);

        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let err = BrokerConfig::resolve(&BrokerArgs {
            config: Some(file),
            ..BrokerArgs::default()
        })
        .unwrap_err();
        assert!(matches!(err, BrokerError::Parse { .. }), "{err:?}");
        assert!(format!("{err:#}").contains("no_such_setting"));
        let err = BrokerConfig::from_settings(Settings {
            default_retention_ms: Some(-5),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("retention.ms"));
    }
}
