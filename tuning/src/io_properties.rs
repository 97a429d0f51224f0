//! `io-properties.toml`: what the probe measured, read by the broker.
//!
//! Fields the broker uses (all optional in spirit: without the file the broker
//! runs with built-in defaults):
//! - `disk.best_write_block_bytes` → size of each aligned write buffer;
//! - `disk.best_write_queue_depth` → writes in flight per partition log.
//!
//! The rest is a record of the measurement: bandwidth by block size and queue
//! depth, fdatasync latency, CPU topology.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TuneError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub block_bytes: u64,
    pub queue_depth: u32,
    pub write_mb_s: f64,
    pub read_mb_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskProperties {
    /// Directory the probe wrote in (the device under it was measured).
    pub path: String,
    /// Best sequential O_DIRECT write bandwidth seen.
    pub write_mb_s: f64,
    /// Best sequential O_DIRECT read bandwidth seen.
    pub read_mb_s: f64,
    /// Smallest block size within 95 % of the best write bandwidth.
    pub best_write_block_bytes: u64,
    /// Smallest queue depth within 95 % of the best write bandwidth at that block size.
    pub best_write_queue_depth: u32,
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
    /// Sequential O_DIRECT writes of the largest block size, each followed
    /// by an fdatasync: the bandwidth a durable log can reach with one write
    /// per commit. Absent in files written before it was measured.
    #[serde(default)]
    pub write_synced_mb_s: Option<f64>,
    pub measurements: Vec<Measurement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuProperties {
    /// Logical CPUs this process may run on.
    pub cpus: Vec<usize>,
    /// Groups of logical CPUs sharing one physical core (SMT siblings).
    pub smt_groups: Vec<Vec<usize>>,
    pub numa_nodes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoProperties {
    pub disk: DiskProperties,
    pub cpu: CpuProperties,
}

impl IoProperties {
    pub fn write(&self, path: &Path) -> Result<(), TuneError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| TuneError::io("encoding io-properties", std::io::Error::other(e)))?;
        let header = "# Written by `rill tune probe`; read by `rill broker` to size its writes.\n";
        std::fs::write(path, format!("{header}{text}"))
            .map_err(|e| TuneError::io(format!("writing {}", path.display()), e))
    }

    pub fn read(path: &Path) -> Result<IoProperties, TuneError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TuneError::io(format!("reading {}", path.display()), e))?;
        let props: IoProperties = toml::from_str(&text).map_err(|e| TuneError::BadProperties {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let d = &props.disk;
        if d.best_write_block_bytes < 4096
            || !d.best_write_block_bytes.is_multiple_of(4096)
            || d.best_write_queue_depth == 0
        {
            return Err(TuneError::BadProperties {
                path: path.display().to_string(),
                reason: "best_write_block_bytes must be a multiple of 4096 and best_write_queue_depth at least 1".into(),
            });
        }
        Ok(props)
    }
}
