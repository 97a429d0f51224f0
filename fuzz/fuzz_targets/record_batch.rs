//! Every reader of RecordBatch v2 bytes (validation, decoding, timestamp
//! lookup, recompression) on arbitrary input: no panic, bounded memory.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_record::{
    decode_batches, first_record_at_or_after, recompress, records_section, validate, Compression,
};

fuzz_target!(|data: &[u8]| {
    let _ = validate(data, 1 << 20);
    let _ = records_section(data);
    let _ = first_record_at_or_after(data, 0);
    let _ = recompress(data, Compression::Zstd);
    let _ = decode_batches(&Bytes::copy_from_slice(data), 0, &mut Vec::new());
});
