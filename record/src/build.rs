//! Building batches record by record straight into their final buffer, so
//! an uncompressed batch is never copied.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{self, CodecError};
use crate::header::*;
use crate::varint;

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
    producer: ProducerFields,
    control: bool,
    /// Set by [`BatchBuilder::base_timestamp`]; otherwise the first record's.
    base_timestamp_set: bool,
}

/// The producer fields of a batch header. The default (-1 everywhere) is a
/// batch from a producer without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    pub id: i64,
    pub epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
    pub transactional: bool,
}

impl Default for ProducerFields {
    fn default() -> Self {
        ProducerFields {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
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
        Some(b) => varint::len_i64(b.len() as i64) + b.len(),
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
    body + varint::len_i64(body as i64)
}

fn headers_len(headers: &[Header]) -> usize {
    headers
        .iter()
        .map(|h| varint::len_i64(h.key.len() as i64) + h.key.len() + opt_len(h.value.as_deref()))
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
            producer: ProducerFields::default(),
            control: false,
            base_timestamp_set: false,
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
        if self.count == 0 && !self.base_timestamp_set {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let delta = self.count;
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let body = 1
            + varint::len_i64(ts_delta)
            + varint::len_i64(delta as i64)
            + opt_len(key)
            + opt_len(value)
            + varint::len_i64(headers.len() as i64)
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

    /// Fixes the batch's base timestamp (before the first record); record
    /// timestamps are stored as deltas from it. By default it is the first
    /// record's timestamp.
    pub fn base_timestamp(&mut self, timestamp: i64) -> &mut Self {
        assert_eq!(self.count, 0, "the base timestamp is set before any record");
        self.base_timestamp = timestamp;
        self.base_timestamp_set = true;
        self
    }

    /// Marks the batch as an idempotent (or transactional) producer's:
    /// its producer id, epoch and the sequence number of its first record.
    pub fn producer(&mut self, producer: ProducerFields) -> &mut Self {
        self.producer = producer;
        self
    }

    /// Marks the batch as a control batch (transaction markers, leader-change
    /// records): consumers skip its records.
    pub fn control(&mut self, control: bool) -> &mut Self {
        self.control = control;
        self
    }

    /// Finishes the batch: compresses the records if asked, fills the
    /// header, computes the CRC. Panics on an empty batch.
    pub fn finish(self, compression: Compression) -> Result<Bytes, CodecError> {
        assert!(self.count > 0, "a batch holds at least one record");
        let mut buf = match compression {
            Compression::None => self.buf,
            c => {
                let body = codec::compress(c, &self.buf[HEADER_BYTES..])?;
                let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
                out.put_bytes(0, HEADER_BYTES);
                out.put_slice(&body);
                out
            }
        };
        let len = (buf.len() - LOG_OVERHEAD) as i32;
        let mut attributes = compression.attribute();
        if self.producer.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }
        let h = &mut buf[..HEADER_BYTES];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(OFF_BASE_OFFSET, &0i64.to_be_bytes());
        put(OFF_BATCH_LENGTH, &len.to_be_bytes());
        put(OFF_LEADER_EPOCH, &(-1i32).to_be_bytes());
        put(OFF_MAGIC, &[MAGIC_V2 as u8]);
        put(OFF_ATTRIBUTES, &attributes.to_be_bytes());
        put(OFF_LAST_OFFSET_DELTA, &(self.count - 1).to_be_bytes());
        put(OFF_BASE_TIMESTAMP, &self.base_timestamp.to_be_bytes());
        put(OFF_MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(OFF_PRODUCER_ID, &self.producer.id.to_be_bytes());
        put(OFF_PRODUCER_EPOCH, &self.producer.epoch.to_be_bytes());
        put(
            OFF_BASE_SEQUENCE,
            &self.producer.base_sequence.to_be_bytes(),
        );
        put(OFF_RECORD_COUNT, &self.count.to_be_bytes());
        let crc = compute_crc(&buf);
        buf[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

/// A record to encode with [`encode_uncompressed`].
#[derive(Debug, Clone, Default)]
pub struct RecordSpec<'a> {
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Encodes an uncompressed v2 batch with base offset 0, no producer id and a
/// correct CRC. Used by tests, benchmarks and tools that need real batches
/// without a Kafka client.
pub fn encode_uncompressed(base_timestamp: i64, records: &[RecordSpec<'_>]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut b = BatchBuilder::new(HEADER_BYTES + records.len() * 64);
    b.base_timestamp(base_timestamp);
    for r in records {
        let headers: Vec<Header> = r
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.to_string(),
                value: Some(Bytes::copy_from_slice(v)),
            })
            .collect();
        b.push(base_timestamp + r.timestamp_delta, r.key, r.value, &headers);
    }
    b.finish(Compression::None)
        .expect("an uncompressed batch needs no codec")
        .to_vec()
}
