//! Storage outcomes as Kafka error codes: the one place they are mapped.

use rill_net::kafka_protocol::ResponseError;
use rill_storage::batch::{BatchError, CodecError};
use rill_storage::producer_state::SequenceError;
use rill_storage::StorageError;

pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::InvalidBatch(BatchError::TooLarge { .. })
        | StorageError::InvalidBatch(BatchError::Codec(CodecError::TooLarge { .. })) => {
            ResponseError::MessageTooLarge
        }
        StorageError::InvalidBatch(BatchError::Codec(CodecError::Compress { .. })) => {
            ResponseError::KafkaStorageError
        }
        StorageError::InvalidBatch(_) => ResponseError::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Corrupt { .. } => ResponseError::CorruptMessage,
        // The partition is being closed or moved: clients refresh metadata and retry.
        StorageError::Closed => ResponseError::NotLeaderOrFollower,
        StorageError::NotBatchBoundary { .. } | StorageError::NotContiguous { .. } => {
            ResponseError::InvalidRequest
        }
        // A batch of a leader epoch older than the log's newest: its sender
        // was deposed.
        StorageError::EpochRegression(_) => ResponseError::FencedLeaderEpoch,
        StorageError::Sequence(SequenceError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        StorageError::Sequence(SequenceError::StaleEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        StorageError::Sequence(SequenceError::Invalid { .. }) => ResponseError::InvalidRecord,
        StorageError::CorruptFlushedData { .. }
        | StorageError::DiskFull { .. }
        | StorageError::Io { .. }
        | StorageError::Failed { .. } => ResponseError::KafkaStorageError,
    }
}

/// The code of a result: 0 for success.
pub fn code(e: Option<ResponseError>) -> i16 {
    e.map(|e| e.code()).unwrap_or(0)
}
