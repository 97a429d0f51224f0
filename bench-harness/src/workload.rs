//! Workload files: what to produce and consume, how fast, for how long.

use std::path::Path;
use std::time::Duration;

use rand::Rng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Message sizes in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageSize {
    Fixed(usize),
    Distribution(SizeDistribution),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase")]
pub enum SizeDistribution {
    Uniform {
        min: usize,
        max: usize,
    },
    /// Normal around `mean`, clamped to [min, max].
    Normal {
        mean: f64,
        stddev: f64,
        min: usize,
        max: usize,
    },
}

/// Record keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    /// "none": keyless records (sticky partitioning).
    None(String),
    Distribution(KeyDistribution),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase")]
pub enum KeyDistribution {
    Uniform { count: u64 },
    Zipf { count: u64, exponent: f64 },
}

/// Messages per second over all producers, "max", or "max*F": a fraction of
/// the maximum, measured by a short max-rate calibration run of the same
/// workload first (so "half of max throughput" means that on any machine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rate {
    Max(String),
    Fixed(f64),
}

impl Rate {
    /// Messages per second, None for as fast as possible (or not yet
    /// calibrated).
    pub fn per_second(&self) -> Option<f64> {
        match self {
            Rate::Max(_) => None,
            Rate::Fixed(r) => Some(*r),
        }
    }

    /// F of "max*F".
    pub fn fraction_of_max(&self) -> Option<f64> {
        match self {
            Rate::Max(s) => s.strip_prefix("max*").and_then(|f| f.trim().parse().ok()),
            Rate::Fixed(_) => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "one")]
    pub topics: u32,
    pub partitions_per_topic: i32,
    pub message_size: MessageSize,
    #[serde(default = "no_keys")]
    pub keys: Keys,
    /// Producer tasks (over all topics).
    #[serde(default = "one")]
    pub producers: u32,
    /// Independent subscriptions, each reading everything (pub-sub). Within
    /// one, partitions are split among its consumers (queue).
    #[serde(default = "one")]
    pub subscriptions: u32,
    /// Consumer tasks per subscription.
    #[serde(default = "one")]
    pub consumers_per_subscription: u32,
    /// How a subscription's consumers share its partitions: `consumer` — a
    /// consumer group on the KIP-848 protocol (the broker assigns), as
    /// applications consume; `classic` — a group on the classic protocol
    /// (the client-side range assignor); `none` — no group, the harness
    /// splits the partitions itself (no coordinator, no commits).
    #[serde(default = "consumer_protocol")]
    pub group_protocol: String,
    pub rate: Rate,
    #[serde(default = "acks_all")]
    pub acks: String,
    /// Idempotent producers (the client's default; takes effect with acks=all).
    #[serde(default = "idempotence_on")]
    pub idempotence: bool,
    #[serde(default = "no_compression")]
    pub compression: String,
    #[serde(default = "linger")]
    pub linger_ms: u64,
    #[serde(default = "batch")]
    pub batch_size: usize,
    #[serde(default = "warmup")]
    pub warmup_secs: u64,
    pub duration_secs: u64,
    /// Stop producing after this many messages (in the measured phase).
    #[serde(default)]
    pub max_messages: Option<u64>,
    /// Consumer fetch limits: bytes per partition and per response. One
    /// fetch per broker is in flight, so these bound how fast one consumer
    /// can follow a partition (4 MiB trailed a saturated partition here;
    /// 8 MiB kept up).
    #[serde(default = "partition_fetch")]
    pub fetch_partition_bytes: i32,
    #[serde(default = "response_fetch")]
    pub fetch_response_bytes: i32,
    /// Catch-up consumption: the producers write first (warm-up and
    /// measured phase, or `max_messages`), and only then do the consumers
    /// start, from the beginning, reading the backlog as fast as they can.
    /// Consume throughput is then the whole backlog over the time it took;
    /// end-to-end latency (the backlog's age) is not recorded.
    #[serde(default)]
    pub catch_up: bool,
}

fn partition_fetch() -> i32 {
    8 << 20
}
fn response_fetch() -> i32 {
    16 << 20
}

fn one() -> u32 {
    1
}
fn consumer_protocol() -> String {
    "consumer".into()
}
fn no_keys() -> Keys {
    Keys::None("none".into())
}
fn idempotence_on() -> bool {
    true
}
fn acks_all() -> String {
    "all".into()
}
fn no_compression() -> String {
    "none".into()
}
fn linger() -> u64 {
    5
}
fn batch() -> usize {
    512 << 10
}
fn warmup() -> u64 {
    5
}

