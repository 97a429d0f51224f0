//! The broker library's errors. Binaries wrap them in `anyhow`; the library
//! returns these so an embedding application can tell them apart.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A setting that cannot be used, with what is wrong with it.
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A file the broker wrote or was given that does not parse.
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(transparent)]
    Tune(#[from] rill_tuning::TuneError),
    #[error("starting shard {shard} on CPU {cpu}: {reason}")]
    StartShard {
        shard: usize,
        cpu: usize,
        reason: String,
    },
    #[error("shard {0} stopped abnormally (it panicked)")]
    ShardFailed(usize),
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

impl BrokerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> BrokerError {
        BrokerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds what was being done to an I/O error.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| BrokerError::io(what(), e))
    }
}
