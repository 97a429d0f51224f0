//! Zigzag varints as Kafka records use them.

/// Decodes a zigzag varint of at most 5 bytes; returns (value, bytes used).
pub fn read_i32(b: &[u8]) -> Option<(i32, usize)> {
    let (raw, used) = read_raw(b, 5)?;
    let raw = raw as u32;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
}

/// Decodes a zigzag varlong of at most 10 bytes; returns (value, bytes used).
pub fn read_i64(b: &[u8]) -> Option<(i64, usize)> {
    let (raw, used) = read_raw(b, 10)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

fn read_raw(b: &[u8], max_len: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in b.iter().take(max_len).enumerate() {
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends a zigzag varint.
pub fn write_i32(out: &mut Vec<u8>, v: i32) {
    write_raw(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Appends a zigzag varlong.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    write_raw(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn write_raw(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes the zigzag varlong encoding of `v` takes.
pub fn len_i64(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}
