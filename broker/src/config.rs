//! Broker settings: command-line flags, an optional TOML file, defaults that
//! work with no arguments. Flags override the file; the file overrides defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

/// `rill broker` flags. Every flag can also be set in the `--config` TOML file
/// under the same name with underscores (e.g. `data_dir = "/var/lib/rill"`).
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// TOML file with settings (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for topic metadata and partition logs [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds [default: 127.0.0.1:9092]. Port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address given to clients in Metadata answers [default: the bound listener address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listener: Option<String>,
    /// Number of shards (one pinned executor per core) [default: every available core].
    #[arg(long)]
    pub cores: Option<usize>,
    /// This broker's node id [default: 0].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Largest request frame accepted; larger ones are refused and the connection closed [default: 104857600].
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Memory for caches of recently written batches, split over shards and partitions [default: 1073741824].
    #[arg(long)]
    pub memory_budget_bytes: Option<usize>,
    /// Create unknown topics on Metadata and Produce requests, as Kafka's auto.create.topics.enable.
    #[arg(long)]
    pub auto_create_topics: bool,
    /// Partitions of topics created without a count [default: 1].
    #[arg(long)]
    pub default_partitions: Option<i32>,
    /// Topic default `retention.ms`; -1 keeps forever [default: 604800000].
    #[arg(long)]
    pub default_retention_ms: Option<i64>,
    /// Topic default `retention.bytes`; -1 means no limit [default: -1].
    #[arg(long)]
    pub default_retention_bytes: Option<i64>,
    /// Topic default `segment.bytes` [default: 1073741824].
    #[arg(long)]
    pub default_segment_bytes: Option<i64>,
    /// Topic default `segment.ms` [default: 604800000].
    #[arg(long)]
    pub default_segment_ms: Option<i64>,
    /// Topic default `max.message.bytes` (largest batch) [default: 1048588].
    #[arg(long)]
    pub default_max_message_bytes: Option<i64>,
    /// Topic default `flush.ms`: 0 syncs before every acknowledgement, N syncs every N ms.
    /// acks=all always waits for the sync [default: 1000].
    #[arg(long)]
    pub default_flush_ms: Option<i64>,
    /// How often retention runs over each shard's partitions [default: 300000].
    #[arg(long)]
    pub retention_check_interval_ms: Option<u64>,
    /// io-properties file from `rill tune probe`, sizing segment writes
    /// [default: DATA_DIR/io-properties.toml if present, else built-in sizes].
    #[arg(long, value_name = "FILE")]
    pub io_properties: Option<PathBuf>,
}

/// The same settings as read from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertised_listener: Option<String>,
    cores: Option<usize>,
    node_id: Option<i32>,
    max_request_bytes: Option<usize>,
    memory_budget_bytes: Option<usize>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<i32>,
    default_retention_ms: Option<i64>,
    default_retention_bytes: Option<i64>,
    default_segment_bytes: Option<i64>,
    default_segment_ms: Option<i64>,
    default_max_message_bytes: Option<i64>,
    default_flush_ms: Option<i64>,
    retention_check_interval_ms: Option<u64>,
    io_properties: Option<PathBuf>,
}

/// Write sizing measured by `rill tune probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSizing {
    pub buffer_bytes: usize,
    pub writes_in_flight: usize,
}

/// Topic config defaults, as Kafka's broker-level `log.*` settings.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub partitions: i32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    pub flush_ms: i64,
    /// `compression.type` of topics that do not set it.
    pub compression_type: String,
}

/// Resolved broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_listener: Option<(String, u16)>,
    pub cores: usize,
    pub node_id: i32,
    pub max_request_bytes: usize,
    pub memory_budget_bytes: usize,
    pub auto_create_topics: bool,
    pub topic_defaults: TopicDefaults,
    pub retention_check_interval_ms: u64,
    /// From the io-properties file; `None` keeps the storage engine's defaults.
    pub write_sizing: Option<WriteSizing>,
}

fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("`{s}` is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in `{s}`"))?;
    if host.is_empty() {
        bail!("empty host in `{s}`");
    }
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

