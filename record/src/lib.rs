//! Kafka RecordBatch v2, the unit of data everywhere in Rill — one
//! runtime-free home for the format, used by the storage engine, the broker
//! and the client alike.
//!
//! - [`header`]: the fixed 61-byte header ([`BatchHeader`]), the codec in
//!   its attributes ([`Compression`]), and the two fields the broker patches
//!   in place because the CRC does not cover them (`baseOffset`,
//!   `partitionLeaderEpoch`).
//! - [`validate`]: full validation of a produced batch (length, magic,
//!   CRC-32C, record count, offset deltas, records walked) and the integrity
//!   check for bytes accepted once.
//! - [`build`]: [`BatchBuilder`] encodes records straight into the buffer
//!   that becomes the batch, with producer id / epoch / sequence and control
//!   flags.
//! - [`decode`]: [`decode_batches`] turns fetched bytes into records sharing
//!   those bytes.
//! - [`codec`]: gzip, snappy, lz4 and zstd, decompression bounded.
//! - [`compact`]: records' keys, and a batch with some records left out
//!   (log compaction), offsets and producer fields kept.
//! - [`transform`]: a batch's records section, the record at a timestamp,
//!   recompression into another codec.
//!
//! ```
//! use rill_record::{decode_batches, validate, BatchBuilder, Compression, Header};
//!
//! let mut b = BatchBuilder::new(1024);
//! b.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
//! b.push(1_700_000_000_005, None, Some(b"second"), &[Header { key: "h".into(), value: None }]);
//! let batch = b.finish(Compression::Lz4).unwrap();
//! let header = validate(&batch, 1 << 20).unwrap();
//! assert_eq!((header.record_count, header.compression().unwrap()), (2, Compression::Lz4));
//!
//! let mut records = Vec::new();
//! let next = decode_batches(&batch, 0, &mut records).unwrap();
//! assert_eq!(next, Some(2));
//! assert_eq!(records[1].value.as_deref(), Some(&b"second"[..]));
//! ```

pub mod build;
pub mod codec;
pub mod compact;
pub mod decode;
pub mod header;
pub mod transform;
pub mod validate;
pub mod varint;

pub use build::{
    encode_uncompressed, record_size_estimate, BatchBuilder, Header, ProducerFields, RecordSpec,
};
pub use codec::CodecError;
pub use decode::{decode_batches, DecodeError, DecodedRecord, TimestampType};
pub use header::{
    compute_crc, increment_sequence, peek_total_len, set_base_offset, set_leader_epoch,
    set_producer, BatchHeader, Compression, UnknownCompression, HEADER_BYTES, LOG_OVERHEAD,
    MAGIC_V2,
};
pub use transform::{first_record_at_or_after, recompress, records_section};
pub use validate::{check_integrity, validate, BatchError, DECOMPRESSED_BYTES_MAX};

/// The wall clock as Kafka timestamps: milliseconds since the Unix epoch
/// (0 if the clock reads before it). The one definition storage, broker and
/// client share.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
