//! The "consumer" group protocol's member metadata: a subscription (the
//! topics a member wants) and an assignment (the partitions the leader gave
//! it), each a version (i16) followed by kafka-protocol's
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`. Newer
//! versions only add fields at the end, so a version above what the codec
//! knows is read as the newest it knows (as Kafka's `ConsumerProtocol` does).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

fn encode<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    m.encode(&mut b, version)
        .expect("a subscription or assignment this crate built encodes");
    b.freeze()
}

fn decode<M: Decodable + Message>(bytes: &[u8]) -> Option<M> {
    let mut b = bytes;
    let version = i16::from_be_bytes(b.get(..2)?.try_into().ok()?);
    b = &b[2..];
    let version = version.clamp(M::VERSIONS.min, M::VERSIONS.max);
    M::decode(&mut b, version).ok()
}

/// A v0 subscription to `topics`, without user data.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    encode(&s, 0)
}

/// The topics of a subscription; `None` for bytes that are not one.
pub fn decode_subscription(bytes: &[u8]) -> Option<Vec<String>> {
    let s: ConsumerProtocolSubscription = decode(bytes)?;
    Some(s.topics.iter().map(|t| t.to_string()).collect())
}

/// A v0 assignment of these (topic, partition)s, without user data.
pub fn encode_assignment(partitions: &[(String, i32)]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut tp = AssignedTopic::default();
            tp.topic = TopicName(StrBytes::from_string(t.to_string()));
            tp.partitions = ps;
            tp
        })
        .collect();
    encode(&a, 0)
}

/// The (topic, partition)s of an assignment, sorted; empty for bytes that
/// are not one (an empty assignment is empty bytes, too).
pub fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    let Some(a) = decode::<ConsumerProtocolAssignment>(bytes) else {
        return Vec::new();
    };
    let mut out: Vec<(String, i32)> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let topics = vec!["t".to_string(), "orders".to_string()];
        assert_eq!(
            decode_subscription(&encode_subscription(&topics)),
            Some(topics)
        );
        let parts = vec![
            ("orders".to_string(), 3),
            ("t".to_string(), 0),
            ("t".to_string(), 1),
        ];
        assert_eq!(decode_assignment(&encode_assignment(&parts)), parts);
        assert!(decode_assignment(&[]).is_empty());
        assert_eq!(decode_subscription(&[0]), None);
    }

    #[test]
    fn the_java_clients_layout_decodes() {
        // Version 0, topic "t" with partitions 2 and 0, null user data: what
        // Kafka's ConsumerProtocol writes.
        let b = [
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff,
            0xff,
        ];
        assert_eq!(
            decode_assignment(&b),
            vec![("t".to_string(), 0), ("t".to_string(), 2)]
        );
        // A newer version than the codec knows is read as the newest it knows.
        let sub = [
            0, 9, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff,
        ];
        assert_eq!(decode_subscription(&sub), Some(vec!["t".to_string()]));
    }
}
