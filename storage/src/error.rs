//! The storage crate's error type.

use std::io;

use crate::batch::BatchError;
use crate::producer_state::SequenceError;
use crate::scan::ScanError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The batch offered to `append` failed validation; nothing was written.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Stored data failed its check when read; it is never served.
    #[error("corrupt batch in segment {segment_base} at position {position}: {cause}")]
    Corrupt {
        segment_base: i64,
        position: u64,
        cause: ScanError,
    },
    /// Recovery found damage below the recovery point: data that was synced
    /// (and possibly acknowledged) is bad. The log refuses to open rather than
    /// truncate it; it must be repaired (from a replica) or inspected by hand.
    #[error(
        "corruption in flushed data: segment {segment_base} position {position} is below the \
         recovery point (offset {recovery_point}, position {recovery_position}): {cause}"
    )]
    CorruptFlushedData {
        segment_base: i64,
        position: u64,
        recovery_point: i64,
        recovery_position: u64,
        cause: String,
    },
    /// No space could be reserved for the append; nothing was written and the
    /// log accepts appends again once space returns.
    #[error("disk full while {context}: {source}")]
    DiskFull {
        context: &'static str,
        source: io::Error,
    },
    #[error("I/O error while {context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    /// An earlier write or fdatasync failed. After a failed fdatasync the page
    /// cache can no longer be trusted, so the log stops instead of retrying.
    #[error("log is failed after an earlier I/O error: {reason}")]
    Failed { reason: String },
    #[error("offset {offset} is not the start of a batch")]
    NotBatchBoundary { offset: i64 },
    /// A replica was offered a batch that does not start at its log end.
    #[error("batch at offset {base_offset} does not follow the log end {log_end_offset}")]
    NotContiguous {
        base_offset: i64,
        log_end_offset: i64,
    },
    /// A batch of a leader epoch older than one the log already holds.
    #[error(transparent)]
    EpochRegression(#[from] crate::leader_epochs::EpochRegression),
    #[error("log is closed")]
    Closed,
    /// An idempotent producer's batch out of turn (nothing was appended).
    #[error(transparent)]
    Sequence(#[from] SequenceError),
}

impl StorageError {
    /// Wraps an I/O error, telling a full disk apart from other failures.
    pub fn io(context: &'static str, source: impl Into<io::Error>) -> StorageError {
        let source = source.into();
        if source.kind() == io::ErrorKind::StorageFull
            || source.raw_os_error() == Some(libc_enospc())
        {
            StorageError::DiskFull { context, source }
        } else {
            StorageError::Io { context, source }
        }
    }
}

const fn libc_enospc() -> i32 {
    28
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
