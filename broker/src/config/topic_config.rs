//! Topic configs: the Kafka names Rill knows, their validation, defaults, and
//! how they become a partition's [`LogConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use rill_storage::{CompactionConfig, FlushPolicy, LogConfig};

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
    /// Broker-wide `producer.id.expiration.ms` (not a topic config).
    pub producer_id_expiration_ms: u64,
}

/// Write sizing measured by `rill tune probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSizing {
    pub buffer_bytes: usize,
    pub writes_in_flight: usize,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Long {
        min: i64,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// A comma-separated, non-empty set of these.
    List(&'static [&'static str]),
    Ratio,
}

/// A topic config Rill accepts: its name, what values it takes, and its
/// broker-level default, in one row. `effective` is false for settings that
/// are stored and described for client compatibility but change nothing yet.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub name: &'static str,
    kind: Kind,
    pub effective: bool,
    default: fn(&TopicDefaults) -> String,
}

const fn k(
    name: &'static str,
    kind: Kind,
    effective: bool,
    default: fn(&TopicDefaults) -> String,
) -> Known {
    Known {
        name,
        kind,
        effective,
        default,
    }
}

pub const KNOWN: &[Known] = &[
    k(
        "cleanup.policy",
        Kind::List(&["delete", "compact"]),
        true,
        |_| "delete".into(),
    ),
    k("retention.ms", Kind::Long { min: -1 }, true, |d| {
        d.retention_ms.to_string()
    }),
    k("retention.bytes", Kind::Long { min: -1 }, true, |d| {
        d.retention_bytes.to_string()
    }),
    k(
        "segment.bytes",
        Kind::Int {
            min: 4096,
            max: (1 << 31) - 1,
        },
        true,
        |d| d.segment_bytes.to_string(),
    ),
    k("segment.ms", Kind::Long { min: 1 }, true, |d| {
        d.segment_ms.to_string()
    }),
    k(
        "max.message.bytes",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        |d| d.max_message_bytes.to_string(),
    ),
    k("flush.ms", Kind::Long { min: 0 }, true, |d| {
        d.flush_ms.to_string()
    }),
    k(
        "index.interval.bytes",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        true,
        |_| "4096".into(),
    ),
    k(
        "message.timestamp.type",
        Kind::Choice(&["CreateTime"]),
        true,
        |_| "CreateTime".into(),
    ),
    k(
        "compression.type",
        Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        true,
        |d| d.compression_type.clone(),
    ),
    k(
        "min.insync.replicas",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        false,
        |_| "1".into(),
    ),
    k("unclean.leader.election.enable", Kind::Bool, false, |_| {
        "false".into()
    }),
    k("delete.retention.ms", Kind::Long { min: 0 }, true, |_| {
        "86400000".into()
    }),
    k("file.delete.delay.ms", Kind::Long { min: 0 }, false, |_| {
        "60000".into()
    }),
    k("flush.messages", Kind::Long { min: 1 }, false, |_| {
        i64::MAX.to_string()
    }),
    k("min.compaction.lag.ms", Kind::Long { min: 0 }, true, |_| {
        "0".into()
    }),
    k("max.compaction.lag.ms", Kind::Long { min: 1 }, true, |_| {
        i64::MAX.to_string()
    }),
    k("min.cleanable.dirty.ratio", Kind::Ratio, true, |_| {
        "0.5".into()
    }),
    k("segment.jitter.ms", Kind::Long { min: 0 }, false, |_| {
        "0".into()
    }),
    k("preallocate", Kind::Bool, false, |_| "false".into()),
];

pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|c| c.name == name)
}

/// Kafka's `ConfigType` code of a known config (DescribeConfigs v3+).
pub fn config_type(c: &Known) -> i8 {
    match c.kind {
        Kind::Bool => 1,
        Kind::Choice(_) => 2,
        Kind::List(_) => 7,
        Kind::Int { .. } => 3,
        Kind::Long { .. } => 5,
        Kind::Ratio => 6,
    }
}

