//! Compression codecs of RecordBatch v2 records sections: gzip, snappy
//! (xerial framing, as the Java client writes it, or raw), lz4 (frame
//! format) and zstd. Decompression is bounded: a hostile batch cannot
//! expand past the caller's limit.

use std::io::{Read, Write};

use super::Compression;

/// Why a records section could not be compressed or decompressed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("{codec:?} data expands past the limit of {max} bytes")]
    TooLarge { codec: Compression, max: usize },
    #[error("{codec:?} compression failed: {reason}")]
    Compress { codec: Compression, reason: String },
}

/// The xerial snappy-java stream header: magic, version 1, compatible 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
const GZIP_LEVEL: u32 = 6;
const LZ4_LEVEL: u32 = 4;
const ZSTD_LEVEL: i32 = 3;

/// Decompresses `input` (a compressed records section); fails with
/// [`CodecError::TooLarge`] once the output would pass `max_bytes`.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    let corrupt = |e: &dyn std::fmt::Display| CodecError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => {
            if input.len() > max_bytes {
                return Err(CodecError::TooLarge {
                    codec,
                    max: max_bytes,
                });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(input), max_bytes)
        }
        Compression::Lz4 => {
            let mut d = lz4::Decoder::new(input).map_err(|e| corrupt(&e))?;
            let out = read_bounded(codec, &mut d, max_bytes)?;
            // A frame cut short reads as a clean end; `finish` tells.
            d.finish().1.map_err(|e| corrupt(&e))?;
            Ok(out)
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(input).map_err(|e| corrupt(&e))?;
            read_bounded(codec, d, max_bytes)
        }
        Compression::Snappy => snappy_decompress(input, max_bytes),
    }
}

fn read_bounded(codec: Compression, r: impl Read, max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let limit = max_bytes as u64 + 1;
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > max_bytes {
        return Err(CodecError::TooLarge {
            codec,
            max: max_bytes,
        });
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), CodecError> {
        let len = snap::raw::decompress_len(raw).map_err(|e| corrupt(e.to_string()))?;
        if out.len() + len > max_bytes {
            return Err(CodecError::TooLarge {
                codec,
                max: max_bytes,
            });
        }
        let at = out.len();
        out.resize(at + len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(raw, &mut out[at..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(at + n);
        Ok(())
    };
    if input.len() >= XERIAL_HEADER_BYTES && input.starts_with(XERIAL_MAGIC) {
        let mut rest = &input[XERIAL_HEADER_BYTES..];
        while !rest.is_empty() {
            let Some(len) = rest.get(..4) else {
                return Err(corrupt("truncated block length".into()));
            };
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let raw = rest
                .get(4..4 + len)
                .ok_or_else(|| corrupt(format!("block of {len} bytes runs past the end")))?;
            block(raw, &mut out)?;
            rest = &rest[4 + len..];
        }
    } else {
        block(input, &mut out)?;
    }
    Ok(out)
}

/// Compresses a records section with `codec` (as the Java client would).
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let failed = |e: std::io::Error| CodecError::Compress {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2 + 64),
                flate2::Compression::new(GZIP_LEVEL),
            );
            e.write_all(input).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(LZ4_LEVEL)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::with_capacity(input.len() / 2 + 64))
                .map_err(failed)?;
            e.write_all(input).map_err(failed)?;
            let (out, r) = e.finish();
            r.map_err(failed)?;
            Ok(out)
        }
        Compression::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL).map_err(failed),
        Compression::Snappy => {
            let mut out = Vec::with_capacity(input.len() / 2 + 64);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1u32.to_be_bytes()); // version
            out.extend_from_slice(&1u32.to_be_bytes()); // minimum compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
                let raw = enc.compress_vec(chunk).map_err(|e| CodecError::Compress {
                    codec,
                    reason: e.to_string(),
                })?;
                out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
                out.extend_from_slice(&raw);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn round_trips_and_bounds() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in ALL {
            let c = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &c, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            assert!(matches!(
                decompress(codec, &c, data.len() - 1),
                Err(CodecError::TooLarge { .. })
            ));
            if codec != Compression::None {
                let mut bad = c.clone();
                let mid = bad.len() / 2;
                bad.truncate(mid);
                assert!(decompress(codec, &bad, data.len()).is_err(), "{codec:?}");
            }
        }
        // Raw (unframed) snappy, as some clients send it.
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, data.len()).unwrap(),
            data
        );
    }

    /// The codec matches the kafka-protocol crate's (what the Rust client uses).
    #[test]
    fn interoperates_with_kafka_protocol() {
        use bytes::{BufMut, Bytes, BytesMut};
        use kafka_protocol::compression::{self as kc, Compressor, Decompressor};
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        macro_rules! both {
            ($codec:expr, $kc:ty) => {{
                let mut theirs = BytesMut::new();
                <$kc>::compress(&mut theirs, |b: &mut BytesMut| {
                    b.put_slice(&data);
                    Ok(())
                })
                .unwrap();
                assert_eq!(decompress($codec, &theirs, data.len()).unwrap(), data);
                let mine = Bytes::from(compress($codec, &data).unwrap());
                let back =
                    <$kc>::decompress(&mut mine.clone(), |b: &mut Bytes| Ok(b.to_vec())).unwrap();
                assert_eq!(back, data);
            }};
        }
        both!(Compression::Gzip, kc::Gzip);
        both!(Compression::Snappy, kc::Snappy);
        both!(Compression::Lz4, kc::Lz4);
        both!(Compression::Zstd, kc::Zstd);
    }
}
