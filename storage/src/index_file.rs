//! The envelope of `.index` and `.timeindex` files: a small header with a
//! CRC-32C over header and body, so a torn or damaged index is detected and
//! rebuilt from the log instead of trusted. The `.index` header also carries
//! the summary of its closed segment, so opening a cleanly closed log reads no
//! segment data.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Offset,
    Time,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IndexFileError {
    #[error("{kind:?} index damaged: {reason}")]
    Damaged {
        kind: IndexKind,
        reason: &'static str,
    },
}

/// What a closed segment holds, recorded when it is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Offset after the segment's last record.
    pub next_offset: i64,
    /// Bytes of batches in the `.log` file.
    pub size_bytes: u64,
    /// Largest batch max timestamp in the segment (-1 when unknown).
    pub max_timestamp: i64,
}

const MAGIC_OFFSET: &[u8; 4] = b"RIX1";
const MAGIC_TIME: &[u8; 4] = b"RTX1";
/// magic(4) next_offset(8) size(8) max_ts(8) body_len(4) crc(4)
pub const HEADER_BYTES: usize = 36;

fn magic(kind: IndexKind) -> &'static [u8; 4] {
    match kind {
        IndexKind::Offset => MAGIC_OFFSET,
        IndexKind::Time => MAGIC_TIME,
    }
}

/// Wraps an index body with the header.
pub fn encode(kind: IndexKind, summary: SegmentSummary, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(magic(kind));
    out.extend_from_slice(&summary.next_offset.to_be_bytes());
    out.extend_from_slice(&summary.size_bytes.to_be_bytes());
    out.extend_from_slice(&summary.max_timestamp.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), body);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks the envelope and returns the summary and the body.
pub fn decode(kind: IndexKind, file: &[u8]) -> Result<(SegmentSummary, &[u8]), IndexFileError> {
    let damaged = |reason| IndexFileError::Damaged { kind, reason };
    if file.len() < HEADER_BYTES {
        return Err(damaged("shorter than its header"));
    }
    if &file[0..4] != magic(kind) {
        return Err(damaged("bad magic"));
    }
    let body_len = u32::from_be_bytes(file[28..32].try_into().expect("4")) as usize;
    if file.len() != HEADER_BYTES + body_len {
        return Err(damaged("length does not match header"));
    }
    let stored = u32::from_be_bytes(file[32..36].try_into().expect("4"));
    let body = &file[HEADER_BYTES..];
    if crc32c::crc32c_append(crc32c::crc32c(&file[..32]), body) != stored {
        return Err(damaged("CRC mismatch"));
    }
    let summary = SegmentSummary {
        next_offset: i64::from_be_bytes(file[4..12].try_into().expect("8")),
        size_bytes: u64::from_be_bytes(file[12..20].try_into().expect("8")),
        max_timestamp: i64::from_be_bytes(file[20..28].try_into().expect("8")),
    };
    Ok((summary, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_is_detected() {
        let s = SegmentSummary {
            next_offset: 77,
            size_bytes: 123_456,
            max_timestamp: 99,
        };
        let f = encode(IndexKind::Offset, s, b"0123456789abcdef");
        let (got, body) = decode(IndexKind::Offset, &f).unwrap();
        assert_eq!(got, s);
        assert_eq!(body, b"0123456789abcdef");
        assert!(decode(IndexKind::Time, &f).is_err());
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 1;
            assert!(
                decode(IndexKind::Offset, &bad).is_err(),
                "flip at {i} went unnoticed"
            );
        }
        assert!(decode(IndexKind::Offset, &f[..f.len() - 1]).is_err());
    }
}
