use crate::header::*;
use crate::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

fn kafka_batch(n: usize, compression: KCompression) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![i as u8; 100 + i])),
            headers: {
                let mut h = IndexMap::new();
                h.insert(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                );
                h
            },
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.to_vec()
}

#[test]
fn batches_from_the_kafka_protocol_encoder_validate() {
    for compression in [
        KCompression::None,
        KCompression::Gzip,
        KCompression::Snappy,
        KCompression::Lz4,
        KCompression::Zstd,
    ] {
        let b = kafka_batch(10, compression);
        let h = validate(&b, usize::MAX).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(h.record_count, 10);
        assert_eq!(h.last_offset_delta, 9);
        assert_eq!(h.max_timestamp, 1_700_000_000_009);
        assert_eq!(
            h.compression().unwrap() == Compression::None,
            compression == KCompression::None
        );
    }
}

#[test]
fn our_encoder_is_read_back_by_the_kafka_protocol_decoder() {
    let headers: &[(&str, &[u8])] = &[("trace", b"abc")];
    let specs: Vec<RecordSpec> = (0..5)
        .map(|i| RecordSpec {
            timestamp_delta: i,
            key: Some(b"k"),
            value: Some(b"hello"),
            headers,
        })
        .collect();
    let mut b = encode_uncompressed(1000, &specs);
    set_base_offset(&mut b, 42);
    set_leader_epoch(&mut b, 7);
    validate(&b, usize::MAX).unwrap();
    let mut bytes = Bytes::from(b);
    let set = RecordBatchDecoder::decode(&mut bytes).expect("kafka-protocol decodes our batch");
    assert_eq!(set.records.len(), 5);
    assert_eq!(set.records[3].offset, 45);
    assert_eq!(set.records[3].timestamp, 1003);
    assert_eq!(set.records[0].partition_leader_epoch, 7);
    assert_eq!(set.records[4].value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        set.records[1]
            .headers
            .get(&StrBytes::from_static_str("trace"))
            .cloned()
            .flatten()
            .as_deref(),
        Some(&b"abc"[..])
    );
}

#[test]
fn patching_offset_and_epoch_keeps_the_crc_valid() {
    let mut b = kafka_batch(3, KCompression::None);
    set_base_offset(&mut b, 1 << 40);
    set_leader_epoch(&mut b, 99);
    let h = validate(&b, usize::MAX).unwrap();
    assert_eq!(h.base_offset, 1 << 40);
    assert_eq!(h.leader_epoch, 99);
    assert_eq!(h.last_offset(), (1 << 40) + 2);
}

#[test]
fn each_check_names_what_failed() {
    let good = kafka_batch(3, KCompression::None);

    assert!(matches!(
        validate(&good[..30], usize::MAX),
        Err(BatchError::TooShort { .. })
    ));
    assert!(matches!(
        validate(&good[..good.len() - 1], usize::MAX),
        Err(BatchError::LengthMismatch { .. })
    ));
    assert!(matches!(
        validate(&good, 10),
        Err(BatchError::TooLarge { .. })
    ));

    let mut b = good.clone();
    b[16] = 1;
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::BadMagic { magic: 1 })
    ));

    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::CrcMismatch { .. })
    ));

    // Header fields covered by the CRC: rewrite and re-CRC so the next check is reached.
    let recrc = |b: &mut Vec<u8>| {
        let crc = compute_crc(b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    };
    let mut b = good.clone();
    b[57..61].copy_from_slice(&0i32.to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::BadRecordCount { count: 0 })
    ));

    let mut b = good.clone();
    b[23..27].copy_from_slice(&5i32.to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::LastOffsetDelta { .. })
    ));

    let mut b = good.clone();
    b[57..61].copy_from_slice(&2i32.to_be_bytes());
    b[23..27].copy_from_slice(&1i32.to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::RecordCountMismatch { declared: 2, .. })
    ));

    let mut b = good.clone();
    b[57..61].copy_from_slice(&4i32.to_be_bytes());
    b[23..27].copy_from_slice(&3i32.to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::RecordCountMismatch {
            declared: 4,
            actual: 3
        })
    ));

    let mut b = good.clone();
    b[21] = 0;
    b[22] = 7;
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::UnknownCompression { codec: 7 })
    ));

    // A record whose length runs past the batch.
    let mut b = good;
    b[61] = 0x7e; // zigzag 63: longer than what follows? make it huge instead
    b[61] = 0xfe;
    b.insert(62, 0x7f);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, usize::MAX),
        Err(BatchError::MalformedRecord { index: 0, .. })
    ));
}

proptest! {
    #[test]
    fn encoded_batches_validate_and_any_flipped_byte_is_caught(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        flip_at in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let specs: Vec<RecordSpec> = values.iter().enumerate().map(|(i, v)| RecordSpec {
            timestamp_delta: i as i64,
            key: None,
            value: Some(v),
            headers: &[],
        }).collect();
        let b = encode_uncompressed(5, &specs);
        let h = validate(&b, usize::MAX).unwrap();
        prop_assert_eq!(h.record_count as usize, values.len());
        prop_assert_eq!(h.total_len(), b.len());

        // Any change to a byte covered by the CRC (or the length/magic) is rejected.
        let i = flip_at.index(b.len());
        let mut bad = b.clone();
        bad[i] ^= flip;
        let covered = !(0..8).contains(&i) && !(12..16).contains(&i);
        prop_assert_eq!(validate(&bad, usize::MAX).is_err(), covered);
    }

    #[test]
    fn varints_round_trip(v32 in any::<i32>(), v64 in any::<i64>()) {
        let mut out = Vec::new();
        varint::write_i32(&mut out, v32);
        prop_assert_eq!(varint::read_i32(&out), Some((v32, out.len())));
        out.clear();
        varint::write_i64(&mut out, v64);
        prop_assert_eq!(varint::read_i64(&out), Some((v64, out.len())));
    }
}

