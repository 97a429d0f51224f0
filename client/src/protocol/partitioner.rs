//! The default partitioner of the Java client, so keyed records land on the
//! same partition whichever client wrote them: `toPositive(murmur2(key)) %
//! partitions`. Keyless records stick to one partition until its batch is
//! full, then move to another (KIP-480), which keeps batches large.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// A new sticky partition for keyless records: random, and different from
/// the previous one when there is a choice.
pub fn next_sticky(previous: Option<i32>, partitions: i32) -> i32 {
    use rand::Rng;
    assert!(partitions > 0, "a topic has at least one partition");
    let mut rng = rand::thread_rng();
    match previous {
        Some(p) if partitions > 1 && p < partitions => {
            let step = rng.gen_range(1..partitions);
            (p + step) % partitions
        }
        _ => rng.gen_range(0..partitions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The vectors of Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), *hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_partitions_are_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, (-790332482i32 & 0x7fff_ffff) % n);
        }
    }

    #[test]
    fn sticky_moves_to_another_partition() {
        for _ in 0..100 {
            let p = next_sticky(Some(3), 8);
            assert_ne!(p, 3);
            assert!((0..8).contains(&p));
        }
        assert_eq!(next_sticky(Some(0), 1), 0);
    }
}
