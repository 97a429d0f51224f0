//! Which closed segments retention deletes: a pure decision over segment
//! facts, oldest first. The active segment is never a candidate.

/// What retention needs to know about one closed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub size_bytes: u64,
    /// Largest record timestamp in the segment (or its seal time when records carry none).
    pub max_timestamp: i64,
}

/// Number of oldest closed segments to delete. A segment goes when its newest
/// record is older than `retention_ms`, or when the log without it would
/// still hold at least `retention_bytes` (Kafka's rule). Only a prefix is ever
/// deleted, so the log stays contiguous.
pub fn segments_to_delete(
    closed_oldest_first: &[SegmentFacts],
    active_size_bytes: u64,
    now_ms: i64,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
) -> usize {
    let mut total: u64 = closed_oldest_first
        .iter()
        .map(|s| s.size_bytes)
        .sum::<u64>()
        + active_size_bytes;
    let mut n = 0;
    for seg in closed_oldest_first {
        let expired =
            retention_ms.is_some_and(|ms| seg.max_timestamp < now_ms.saturating_sub(ms as i64));
        let oversize = retention_bytes.is_some_and(|max| total - seg.size_bytes >= max);
        if !(expired || oversize) {
            break;
        }
        total -= seg.size_bytes;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(size_bytes: u64, max_timestamp: i64) -> SegmentFacts {
        SegmentFacts {
            size_bytes,
            max_timestamp,
        }
    }

    #[test]
    fn time_and_size_limits() {
        let segs = [seg(100, 10), seg(100, 20), seg(100, 30)];
        assert_eq!(segments_to_delete(&segs, 50, 100, Some(75), None), 2);
        assert_eq!(segments_to_delete(&segs, 50, 100, Some(1000), None), 0);
        assert_eq!(segments_to_delete(&segs, 50, 100, None, Some(150)), 2);
        assert_eq!(segments_to_delete(&segs, 50, 100, None, Some(50)), 3);
        assert_eq!(segments_to_delete(&segs, 50, 100, None, Some(151)), 1);
        assert_eq!(segments_to_delete(&segs, 50, 100, None, None), 0);
        // A young segment in front stops time-based deletion of older-looking ones behind it.
        let segs = [seg(100, 500), seg(100, 20)];
        assert_eq!(segments_to_delete(&segs, 0, 100, Some(50), None), 0);
    }

    proptest! {
        #[test]
        fn size_retention_keeps_at_least_the_limit(
            sizes in proptest::collection::vec(1u64..1000, 0..20),
            active in 0u64..1000,
            limit in 1u64..20_000,
        ) {
            let segs: Vec<_> = sizes.iter().map(|&s| seg(s, 0)).collect();
            let n = segments_to_delete(&segs, active, 0, None, Some(limit));
            let total: u64 = sizes.iter().sum::<u64>() + active;
            let kept: u64 = sizes[n..].iter().sum::<u64>() + active;
            prop_assert!(n <= sizes.len());
            if n > 0 { prop_assert!(kept >= limit); }
            if n < sizes.len() { prop_assert!(kept - sizes[n] < limit); }
            prop_assert!(kept <= total);
        }
    }
}