impl Workload {
    pub fn load(path: &Path) -> Result<Workload, WorkloadError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: p.clone(),
            source,
        })?;
        Workload::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Workload, WorkloadError> {
        let w: Workload = toml::from_str(text).map_err(|source| WorkloadError::Parse {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        w.validate().map_err(|reason| WorkloadError::Invalid {
            path: path.to_string(),
            reason,
        })?;
        Ok(w)
    }

    fn validate(&self) -> Result<(), String> {
        if self.topics == 0 || self.partitions_per_topic < 1 {
            return Err("topics and partitions_per_topic must be at least 1".into());
        }
        if self.fetch_partition_bytes < 1024
            || self.fetch_response_bytes < self.fetch_partition_bytes
        {
            return Err(
                "fetch_partition_bytes must be at least 1024 and at most fetch_response_bytes"
                    .into(),
            );
        }
        if self.producers == 0 {
            return Err("producers must be at least 1".into());
        }
        if !["consumer", "classic", "none"].contains(&self.group_protocol.as_str()) {
            return Err(format!(
                "group_protocol = {:?}: use \"consumer\", \"classic\" or \"none\"",
                self.group_protocol
            ));
        }
        if self.duration_secs == 0 || self.duration_secs > 24 * 3600 {
            return Err("duration_secs must be between 1 and 86400".into());
        }
        let (min, max) = self.size_bounds();
        if min < 8 || max > 16 << 20 || min > max {
            return Err(
                "message sizes must lie in 8 B ..= 16 MiB (8 bytes carry the send time)".into(),
            );
        }
        match &self.keys {
            Keys::None(s) if s == "none" => {}
            Keys::None(s) => return Err(format!("keys = {s:?}: use \"none\" or a distribution")),
            Keys::Distribution(KeyDistribution::Uniform { count })
            | Keys::Distribution(KeyDistribution::Zipf { count, .. })
                if *count == 0 =>
            {
                return Err("a key distribution needs count >= 1".into())
            }
            Keys::Distribution(KeyDistribution::Zipf { exponent, .. }) if *exponent <= 0.0 => {
                return Err("zipf exponent must be positive".into())
            }
            _ => {}
        }
        match &self.rate {
            Rate::Max(s) if s == "max" => {}
            Rate::Max(s) => match self.rate.fraction_of_max() {
                Some(f) if f > 0.0 && f <= 1.0 => {}
                _ => {
                    return Err(format!(
                        "rate = {s:?}: use \"max\", \"max*F\" (0 < F <= 1) or messages per second"
                    ))
                }
            },
            Rate::Fixed(r) if *r <= 0.0 => return Err("rate must be positive".into()),
            _ => {}
        }
        self.acks
            .parse::<rill_client::Acks>()
            .map_err(|e| e.to_string())?;
        self.compression
            .parse::<rill_client::Compression>()
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Smallest and largest message size.
    /// What the report says of the consumers.
    pub fn consumers_description(&self) -> String {
        let how = match self.group_protocol.as_str() {
            "consumer" => "a consumer group each, KIP-848 consumer protocol (uniform assignor)",
            "classic" => "a consumer group each, classic protocol (range assignor)",
            _ => "partitions split by the harness, no group",
        };
        format!(
            "{} subscription(s) × {} consumer(s): {how}",
            self.subscriptions, self.consumers_per_subscription
        )
    }

    pub fn size_bounds(&self) -> (usize, usize) {
        match &self.message_size {
            MessageSize::Fixed(n) => (*n, *n),
            MessageSize::Distribution(SizeDistribution::Uniform { min, max })
            | MessageSize::Distribution(SizeDistribution::Normal { min, max, .. }) => (*min, *max),
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_secs)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    pub fn topic_names(&self, prefix: &str) -> Vec<String> {
        (0..self.topics)
            .map(|i| format!("{prefix}-{}-{i}", self.name))
            .collect()
    }
}

/// Draws message sizes and keys for one producer task.
pub struct Sampler {
    size: MessageSize,
    normal: Option<rand_distr::Normal<f64>>,
    keys: Option<KeySampler>,
    rng: rand::rngs::SmallRng,
}

enum KeySampler {
    Uniform(u64),
    Zipf(rand_distr::Zipf<f64>),
}

impl Sampler {
    pub fn new(w: &Workload, seed: u64) -> Sampler {
        use rand::SeedableRng;
        let normal = match &w.message_size {
            MessageSize::Distribution(SizeDistribution::Normal { mean, stddev, .. }) => {
                rand_distr::Normal::new(*mean, *stddev).ok()
            }
            _ => None,
        };
        let keys = match &w.keys {
            Keys::None(_) => None,
            Keys::Distribution(KeyDistribution::Uniform { count }) => {
                Some(KeySampler::Uniform(*count))
            }
            Keys::Distribution(KeyDistribution::Zipf { count, exponent }) => {
                rand_distr::Zipf::new(*count, *exponent)
                    .ok()
                    .map(KeySampler::Zipf)
            }
        };
        Sampler {
            size: w.message_size.clone(),
            normal,
            keys,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        }
    }

    pub fn size(&mut self) -> usize {
        match &self.size {
            MessageSize::Fixed(n) => *n,
            MessageSize::Distribution(SizeDistribution::Uniform { min, max }) => {
                self.rng.gen_range(*min..=*max)
            }
            MessageSize::Distribution(SizeDistribution::Normal { min, max, .. }) => {
                let v = self
                    .normal
                    .expect("built with the distribution")
                    .sample(&mut self.rng);
                (v.round().max(0.0) as usize).clamp(*min, *max)
            }
        }
    }

    /// A key index, or None for keyless records.
    pub fn key(&mut self) -> Option<u64> {
        match &self.keys {
            None => None,
            Some(KeySampler::Uniform(n)) => Some(self.rng.gen_range(0..*n)),
            Some(KeySampler::Zipf(z)) => Some(z.sample(&mut self.rng) as u64 - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_workload_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let w = Workload::load(&path).unwrap();
            assert_eq!(
                path.file_stem().unwrap().to_str().unwrap(),
                w.name,
                "file name and workload name agree"
            );
            names.push(w.name);
        }
        names.sort();
        for required in [
            "fanout-4-consumers",
            "latency-1kb-fixed-rate",
            "many-partitions-1000",
            "many-partitions-10000",
            "max-throughput-1kb-16p",
            "max-throughput-1kb-1p",
            "max-throughput-1kb-1p-acks1",
            "small-100b-1p",
            "small-100b-16p",
            "catch-up-1kb-1p",
            "unloaded-1kb",
        ] {
            assert!(names.iter().any(|n| n == required), "{required} missing");
        }
    }

    #[test]
    fn distributions_and_errors() {
        let w = Workload::parse(
            r#"
            name = "t"
            partitions_per_topic = 4
            message_size = { distribution = "uniform", min = 100, max = 200 }
            keys = { distribution = "zipf", count = 100, exponent = 1.1 }
            rate = 5000
            duration_secs = 10
            "#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(w.rate.per_second(), Some(5000.0));
        let mut s = Sampler::new(&w, 7);
        let mut low_keys = 0;
        for _ in 0..10_000 {
            let n = s.size();
            assert!((100..=200).contains(&n));
            let k = s.key().unwrap();
            assert!(k < 100);
            if k < 10 {
                low_keys += 1;
            }
        }
        assert!(low_keys > 5_000, "zipf favours the first keys: {low_keys}");
        let bad = Workload::parse(
            "name='x'\npartitions_per_topic=1\nmessage_size=4\nrate='max'\nduration_secs=1",
            "x.toml",
        );
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("8 bytes carry the send time"));
        let bad = Workload::parse(
            "name='x'\npartitions_per_topic=1\nmessage_size=100\nrate='fast'\nduration_secs=1",
            "x.toml",
        );
        assert!(bad.is_err());
        let half = Workload::parse(
            "name='x'\npartitions_per_topic=1\nmessage_size=100\nrate='max*0.5'\nduration_secs=1",
            "x.toml",
        )
        .unwrap();
        assert_eq!(half.rate.fraction_of_max(), Some(0.5));
        assert_eq!(half.rate.per_second(), None);
        assert!(Workload::parse(
            "name='x'\npartitions_per_topic=1\nmessage_size=100\nrate='max*2'\nduration_secs=1",
            "x.toml",
        )
        .is_err());
    }
}
