//! Consumer groups in the broker: the pure state machines live in the
//! `rill-groups` crate (re-exported here as [`group`], [`consumer`],
//! [`assignor`], [`records`]); this module holds the glue —
//! [`coordinator`]: the requests on a shard's groups (held in memory by
//! [`crate::shard::group_table`], replayed from the offsets topic), which
//! shard coordinates a group, durable appends, creating the offsets topic.
//! Modules depend one way: `partition` ← `shard` ← `groups` ← `api`.

pub mod coordinator;
pub use rill_groups::{assignor, consumer, group, records};

/// The internal, compacted topic holding groups and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's partition of the offsets topic for a group:
/// `abs(groupId.hashCode()) % partitions` with Java's `String.hashCode`, so
/// a group lands where it would on Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// Topics the members of a "consumer" group subscribe to (from their
/// ConsumerProtocolSubscription metadata).
pub fn subscribed_topics(g: &group::Group) -> Vec<String> {
    if let Some(cg) = &g.consumer {
        return cg.subscribed_topics();
    }
    if g.protocol_type.as_deref() != Some("consumer") {
        return Vec::new();
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for m in &g.members {
        let Some((_, meta)) = m.protocols.iter().find(|(n, _)| *n == protocol) else {
            continue;
        };
        for t in rill_net::consumer_protocol::decode_subscription(meta).unwrap_or_default() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        // Java's String.hashCode over UTF-16 units ("hello".hashCode() == 99162322).
        let java_hash = |s: &str| {
            s.encode_utf16()
                .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32))
        };
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        for g in ["", "g", "consumer-group-1", "ünïcode"] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }
}