/// Checks one `name = value` setting; the error says what is wrong.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(c) = known(name) else {
        return Err(format!("unknown topic config `{name}`"));
    };
    let bad = |why: String| Err(format!("invalid value `{value}` for `{name}`: {why}"));
    match c.kind {
        Kind::Long { min } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("must be at least {min}")),
            Err(_) => bad("not an integer".into()),
        },
        Kind::Int { min, max } => match value.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            Ok(_) => bad(format!("must be between {min} and {max}")),
            Err(_) => bad("not an integer".into()),
        },
        Kind::Bool => match value.trim() {
            "true" | "false" => Ok(()),
            _ => bad("must be true or false".into()),
        },
        Kind::Choice(options) => {
            if options.contains(&value.trim()) {
                Ok(())
            } else {
                bad(format!("supported: {}", options.join(", ")))
            }
        }
        Kind::List(options) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().all(|i| options.contains(i)) && !value.trim().is_empty() {
                Ok(())
            } else {
                bad(format!("a comma-separated list of {}", options.join(", ")))
            }
        }
        Kind::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => bad("must be a number between 0 and 1".into()),
        },
    }
}

/// The broker-level default of a known config; `None` for an unknown name.
pub fn default_of(name: &str, d: &TopicDefaults) -> Option<String> {
    known(name).map(|c| (c.default)(d))
}

/// The broker-level default of a config known to exist (the names in
/// [`KNOWN`], or ones already validated).
pub fn default_value(name: &str, d: &TopicDefaults) -> String {
    default_of(name, d).unwrap_or_else(|| panic!("`{name}` is not a known topic config"))
}

/// Checks the broker's topic defaults the same way topic settings are checked.
pub fn validate_defaults(d: &TopicDefaults) -> Result<(), String> {
    for name in [
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "max.message.bytes",
        "flush.ms",
    ] {
        validate(name, &default_value(name, d))?;
    }
    Ok(())
}

fn get(overrides: &BTreeMap<String, String>, d: &TopicDefaults, name: &str) -> i64 {
    overrides
        .get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| default_value(name, d).parse().expect("numeric default"))
}

