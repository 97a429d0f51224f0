//! Walking the batches of a segment's bytes: the pure core of recovery, index
//! rebuilding and reads. It works on a buffer that starts at a known file
//! position and says where it stopped and why; the caller does the I/O.

use crate::batch::{self, BatchError, BatchHeader, LOG_OVERHEAD};

/// A whole, checked batch found by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    /// File position of the batch's first byte.
    pub position: u64,
    pub header: BatchHeader,
}

/// Why a batch at some position cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("batch starts at offset {found}, before the {expected} its predecessor ends at")]
    OffsetGoesBack { expected: i64, found: i64 },
    #[error("batch claims {len} bytes, more than the {max} a batch may hold")]
    ImplausibleLength { len: i64, max: usize },
    #[error("batch is cut short by the end of the segment's data")]
    Truncated,
    #[error("zeros where a batch should start")]
    Zeroed,
}

/// Where and why a scan of one buffer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ends inside the batch at `position`; read at least `need`
    /// bytes from there and scan again.
    NeedMore { position: u64, need: usize },
    /// The data ends at `position`: the buffer is exhausted exactly, or only
    /// zeros (preallocated space, block padding) follow.
    End { position: u64 },
    /// The bytes at `position` are not a valid next batch.
    Invalid { position: u64, error: ScanError },
}

impl ScanStop {
    pub fn position(&self) -> u64 {
        match *self {
            ScanStop::NeedMore { position, .. }
            | ScanStop::End { position }
            | ScanStop::Invalid { position, .. } => position,
        }
    }
}

