//! What log compaction needs from a batch: its records' keys (to build the
//! key → latest offset map), and the same batch with some records left out.
//!
//! A filtered batch keeps everything Kafka keeps (`MemoryRecords.filterTo`):
//! the base offset and `lastOffsetDelta` (so the batch still ends where it
//! ended and offsets only increase), the timestamps, the producer id, epoch
//! and base sequence, the attributes and the codec. Retained records are
//! copied byte for byte: their offset and timestamp deltas are relative to
//! the unchanged base, so nothing inside a record is re-encoded; only the
//! records section is recompressed. A batch whose every record goes becomes
//! an empty batch (header only, uncompressed, as Kafka writes it) when the
//! caller must keep its offsets or producer fields.

use std::borrow::Cow;

use crate::codec;
use crate::header::*;
use crate::transform::records_section;
use crate::validate::BatchError;
use crate::varint;

/// One record as compaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub offset: i64,
    /// `None` for a record without a key.
    pub key: Option<&'a [u8]>,
    /// A record with a null value: a delete marker.
    pub tombstone: bool,
}

/// One record of a records section: its parsed key fields and its raw bytes
/// (length prefix included).
struct RawRecord<'a> {
    record: KeyedRecord<'a>,
    raw: &'a [u8],
}

fn records<'a>(
    header: &BatchHeader,
    mut section: &'a [u8],
    mut each: impl FnMut(RawRecord<'a>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    for index in 0..header.record_count {
        let malformed = |reason| BatchError::MalformedRecord { index, reason };
        let start = section;
        let (len, used) = varint::read_i32(section).ok_or(malformed("bad length varint"))?;
        let len = usize::try_from(len).map_err(|_| malformed("negative length"))?;
        let body = section
            .get(used..used + len)
            .ok_or(malformed("length exceeds the batch"))?;
        let raw = &start[..used + len];
        section = &section[used + len..];
        let mut at = 1; // attributes
        let mut next = |what| -> Result<i64, BatchError> {
            let (v, n) =
                varint::read_i64(body.get(at..).unwrap_or_default()).ok_or(malformed(what))?;
            at += n;
            Ok(v)
        };
        let _timestamp_delta = next("bad timestamp delta")?;
        let offset_delta = next("bad offset delta")?;
        let key_len = next("bad key length")?;
        let key = if key_len < 0 {
            None
        } else {
            let end = at + key_len as usize;
            let key = body
                .get(at..end)
                .ok_or(malformed("key exceeds the record"))?;
            at = end;
            Some(key)
        };
        let value_len = varint::read_i64(body.get(at..).unwrap_or_default())
            .ok_or(malformed("bad value length"))?
            .0;
        each(RawRecord {
            record: KeyedRecord {
                offset: header.base_offset.wrapping_add(offset_delta),
                key,
                tombstone: value_len < 0,
            },
            raw,
        })?;
    }
    Ok(())
}

/// Calls `each` with every record of `batch` (decompressed if needed), in
/// offset order. Control batches hold no user records and are skipped.
pub fn for_each_record(
    batch: &[u8],
    mut each: impl FnMut(KeyedRecord<'_>),
) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(());
    }
    let section = records_section(batch)?;
    records(&header, &section, |r| {
        each(r.record);
        Ok(())
    })
}

/// Whether every record of `batch` has a key (a compacted topic refuses
/// batches with keyless records, as Kafka does).
pub fn all_records_keyed(batch: &[u8]) -> Result<bool, BatchError> {
    let mut keyed = true;
    for_each_record(batch, |r| keyed &= r.key.is_some())?;
    Ok(keyed)
}

/// What [`filter_records`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays: keep the batch's bytes as they are.
    Unchanged,
    /// Some records stay: the rewritten batch.
    Rewritten(Vec<u8>),
    /// No record stays. [`empty_batch`] makes the header-only batch for
    /// callers that must keep its offsets or producer fields.
    Emptied,
}

/// The batch with only the records `keep` answers true for. Control batches
/// are always [`Filtered::Unchanged`].
pub fn filter_records(
    batch: &[u8],
    mut keep: impl FnMut(&KeyedRecord<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let section = records_section(batch)?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut all = true;
    records(&header, &section, |r| {
        if keep(&r.record) {
            kept.push(r.raw);
        } else {
            all = false;
        }
        Ok(())
    })?;
    if all {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() {
        return Ok(Filtered::Emptied);
    }
    let joined: Vec<u8> = kept.concat();
    let body: Cow<'_, [u8]> = match header.compression()? {
        Compression::None => Cow::Borrowed(&joined),
        c => Cow::Owned(codec::compress(c, &joined)?),
    };
    Ok(Filtered::Rewritten(with_records(
        batch,
        &body,
        kept.len() as i32,
        header.attributes,
    )))
}

/// The header-only batch standing for `batch` once all its records are
/// gone: same offsets, timestamps and producer fields, no records,
/// uncompressed.
pub fn empty_batch(batch: &[u8]) -> Result<Vec<u8>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    Ok(with_records(
        batch,
        &[],
        0,
        header.attributes & !ATTR_COMPRESSION,
    ))
}

