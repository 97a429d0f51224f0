//! Record batches, from the one RecordBatch v2 codec Rill has (`rill-record`):
//! the producer builds with [`BatchBuilder`], the consumer decodes fetched
//! bytes with [`decode_batches`].

pub use rill_record::{
    decode_batches, record_size_estimate, set_producer, BatchBuilder, Compression, DecodeError,
    DecodedRecord, Header, ProducerFields, TimestampType, UnknownCompression,
};

impl From<DecodeError> for crate::error::Error {
    fn from(e: DecodeError) -> Self {
        crate::error::Error::CorruptBatch {
            offset: e.offset,
            reason: e.reason,
        }
    }
}

impl From<UnknownCompression> for crate::error::Error {
    fn from(e: UnknownCompression) -> Self {
        crate::error::Error::InvalidArgument(e.to_string())
    }
}

impl From<rill_record::CodecError> for crate::error::Error {
    fn from(e: rill_record::CodecError) -> Self {
        crate::error::Error::InvalidArgument(e.to_string())
    }
}