const KAFKA_CODECS: [(KCompression, Compression); 5] = [
    (KCompression::None, Compression::None),
    (KCompression::Gzip, Compression::Gzip),
    (KCompression::Snappy, Compression::Snappy),
    (KCompression::Lz4, Compression::Lz4),
    (KCompression::Zstd, Compression::Zstd),
];

/// Records at 1_700_000_000_000 + i: every codec answers the exact record.
#[test]
fn timestamp_lookup_is_exact_for_every_codec() {
    for (k, ours) in KAFKA_CODECS {
        let mut b = kafka_batch(20, k);
        set_base_offset(&mut b, 1000);
        assert_eq!(BatchHeader::parse(&b).unwrap().compression().unwrap(), ours);
        for i in 0..20 {
            assert_eq!(
                first_record_at_or_after(&b, 1_700_000_000_000 + i),
                Some((1000 + i, 1_700_000_000_000 + i)),
                "{k:?} record {i}"
            );
        }
        assert_eq!(first_record_at_or_after(&b, 1_700_000_000_020), None);
    }
}

/// Recompressing into any codec keeps every record, offset and timestamp as
/// the kafka-protocol decoder reads them, and the result validates.
#[test]
fn recompress_between_every_pair_of_codecs() {
    for (from_k, _) in KAFKA_CODECS {
        let original = kafka_batch(30, from_k);
        let want = RecordBatchDecoder::decode(&mut Bytes::from(original.clone()))
            .unwrap()
            .records;
        for (to_k, to) in KAFKA_CODECS {
            let re = recompress(&original, to).unwrap();
            let h = validate(&re, usize::MAX).unwrap();
            assert_eq!(h.compression().unwrap(), to, "{from_k:?} -> {to_k:?}");
            let got = RecordBatchDecoder::decode(&mut Bytes::from(re)).unwrap();
            assert_eq!(got.records.len(), want.len());
            for (g, w) in got.records.iter().zip(&want) {
                assert_eq!(
                    (g.offset, g.timestamp, &g.key, &g.value, &g.headers),
                    (w.offset, w.timestamp, &w.key, &w.value, &w.headers),
                    "{from_k:?} -> {to_k:?}"
                );
            }
        }
    }
    // A compressed batch whose records do not match its count is refused.
    let mut b = kafka_batch(3, KCompression::Gzip);
    b[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
    b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&3i32.to_be_bytes());
    let crc = compute_crc(&b);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        recompress(&b, Compression::Lz4),
        Err(BatchError::RecordCountMismatch { .. })
    ));
}

/// The builder and decoder (the client's side).
mod build_and_decode {
    use crate::*;
    use bytes::{Bytes, BytesMut};

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
        assert!(err.reason.contains("CRC"), "{err}");
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

/// Producer id, epoch, sequence, the transactional and control flags land
/// where the kafka-protocol decoder and our header parser read them.
#[test]
fn producer_fields_and_control_flag() {
    let mut b = BatchBuilder::new(256);
    b.producer(ProducerFields {
        id: 4242,
        epoch: 3,
        base_sequence: 17,
        transactional: true,
    })
    .control(true);
    b.push(1000, Some(b"k"), Some(b"v"), &[]);
    b.push(1001, Some(b"k"), Some(b"v"), &[]);
    let batch = b.finish(Compression::Zstd).unwrap();
    let h = validate(&batch, usize::MAX).unwrap();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (4242, 3, 17)
    );
    assert!(h.is_transactional() && h.is_control() && h.has_producer_id());
    let set = RecordBatchDecoder::decode(&mut Bytes::from(batch.to_vec())).unwrap();
    assert_eq!(set.records[1].sequence, 18);
    assert_eq!(set.records[0].producer_id, 4242);
    assert!(set.records[0].transactional && set.records[0].control);
    // Control batches are not handed to consumers, but their offsets are passed.
    let mut out = Vec::new();
    assert_eq!(decode_batches(&batch, 0, &mut out).unwrap(), Some(2));
    assert!(out.is_empty());
}

proptest! {
    /// Whatever bytes arrive (a hostile producer, a corrupt fetch), every
    /// reader of batches answers with a value or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), codec in 0u8..6) {
        if bytes.len() >= HEADER_BYTES {
            // Make the length and magic plausible so the deeper paths run.
            let len = (bytes.len() - LOG_OVERHEAD) as i32;
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
            bytes[16] = 2;
            bytes[22] = (bytes[22] & !7) | codec;
            let crc = compute_crc(&bytes);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = validate(&bytes, usize::MAX);
        let _ = records_section(&bytes);
        let _ = first_record_at_or_after(&bytes, 0);
        let _ = recompress(&bytes, Compression::Lz4);
        let _ = decode_batches(&Bytes::from(bytes.clone()), 0, &mut Vec::new());
    }
}

/// Inputs the fuzzer (`fuzz/fuzz_targets/record_batch.rs`) found panicking:
/// a base timestamp or offset plus a delta overflowed. Every reader must
/// answer them without a panic (tests run with overflow checks on).
#[test]
fn fuzzer_findings_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = validate(&bytes, 1 << 20);
        let _ = records_section(&bytes);
        let _ = first_record_at_or_after(&bytes, 0);
        let _ = first_record_at_or_after(&bytes, i64::MAX);
        let _ = recompress(&bytes, Compression::Zstd);
        let _ = decode_batches(&Bytes::from(bytes), 0, &mut Vec::new());
        n += 1;
    }
    assert!(n >= 2);
}
