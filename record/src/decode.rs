//! Decoding fetched batches (CRC-32C checked, decompressed) into records
//! that share the fetched bytes.

use bytes::Bytes;

use crate::build::Header;
use crate::codec;
use crate::header::*;
use crate::validate::{check_integrity, DECOMPRESSED_BYTES_MAX};
use crate::varint;

/// Whether the record timestamp was set by the producer or the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// One record of a fetched batch. Key, value and header values share the
/// fetched bytes when the batch was not compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A fetched batch that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record batch at offset {offset}: {reason}")]
pub struct DecodeError {
    /// The batch's base offset.
    pub offset: i64,
    pub reason: String,
}

fn read_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let (v, used) = varint::read_i64(buf.get(*at..)?)?;
    *at += used;
    Some(v)
}

fn read_opt(data: &Bytes, at: &mut usize) -> Option<Option<Bytes>> {
    let len = read_varint(data, at)?;
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    if end > data.len() {
        return None;
    }
    let b = data.slice(*at..end);
    *at = end;
    Some(Some(b))
}

/// Decodes the whole batches in `data` (a fetch response's records; a
/// trailing partial batch is ignored), appending records with offset ≥
/// `from` to `out`. Returns the offset after the last batch seen, so the
/// caller can move past batches that held no wanted record (control batches,
/// compacted ones).
pub fn decode_batches(
    data: &Bytes,
    from: i64,
    out: &mut Vec<DecodedRecord>,
) -> Result<Option<i64>, DecodeError> {
    let mut at = 0usize;
    let mut next = None;
    while data.len() - at >= HEADER_BYTES {
        let Some(total) = peek_total_len(&data[at..]) else {
            break;
        };
        let base = i64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let corrupt = |reason: String| DecodeError {
            offset: base,
            reason,
        };
        if total < HEADER_BYTES as i64 {
            return Err(corrupt(format!("batch length {} is too small", total - 12)));
        }
        let total = total as usize;
        if data.len() - at < total {
            break; // the response's size limit cut this batch
        }
        let batch = data.slice(at..at + total);
        at += total;
        let h = check_integrity(&batch).map_err(|e| corrupt(e.to_string()))?;
        next = Some(h.next_offset());
        if h.is_control() || h.last_offset() < from {
            continue;
        }
        let compression = h.compression().map_err(|e| corrupt(e.to_string()))?;
        let records = match compression {
            Compression::None => batch.slice(HEADER_BYTES..),
            c => Bytes::from(
                codec::decompress(c, &batch[HEADER_BYTES..], DECOMPRESSED_BYTES_MAX)
                    .map_err(|e| corrupt(e.to_string()))?,
            ),
        };
        let log_append = h.is_log_append_time();
        let (count, base_ts, max_ts) = (h.record_count, h.base_timestamp, h.max_timestamp);
        let mut pos = 0usize;
        for i in 0..count {
            let bad = || corrupt(format!("record {i} is malformed"));
            let rec_len = read_varint(&records, &mut pos).ok_or_else(bad)?;
            let end = pos
                .checked_add(usize::try_from(rec_len).map_err(|_| bad())?)
                .filter(|&e| e <= records.len())
                .ok_or_else(bad)?;
            pos += 1; // attributes
            let ts_delta = read_varint(&records, &mut pos).ok_or_else(bad)?;
            let off_delta = read_varint(&records, &mut pos).ok_or_else(bad)?;
            let key = read_opt(&records, &mut pos).ok_or_else(bad)?;
            let value = read_opt(&records, &mut pos).ok_or_else(bad)?;
            let n_headers = read_varint(&records, &mut pos).ok_or_else(bad)?;
            let mut headers = Vec::new();
            for _ in 0..n_headers.max(0) {
                let k = read_opt(&records, &mut pos)
                    .ok_or_else(bad)?
                    .unwrap_or_default();
                let v = read_opt(&records, &mut pos).ok_or_else(bad)?;
                headers.push(Header {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    value: v,
                });
            }
            if pos != end {
                return Err(bad());
            }
            let offset = base.wrapping_add(off_delta);
            if offset < from {
                continue;
            }
            out.push(DecodedRecord {
                offset,
                timestamp: if log_append {
                    max_ts
                } else {
                    base_ts.wrapping_add(ts_delta)
                },
                timestamp_type: if log_append {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                },
                key,
                value,
                headers,
            });
        }
    }
    Ok(next)
}
