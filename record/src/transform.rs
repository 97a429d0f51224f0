//! Reading into and re-encoding a whole batch: its records section
//! (decompressed), the record at a timestamp, recompression.

use std::borrow::Cow;

use crate::codec;
use crate::header::*;
use crate::validate::{check_integrity, walk_records, BatchError, DECOMPRESSED_BYTES_MAX};
use crate::varint;

/// The records section of a batch, decompressed when the batch is
/// compressed (borrowed as is when it is not).
pub fn records_section(batch: &[u8]) -> Result<Cow<'_, [u8]>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let records = batch.get(HEADER_BYTES..).unwrap_or_default();
    Ok(match header.compression()? {
        Compression::None => Cow::Borrowed(records),
        c => Cow::Owned(codec::decompress(c, records, DECOMPRESSED_BYTES_MAX)?),
    })
}

/// The first record of a batch whose timestamp is at or after `timestamp`,
/// as (offset, timestamp), for every codec (compressed records are
/// decompressed). With LogAppendTime every record carries the batch's max
/// timestamp. `None` when no record qualifies or the records do not decode.
pub fn first_record_at_or_after(batch: &[u8], timestamp: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
        return (header.max_timestamp >= timestamp)
            .then_some((header.base_offset, header.max_timestamp));
    }
    let section = records_section(batch).ok()?;
    let mut records: &[u8] = &section;
    for _ in 0..header.record_count {
        let (len, used) = varint::read_i32(records)?;
        records = records.get(used..)?;
        let body = records.get(..usize::try_from(len).ok()?)?;
        let (ts_delta, used_ts) = varint::read_i64(body.get(1..)?)?;
        let (offset_delta, _) = varint::read_i32(body.get(1 + used_ts..)?)?;
        let ts = header.base_timestamp.wrapping_add(ts_delta);
        if ts >= timestamp {
            return Some((header.base_offset.wrapping_add(offset_delta as i64), ts));
        }
        records = &records[len as usize..];
    }
    None
}

/// The same batch with its records compressed by `to` instead: records,
/// offsets, timestamps and producer fields unchanged, the attributes' codec
/// bits, the length and the CRC rewritten. The records are checked as
/// [`validate`] checks uncompressed ones. This is the one place the broker
/// re-encodes a batch: a topic whose `compression.type` names a codec.
pub fn recompress(batch: &[u8], to: Compression) -> Result<Vec<u8>, BatchError> {
    let header = check_integrity(batch)?;
    let section = records_section(batch)?;
    walk_records(&section, header.record_count)?;
    let body = codec::compress(to, &section)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !ATTR_COMPRESSION) | to.attribute();
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}