/// The codec a topic stores batches in: `None` keeps the producer's
/// (`producer`, the default), `Some` recompresses batches that differ.
pub fn compression(
    overrides: &BTreeMap<String, String>,
    d: &TopicDefaults,
) -> Option<rill_storage::batch::Compression> {
    use rill_storage::batch::Compression;
    let v = overrides
        .get("compression.type")
        .cloned()
        .unwrap_or_else(|| d.compression_type.clone());
    match v.trim() {
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// What `cleanup.policy` asks for: (delete by retention, compact).
pub fn cleanup_policy(overrides: &BTreeMap<String, String>) -> (bool, bool) {
    let policy = overrides
        .get("cleanup.policy")
        .map(String::as_str)
        .unwrap_or("delete");
    let has = |p: &str| policy.split(',').any(|i| i.trim() == p);
    (has("delete"), has("compact"))
}

fn get_ratio(overrides: &BTreeMap<String, String>, d: &TopicDefaults, name: &str) -> f64 {
    overrides
        .get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| default_value(name, d).parse().expect("numeric default"))
}

/// The storage settings of a partition of a topic with these overrides.
pub fn log_config(
    overrides: &BTreeMap<String, String>,
    d: &TopicDefaults,
    cache_bytes: usize,
    sizing: Option<WriteSizing>,
) -> LogConfig {
    let base = LogConfig::default();
    let (write_buffer_bytes, writes_in_flight_max) = match sizing {
        Some(s) => (s.buffer_bytes, s.writes_in_flight),
        None => (base.write_buffer_bytes, base.writes_in_flight_max),
    };
    let retention_ms = get(overrides, d, "retention.ms");
    let retention_bytes = get(overrides, d, "retention.bytes");
    let flush_ms = get(overrides, d, "flush.ms");
    let max_message = get(overrides, d, "max.message.bytes").max(0) as usize;
    let segment_bytes = get(overrides, d, "segment.bytes") as u64;
    let (delete, compact) = cleanup_policy(overrides);
    let compaction = compact.then(|| CompactionConfig {
        min_cleanable_dirty_ratio: get_ratio(overrides, d, "min.cleanable.dirty.ratio"),
        min_compaction_lag_ms: get(overrides, d, "min.compaction.lag.ms").max(0) as u64,
        max_compaction_lag_ms: get(overrides, d, "max.compaction.lag.ms").max(1) as u64,
        delete_retention_ms: get(overrides, d, "delete.retention.ms").max(0) as u64,
    });
    LogConfig {
        segment_bytes,
        segment_ms: get(overrides, d, "segment.ms") as u64,
        retention_ms: (delete && retention_ms >= 0).then_some(retention_ms as u64),
        retention_bytes: (delete && retention_bytes >= 0).then_some(retention_bytes as u64),
        compaction,
        flush: if flush_ms == 0 {
            FlushPolicy::Always
        } else {
            FlushPolicy::Interval(Duration::from_millis(flush_ms as u64))
        },
        index_interval_bytes: get(overrides, d, "index.interval.bytes") as u64,
        cache_bytes_max: cache_bytes,
        // A batch can never exceed a segment; the storage engine needs that bound.
        batch_bytes_max: max_message.min(segment_bytes as usize).max(1),
        preallocate_bytes: (32u64 << 20).min(segment_bytes),
        write_buffer_bytes,
        writes_in_flight_max,
        producer_id_expiration_ms: d.producer_id_expiration_ms,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults {
            partitions: 1,
            retention_ms: 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 20,
            segment_ms: 60_000,
            max_message_bytes: 1 << 20,
            flush_ms: 0,
            compression_type: "producer".into(),
            producer_id_expiration_ms: 86_400_000,
        }
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2")
            .unwrap_err()
            .contains("at least -1"));
        assert!(validate("segment.bytes", "abc")
            .unwrap_err()
            .contains("not an integer"));
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compact,", "shred", "compact,shred"] {
            assert!(
                validate("cleanup.policy", bad)
                    .unwrap_err()
                    .contains("list"),
                "{bad}"
            );
        }
        assert!(validate("no.such.config", "1")
            .unwrap_err()
            .contains("unknown"));
        assert!(validate("min.cleanable.dirty.ratio", "0.3").is_ok());
    }

    #[test]
    fn overrides_and_defaults_become_log_settings() {
        let mut o = BTreeMap::new();
        let c = log_config(&o, &defaults(), 100, None);
        assert_eq!(c.retention_ms, Some(1000));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.flush, FlushPolicy::Always);
        o.insert("flush.ms".to_string(), "250".to_string());
        o.insert("retention.bytes".to_string(), "5000".to_string());
        let c = log_config(&o, &defaults(), 100, None);
        assert_eq!(c.flush, FlushPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(c.retention_bytes, Some(5000));
        assert_eq!(c.compaction, None);
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        o.insert("delete.retention.ms".to_string(), "100".to_string());
        let c = log_config(&o, &defaults(), 100, None);
        assert_eq!(
            (c.retention_ms, c.retention_bytes),
            (None, None),
            "compact only: no retention"
        );
        let compaction = c.compaction.unwrap();
        assert_eq!(
            (
                compaction.delete_retention_ms,
                compaction.min_cleanable_dirty_ratio
            ),
            (100, 0.5)
        );
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let c = log_config(&o, &defaults(), 100, None);
        assert_eq!(c.retention_bytes, Some(5000));
        assert!(c.compaction.is_some());
        for known in KNOWN {
            assert!(
                validate(known.name, &default_value(known.name, &defaults())).is_ok(),
                "{}",
                known.name
            );
        }
    }
}