impl BrokerConfig {
    pub fn resolve(args: &BrokerArgs) -> anyhow::Result<BrokerConfig> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen_str = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&listen_str)
            .with_context(|| format!("cannot resolve --listen `{listen_str}`"))?
            .next()
            .with_context(|| format!("`{listen_str}` resolves to no address"))?;
        let advertised_listener = match args
            .advertised_listener
            .clone()
            .or(file.advertised_listener)
        {
            Some(s) => Some(parse_host_port(&s)?),
            None => None,
        };
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cores = args.cores.or(file.cores).unwrap_or(available);
        if cores == 0 || cores > available {
            bail!("--cores must be between 1 and the {available} available cores, not {cores}");
        }
        let d = TopicDefaults {
            partitions: args
                .default_partitions
                .or(file.default_partitions)
                .unwrap_or(1),
            retention_ms: args
                .default_retention_ms
                .or(file.default_retention_ms)
                .unwrap_or(7 * 24 * 3600 * 1000),
            retention_bytes: args
                .default_retention_bytes
                .or(file.default_retention_bytes)
                .unwrap_or(-1),
            segment_bytes: args
                .default_segment_bytes
                .or(file.default_segment_bytes)
                .unwrap_or(1 << 30),
            segment_ms: args
                .default_segment_ms
                .or(file.default_segment_ms)
                .unwrap_or(7 * 24 * 3600 * 1000),
            max_message_bytes: args
                .default_max_message_bytes
                .or(file.default_max_message_bytes)
                .unwrap_or(1_048_588),
            flush_ms: args
                .default_flush_ms
                .or(file.default_flush_ms)
                .unwrap_or(1000),
            compression_type: "producer".into(),
        };
        if d.partitions < 1 {
            bail!("--default-partitions must be at least 1");
        }
        crate::topic_config::validate_defaults(&d)?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let write_sizing = match args.io_properties.clone().or(file.io_properties) {
            Some(path) => Some(read_sizing(&path)?),
            None => {
                let default = data_dir.join("io-properties.toml");
                if default.exists() {
                    Some(read_sizing(&default)?)
                } else {
                    None
                }
            }
        };
        Ok(BrokerConfig {
            data_dir,
            listen,
            advertised_listener,
            cores,
            node_id: args.node_id.or(file.node_id).unwrap_or(0),
            max_request_bytes: args
                .max_request_bytes
                .or(file.max_request_bytes)
                .unwrap_or(100 << 20),
            memory_budget_bytes: args
                .memory_budget_bytes
                .or(file.memory_budget_bytes)
                .unwrap_or(1 << 30),
            auto_create_topics: args.auto_create_topics || file.auto_create_topics.unwrap_or(false),
            topic_defaults: d,
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(300_000),
            write_sizing,
        })
    }
}

/// Write buffer size and writes in flight from an io-properties file,
/// clamped to what the storage engine accepts.
fn read_sizing(path: &Path) -> anyhow::Result<WriteSizing> {
    let props = rill_tuning::IoProperties::read(path)?;
    let buffer =
        (props.disk.best_write_block_bytes as usize).clamp(64 << 10, 16 << 20) / 4096 * 4096;
    Ok(WriteSizing {
        buffer_bytes: buffer,
        writes_in_flight: (props.disk.best_write_queue_depth as usize).clamp(1, 64),
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags_layer_in_that_order() {
        let c = BrokerConfig::resolve(&BrokerArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(!c.auto_create_topics);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rill.toml");
        std::fs::write(&file, "data_dir = \"/srv/rill\"\nlisten = \"127.0.0.1:0\"\ndefault_partitions = 6\nauto_create_topics = true\n").unwrap();
        let args = BrokerArgs {
            config: Some(file.clone()),
            default_partitions: Some(3),
            ..BrokerArgs::default()
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
        assert!(format!("{err:#}").contains("no_such_setting"));
        let err = BrokerConfig::resolve(&BrokerArgs {
            default_retention_ms: Some(-5),
            ..BrokerArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("retention.ms"));
    }
}