fn with_records(batch: &[u8], body: &[u8], count: i32, attributes: i16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(body);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BatchBuilder, Header, ProducerFields};
    use crate::decode::decode_batches;
    use crate::validate::check_integrity;
    use bytes::Bytes;

    fn batch(codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(4096);
        b.push(1000, Some(b"a"), Some(b"1"), &[]);
        b.push(1005, Some(b"b"), None, &[]);
        b.push(
            1010,
            None,
            Some(b"x"),
            &[Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"v")),
            }],
        );
        b.push(1020, Some(b"a"), Some(b"2"), &[]);
        b.producer(ProducerFields {
            id: 7,
            epoch: 3,
            base_sequence: 40,
            transactional: false,
        });
        let mut out = b.finish(codec).unwrap().to_vec();
        set_base_offset(&mut out, 100);
        out
    }

    #[test]
    fn keys_and_tombstones_for_every_codec() {
        for codec in Compression::ALL {
            let b = batch(codec);
            let mut seen = Vec::new();
            for_each_record(&b, |r| {
                seen.push((r.offset, r.key.map(<[u8]>::to_vec), r.tombstone))
            })
            .unwrap();
            assert_eq!(
                seen,
                vec![
                    (100, Some(b"a".to_vec()), false),
                    (101, Some(b"b".to_vec()), true),
                    (102, None, false),
                    (103, Some(b"a".to_vec()), false),
                ],
                "{codec:?}"
            );
            assert!(!all_records_keyed(&b).unwrap());
        }
    }

    #[test]
    fn filtering_keeps_offsets_timestamps_and_producer_fields() {
        for codec in Compression::ALL {
            let b = batch(codec);
            let original = BatchHeader::parse(&b).unwrap();
            let Filtered::Rewritten(out) = filter_records(&b, |r| r.offset % 2 == 1).unwrap()
            else {
                panic!("records were dropped")
            };
            let h = check_integrity(&out).unwrap();
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!(h.record_count, 2);
            assert_eq!(
                (
                    h.base_offset,
                    h.last_offset_delta,
                    h.base_timestamp,
                    h.max_timestamp
                ),
                (
                    original.base_offset,
                    original.last_offset_delta,
                    original.base_timestamp,
                    original.max_timestamp
                )
            );
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 3, 40)
            );
            let mut records = Vec::new();
            let next = decode_batches(&Bytes::from(out), 0, &mut records).unwrap();
            assert_eq!(next, Some(104), "the batch still ends where it ended");
            let kept: Vec<_> = records
                .iter()
                .map(|r| (r.offset, r.timestamp, r.value.clone()))
                .collect();
            assert_eq!(
                kept,
                vec![
                    (101, 1005, None),
                    (103, 1020, Some(Bytes::from_static(b"2")))
                ]
            );

            assert_eq!(filter_records(&b, |_| true).unwrap(), Filtered::Unchanged);
            assert_eq!(filter_records(&b, |_| false).unwrap(), Filtered::Emptied);
        }
    }

    #[test]
    fn an_empty_batch_keeps_the_header() {
        let b = batch(Compression::Zstd);
        let out = empty_batch(&b).unwrap();
        assert_eq!(out.len(), HEADER_BYTES);
        let h = check_integrity(&out).unwrap();
        assert_eq!(
            (h.record_count, h.compression().unwrap(), h.next_offset()),
            (0, Compression::None, 104)
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 40)
        );
        let mut records = Vec::new();
        assert_eq!(
            decode_batches(&Bytes::from(out), 0, &mut records).unwrap(),
            Some(104)
        );
        assert!(records.is_empty());
    }

    #[test]
    fn a_run_of_empty_batches_is_told_apart_from_one_with_records() {
        use crate::header::next_offset_after_empty;
        let b = batch(Compression::None);
        let empty = empty_batch(&b).unwrap();
        let two_empty = [empty.clone(), empty.clone()].concat();
        assert_eq!(next_offset_after_empty(&two_empty), Some(104));
        // A trailing partial batch is not looked at.
        let cut = [empty.clone(), b[..20].to_vec()].concat();
        assert_eq!(next_offset_after_empty(&cut), Some(104));
        let mixed = [empty.clone(), b.to_vec()].concat();
        assert_eq!(next_offset_after_empty(&mixed), None);
        assert_eq!(next_offset_after_empty(&b), None);
        assert_eq!(next_offset_after_empty(&[]), None);
    }

    #[test]
    fn damaged_records_are_an_error_not_a_panic() {
        let mut b = batch(Compression::None);
        let len = b.len();
        b.truncate(len - 3);
        assert!(filter_records(&b, |_| true).is_err());
        assert!(for_each_record(&b, |_| {}).is_err());
    }
}
