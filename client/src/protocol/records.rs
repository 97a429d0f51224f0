//! Kafka RecordBatch v2: building batches record by record straight into
//! their final buffer, and decoding fetched batches (CRC-32C checked,
//! decompressed) into records that share the fetched bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor};

use crate::error::{Error, Result};

/// Bytes of the v2 batch header, up to the first record.
pub const HEADER_BYTES: usize = 61;
const OFF_LENGTH: usize = 8;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_CONTROL: i16 = 0x20;

/// A batch codec. The broker stores batches as they arrive, so consumers
/// decompress what producers compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    fn from_attribute(a: i16) -> Option<Compression> {
        Some(match a & ATTR_COMPRESSION {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown compression {s:?} (none, gzip, snappy, lz4, zstd)"
                )))
            }
        })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// Builds one batch: records are encoded into the buffer that becomes the
/// batch, so an uncompressed batch is never copied.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn opt_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn put_opt(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// The encoded size of one record with these fields (an upper bound of what
/// it adds to an uncompressed batch, exact for offset/timestamp deltas that
/// fit the estimate).
pub fn record_size_estimate(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let body = 1 + 10 + 5 + opt_len(key) + opt_len(value) + 5 + headers_len(headers);
    body + varint_len(body as i64)
}

fn headers_len(headers: &[Header]) -> usize {
    headers
        .iter()
        .map(|h| varint_len(h.key.len() as i64) + h.key.len() + opt_len(h.value.as_deref()))
        .sum()
}

