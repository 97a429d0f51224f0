//! Host probe and tuner (`rill tune`).
//!
//! - [`probe`]: measures the device under a data directory with `O_DIRECT`
//!   writes and reads through io_uring, by block size and queue depth, plus
//!   fdatasync latency and the CPU topology, and writes [`IoProperties`]
//!   (`io-properties.toml`), which the broker reads to size its writes.
//! - [`check`]: the host settings that matter for a broker, each with its
//!   current value, the recommended one and why.
//! - [`apply`]: changes the settings it can (as root), printing each change
//!   first; a dry run unless told `--yes`.

pub mod apply;
pub mod check;
pub mod io_properties;
pub mod probe;
pub mod topology;

pub use io_properties::IoProperties;

/// Errors of the tuning tools.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("bad io-properties file {path}: {reason}")]
    BadProperties { path: String, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] rill_storage::StorageError),
}

impl TuneError {
    pub fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> TuneError {
        TuneError::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}