/// Scans `buf`, which holds file bytes from `start_position`, calling `found`
/// for each whole batch whose CRC checks out. `expected_offset` is the offset
/// the next batch must start at (when known); it advances as batches are found.
/// `batch_bytes_max` rejects absurd length fields before they cause huge reads.
/// Batches that end at or before `verify_from` are stepped over by their
/// length field without a CRC check (a reader skipping to its offset must not
/// fail on damage it does not read); recovery passes `i64::MIN`.
pub fn scan(
    buf: &[u8],
    start_position: u64,
    expected_offset: &mut Option<i64>,
    batch_bytes_max: usize,
    verify_from: i64,
    mut found: impl FnMut(ScannedBatch),
) -> ScanStop {
    let mut at = 0usize;
    loop {
        let position = start_position + at as u64;
        let rest = &buf[at..];
        if rest.is_empty() {
            return ScanStop::End { position };
        }
        if rest.len() < LOG_OVERHEAD {
            // Even all zeros is no end here: a batch's first bytes are the
            // high bytes of its base offset, zero for any real log, so a
            // buffer that ends just after a batch starts looks like padding.
            return ScanStop::NeedMore {
                position,
                need: batch::HEADER_BYTES,
            };
        }
        let total = batch::peek_total_len(rest).expect("12 bytes present");
        if total == LOG_OVERHEAD as i64 && rest[..LOG_OVERHEAD].iter().all(|&b| b == 0) {
            // Zeroed space: the end of written data, provided it is all zeros.
            if rest.iter().all(|&b| b == 0) {
                return ScanStop::End { position };
            }
        }
        if total < batch::HEADER_BYTES as i64 || total > batch_bytes_max as i64 {
            return ScanStop::Invalid {
                position,
                error: ScanError::ImplausibleLength {
                    len: total,
                    max: batch_bytes_max,
                },
            };
        }
        let total = total as usize;
        if rest.len() < total {
            return ScanStop::NeedMore {
                position,
                need: total,
            };
        }
        let checked = match BatchHeader::parse(&rest[..total]) {
            Ok(h) if h.next_offset() <= verify_from && h.magic == batch::MAGIC_V2 => Ok(h),
            _ => batch::check_integrity(&rest[..total]),
        };
        let header = match checked {
            Ok(h) => h,
            Err(e) => {
                return ScanStop::Invalid {
                    position,
                    error: e.into(),
                }
            }
        };
        if let Some(expected) = *expected_offset {
            if header.base_offset < expected {
                return ScanStop::Invalid {
                    position,
                    error: ScanError::OffsetGoesBack {
                        expected,
                        found: header.base_offset,
                    },
                };
            }
        }
        *expected_offset = Some(header.next_offset());
        found(ScannedBatch { position, header });
        at += total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode_uncompressed, set_base_offset, RecordSpec};

    fn log_of(n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut log = Vec::new();
        let mut positions = Vec::new();
        let mut next = 0i64;
        for i in 0..n {
            let value = vec![i as u8; 10 + i * 7];
            let specs = [
                RecordSpec {
                    value: Some(&value),
                    ..Default::default()
                },
                RecordSpec::default(),
            ];
            let mut b = encode_uncompressed(i as i64, &specs);
            set_base_offset(&mut b, next);
            next += 2;
            positions.push(log.len() as u64);
            log.extend_from_slice(&b);
        }
        (log, positions)
    }

    #[test]
    fn finds_every_batch_then_stops_at_zeros() {
        let (mut log, positions) = log_of(5);
        let end = log.len() as u64;
        log.extend_from_slice(&[0u8; 100]);
        let mut seen = Vec::new();
        let mut expected = Some(0);
        let stop = scan(&log, 0, &mut expected, 1 << 20, i64::MIN, |b| {
            seen.push(b.position)
        });
        assert_eq!(seen, positions);
        assert_eq!(stop, ScanStop::End { position: end });
        assert_eq!(expected, Some(10));
    }

    #[test]
    fn every_truncation_point_stops_cleanly_before_the_cut_batch() {
        let (log, positions) = log_of(4);
        for cut in 0..log.len() {
            let mut expected = Some(0);
            let mut n = 0;
            let stop = scan(&log[..cut], 0, &mut expected, 1 << 20, i64::MIN, |_| n += 1);
            let ends: Vec<u64> = positions
                .iter()
                .skip(1)
                .copied()
                .chain([log.len() as u64])
                .collect();
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(n, whole, "cut at {cut}");
            let boundary = if whole == 0 { 0 } else { ends[whole - 1] };
            assert!(
                !matches!(stop, ScanStop::Invalid { .. }),
                "cut at {cut} reported as invalid"
            );
            assert_eq!(stop.position(), boundary, "cut at {cut}");
        }
    }

    #[test]
    fn a_buffer_ending_in_the_zero_high_bytes_of_a_base_offset_needs_more() {
        // Regression: recovery read the segment in 1 MiB chunks; a batch that
        // started 2 bytes before a chunk boundary showed only the zero high
        // bytes of its base offset and was taken for the end of the data.
        let (log, positions) = log_of(3);
        for cut in 1..LOG_OVERHEAD {
            let end = positions[2] as usize + cut;
            if cut < 8 {
                assert!(log[positions[2] as usize..end].iter().all(|&b| b == 0));
            }
            let mut expected = Some(0);
            let stop = scan(&log[..end], 0, &mut expected, 1 << 20, i64::MIN, |_| {});
            assert_eq!(
                stop,
                ScanStop::NeedMore {
                    position: positions[2],
                    need: batch::HEADER_BYTES
                },
                "cut {cut} bytes into the batch"
            );
        }
    }

    #[test]
    fn corruption_and_offsets_going_back_are_invalid() {
        let (mut log, positions) = log_of(3);
        log[positions[1] as usize + 40] ^= 0xff;
        let mut expected = Some(0);
        let stop = scan(&log, 0, &mut expected, 1 << 20, i64::MIN, |_| {});
        assert!(
            matches!(stop, ScanStop::Invalid { position, error: ScanError::Batch(BatchError::CrcMismatch { .. }) } if position == positions[1])
        );

        let (log, _) = log_of(3);
        let mut expected = Some(5);
        let stop = scan(&log, 0, &mut expected, 1 << 20, i64::MIN, |_| {});
        assert!(matches!(
            stop,
            ScanStop::Invalid {
                error: ScanError::OffsetGoesBack {
                    expected: 5,
                    found: 0
                },
                ..
            }
        ));
    }
}
