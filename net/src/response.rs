//! Encoding responses: size prefix, header (v0 or flexible v1 by API and
//! version), body — as a [`ResponseFrame`] of parts, so the record data of
//! a Fetch answer is sent from the `Bytes` it was read into instead of being
//! copied into the response buffer.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// A whole response frame, size prefix included, in parts to be written one
/// after another: encoded fields, and record data as it was stored.
#[derive(Debug, Clone, Default)]
pub struct ResponseFrame {
    parts: Vec<Bytes>,
}

impl ResponseFrame {
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Bytes in the frame, size prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The frame as one buffer (a copy when it has several parts).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len());
                for p in parts {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }
}

/// Record data at least this large is sent from its own `Bytes`; smaller
/// data is cheaper to copy than to send as a separate part.
const SPLICE_MIN: usize = 16 << 10;

/// A `ByteBufMut` that copies what the encoder writes, except the record
/// data it was told about (`spliced`, in encoding order, recognised by
/// address and length), which it keeps as references. kafka-protocol writes message fields in
/// order and seeks only forward (gaps are used by its compressors, not by
/// messages), so nothing ever goes back into a finished part.
struct SplicingBuf {
    parts: Vec<Bytes>,
    head: BytesMut,
    /// Bytes in `parts`.
    done: usize,
    spliced: std::collections::VecDeque<Bytes>,
}

impl SplicingBuf {
    fn new(spliced: Vec<Bytes>, capacity: usize) -> SplicingBuf {
        SplicingBuf {
            parts: Vec::new(),
            head: BytesMut::with_capacity(capacity),
            done: 0,
            spliced: spliced.into(),
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.parts.push(self.head.freeze());
        }
        self.parts
    }
}

// SAFETY: every method forwards to `head`, a `BytesMut`, whose
// implementation upholds BufMut's contract.
unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which
        // is `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }
    fn put_slice(&mut self, src: &[u8]) {
        // The records come in the order they were collected in.
        let next = self.spliced.front();
        if next.is_some_and(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len()) {
            let b = self.spliced.pop_front().expect("checked");
            let head = self.head.split().freeze();
            self.done += head.len() + b.len();
            if !head.is_empty() {
                self.parts.push(head);
            }
            self.parts.push(b);
            return;
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.done + self.head.len()
    }
    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done, "seeking back into a finished part");
        self.head.resize(offset - self.done, 0);
    }
    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done, "writing back into a finished part");
        &mut self.head[r.start - self.done..r.end - self.done]
    }
}

/// The record data of a Fetch answer, to send without copying.
fn fetch_records(body: &ResponseKind) -> Vec<Bytes> {
    match body {
        ResponseKind::Fetch(f) => f
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .filter(|r| r.len() >= SPLICE_MIN)
            .collect(),
        _ => Vec::new(),
    }
}

/// Encodes a whole response frame, size prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    let err = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let header_version = api_key.response_header_version(version);
    let ResponseKind::Fetch(fetch) = body else {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0);
        header
            .encode(&mut buf, header_version)
            .map_err(|e| err(e.to_string()))?;
        body.encode(&mut buf, version)
            .map_err(|e| err(e.to_string()))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        return Ok(ResponseFrame {
            parts: vec![buf.freeze()],
        });
    };
    // Fetch: sized once, record data spliced in as stored.
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| err(e.to_string()))?;
    let body_size = fetch
        .compute_size(version)
        .map_err(|e| err(e.to_string()))?;
    let spliced = fetch_records(body);
    let spliced_bytes: usize = spliced.iter().map(Bytes::len).sum();
    let mut buf = SplicingBuf::new(
        spliced,
        (4 + header_size + body_size).saturating_sub(spliced_bytes),
    );
    buf.put_i32((header_size + body_size) as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.to_string()))?;
    fetch
        .encode(&mut buf, version)
        .map_err(|e| err(e.to_string()))?;
    debug_assert_eq!(buf.offset(), 4 + header_size + body_size);
    Ok(ResponseFrame {
        parts: buf.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    /// The frame as kafka-protocol alone would encode it into one buffer.
    fn copied(version: i16, body: &ResponseKind) -> Vec<u8> {
        let mut header = ResponseHeader::default();
        header.correlation_id = 7;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    #[test]
    fn fetch_records_are_spliced_not_copied_and_the_bytes_are_the_same() {
        let big = Bytes::from(vec![7u8; 100 << 10]);
        let small = Bytes::from(vec![9u8; 100]);
        let mut f = FetchResponse::default();
        let mut t = FetchableTopicResponse::default();
        for (i, r) in [Some(big.clone()), Some(small), None, Some(big.clone())]
            .into_iter()
            .enumerate()
        {
            let mut p = PartitionData::default();
            p.partition_index = i as i32;
            p.records = r;
            t.partitions.push(p);
        }
        f.responses.push(t);
        let body = ResponseKind::Fetch(f);
        for version in [4, 11, 12] {
            let frame = encode_response(ApiKey::Fetch, version, 7, &body).unwrap();
            assert_eq!(
                frame.to_bytes().to_vec(),
                copied(version, &body),
                "v{version}"
            );
            let shared: Vec<&Bytes> = frame
                .parts()
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr())
                .collect();
            assert_eq!(shared.len(), 2, "both large record sets sent as they are");
        }
    }
}