impl BatchBuilder {
    pub fn new(capacity: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_BYTES + 64));
        buf.put_bytes(0, HEADER_BYTES);
        BatchBuilder {
            buf,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            count: 0,
        }
    }

    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Bytes the batch holds so far (uncompressed).
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record; returns its offset delta within the batch.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> i32 {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let delta = self.count;
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let body = 1
            + varint_len(ts_delta)
            + varint_len(delta as i64)
            + opt_len(key)
            + opt_len(value)
            + varint_len(headers.len() as i64)
            + headers_len(headers);
        let buf = &mut self.buf;
        buf.reserve(body + 5);
        put_varint(buf, body as i64);
        buf.put_u8(0); // record attributes
        put_varint(buf, ts_delta);
        put_varint(buf, delta as i64);
        put_opt(buf, key);
        put_opt(buf, value);
        put_varint(buf, headers.len() as i64);
        for h in headers {
            put_varint(buf, h.key.len() as i64);
            buf.put_slice(h.key.as_bytes());
            put_opt(buf, h.value.as_deref());
        }
        self.count += 1;
        delta
    }

    /// Finishes the batch: compresses the records if asked, fills the
    /// header, computes the CRC. Panics on an empty batch.
    pub fn finish(self, compression: Compression) -> Result<Bytes> {
        assert!(self.count > 0, "a batch holds at least one record");
        let mut buf = match compression {
            Compression::None => self.buf,
            c => {
                let records = &self.buf[HEADER_BYTES..];
                let mut out = BytesMut::with_capacity(HEADER_BYTES + records.len() / 2 + 64);
                out.put_bytes(0, HEADER_BYTES);
                let put = |b: &mut BytesMut| {
                    b.put_slice(records);
                    Ok(())
                };
                use kafka_protocol::compression as kc;
                let r = match c {
                    Compression::Gzip => kc::Gzip::compress(&mut out, put),
                    Compression::Snappy => kc::Snappy::compress(&mut out, put),
                    Compression::Lz4 => kc::Lz4::compress(&mut out, put),
                    Compression::Zstd => kc::Zstd::compress(&mut out, put),
                    Compression::None => unreachable!(),
                };
                r.map_err(|e| Error::InvalidArgument(format!("{c} compression failed: {e}")))?;
                out
            }
        };
        let len = (buf.len() - 12) as i32;
        let h = &mut buf[..HEADER_BYTES];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        h[OFF_MAGIC] = 2;
        h[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2]
            .copy_from_slice(&compression.attribute().to_be_bytes());
        h[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id
        h[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        h[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence
        h[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[OFF_ATTRIBUTES..]);
        buf[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

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

fn read_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn read_opt(data: &Bytes, at: &mut usize) -> Option<Option<Bytes>> {
    let len = read_varint(data, at)?;
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(len as usize)?;
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
) -> Result<Option<i64>> {
    let mut at = 0usize;
    let mut next = None;
    while data.len() - at >= HEADER_BYTES {
        let h = &data[at..];
        let base = i64::from_be_bytes(h[0..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(h[OFF_LENGTH..OFF_LENGTH + 4].try_into().expect("4"));
        let corrupt = |reason: String| Error::CorruptBatch {
            offset: base,
            reason,
        };
        if len < (HEADER_BYTES - 12) as i32 {
            return Err(corrupt(format!("batch length {len} is too small")));
        }
        let total = len as usize + 12;
        if data.len() - at < total {
            break; // the response's size limit cut this batch
        }
        let batch = data.slice(at..at + total);
        at += total;
        if batch[OFF_MAGIC] != 2 {
            return Err(corrupt(format!(
                "message format v{} is not supported (only v2)",
                batch[OFF_MAGIC]
            )));
        }
        let crc = u32::from_be_bytes(batch[OFF_CRC..OFF_CRC + 4].try_into().expect("4"));
        let actual = crc32c::crc32c(&batch[OFF_ATTRIBUTES..]);
        if crc != actual {
            return Err(corrupt(format!(
                "CRC-32C mismatch: header {crc:#010x}, data {actual:#010x}"
            )));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4"));
        let base_ts = i64::from_be_bytes(batch[27..35].try_into().expect("8"));
        let max_ts = i64::from_be_bytes(batch[35..43].try_into().expect("8"));
        let count = i32::from_be_bytes(batch[57..61].try_into().expect("4"));
        next = Some(base + last_delta as i64 + 1);
        if attributes & ATTR_CONTROL != 0 || base + (last_delta as i64) < from {
            continue;
        }
        let compression = Compression::from_attribute(attributes)
            .ok_or_else(|| corrupt(format!("unknown compression in attributes {attributes:#x}")))?;
        let records = decompress(compression, batch.slice(HEADER_BYTES..))
            .map_err(|e| corrupt(format!("{compression} decompression failed: {e}")))?;
        let log_append = attributes & ATTR_LOG_APPEND_TIME != 0;
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
            let offset = base + off_delta;
            if offset < from {
                continue;
            }
            out.push(DecodedRecord {
                offset,
                timestamp: if log_append {
                    max_ts
                } else {
                    base_ts + ts_delta
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

fn decompress(c: Compression, mut data: Bytes) -> std::result::Result<Bytes, String> {
    use bytes::Buf;
    use kafka_protocol::compression as kc;
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let r = match c {
        Compression::None => return Ok(data),
        Compression::Gzip => kc::Gzip::decompress(&mut data, take),
        Compression::Snappy => kc::Snappy::decompress(&mut data, take),
        Compression::Lz4 => kc::Lz4::decompress(&mut data, take),
        Compression::Zstd => kc::Zstd::decompress(&mut data, take),
    };
    r.map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(c: Compression, n: usize) -> Bytes {
        let mut b = BatchBuilder::new(1024);
        for i in 0..n {
            let key = format!("k{i}");
            let value = format!("value {i} {}", "x".repeat(i % 50));
            let headers = [Header {
                key: "h".into(),
                value: Some(Bytes::from(format!("{i}"))),
            }];
            b.push(
                1_000 + i as i64,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &headers,
            );
        }
        b.finish(c).unwrap()
    }

    #[test]
    fn every_codec_round_trips() {
        for c in Compression::ALL {
            let batch = build(c, 100);
            let mut out = Vec::new();
            let next = decode_batches(&batch, 0, &mut out).unwrap();
            assert_eq!(next, Some(100), "{c}");
            assert_eq!(out.len(), 100, "{c}");
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.timestamp, 1_000 + i as i64);
                assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(
                    r.headers[0].value.as_deref(),
                    Some(format!("{i}").as_bytes())
                );
            }
        }
    }

    #[test]
    fn batches_decode_with_the_kafka_protocol_crate() {
        use kafka_protocol::records::RecordBatchDecoder;
        for c in Compression::ALL {
            let mut batch = build(c, 10);
            let set = RecordBatchDecoder::decode(&mut batch).unwrap();
            assert_eq!(set.records.len(), 10, "{c}");
            assert_eq!(set.records[3].key.as_deref(), Some(&b"k3"[..]));
            assert_eq!(set.records[3].timestamp, 1_003);
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_and_a_cut_batch_is_left_for_later() {
        let batch = build(Compression::None, 5);
        let mut bad = BytesMut::from(&batch[..]);
        bad[70] ^= 1;
        let err = decode_batches(&bad.freeze(), 0, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::CorruptBatch { .. }), "{err}");
        let cut = batch.slice(..batch.len() - 1);
        let mut out = Vec::new();
        assert_eq!(decode_batches(&cut, 0, &mut out).unwrap(), None);
        assert!(out.is_empty());
    }

    #[test]
    fn records_before_the_position_are_skipped() {
        let batch = build(Compression::Lz4, 10);
        let mut out = Vec::new();
        decode_batches(&batch, 7, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn the_size_estimate_bounds_the_encoded_record() {
        let mut b = BatchBuilder::new(0);
        let headers = [Header {
            key: "trace".into(),
            value: None,
        }];
        let before = b.size();
        b.push(5, Some(b"key"), Some(&[7u8; 300]), &headers);
        assert!(
            b.size() - before <= record_size_estimate(Some(b"key"), Some(&[7u8; 300]), &headers)
        );
    }
}
