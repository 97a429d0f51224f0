//! The records of `__consumer_offsets`, in Kafka's own layout (so Kafka's
//! tools read them): key version 1 is a committed offset (group, topic,
//! partition), key version 2 a group's metadata; values are offset commit
//! v3 and group metadata v3; a null value deletes. Big-endian; strings are
//! an i16 length and UTF-8 (-1: null), bytes an i32 length.
//!
//! A KIP-848 consumer-protocol group is one record of Rill's own, key
//! version [`CONSUMER_GROUP_KEY_VERSION`] (the group id), whose value is the
//! whole [`ConsumerGroup`] (epochs, members, target assignment) as a value
//! version 0 and JSON. One record per group rather than Kafka's six kinds:
//! the group is rewritten only when it changes (not on plain heartbeats),
//! and compaction keeps the latest.

use bytes::{BufMut, Bytes, BytesMut};

use super::consumer::ConsumerGroup;
use super::group::{Committed, GroupSnapshot, SnapshotMember};

/// Key version of a consumer-protocol group's record (outside Kafka's range).
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 1000;

/// One record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// `None`: the offset was deleted.
        value: Option<Committed>,
    },
    Group {
        group: String,
        /// `None`: the group was deleted.
        value: Option<GroupSnapshot>,
    },
    ConsumerGroup {
        group: String,
        /// `None`: the group is no longer a consumer-protocol group.
        value: Option<Box<ConsumerGroup>>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

impl OffsetsRecord {
    /// (key, value) of the record.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(1);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|c| {
                    let mut v = BytesMut::new();
                    v.put_i16(3);
                    v.put_i64(c.offset);
                    v.put_i32(c.leader_epoch);
                    put_str(&mut v, &c.metadata);
                    v.put_i64(c.commit_timestamp);
                    v.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_str(&mut key, group);
                let value = value.as_ref().map(|s| {
                    let mut v = BytesMut::new();
                    v.put_i16(3);
                    put_str(&mut v, &s.protocol_type);
                    v.put_i32(s.generation);
                    put_opt_str(&mut v, s.protocol.as_deref());
                    put_opt_str(&mut v, s.leader.as_deref());
                    v.put_i64(s.state_timestamp);
                    v.put_i32(s.members.len() as i32);
                    for m in &s.members {
                        put_str(&mut v, &m.id);
                        put_opt_str(&mut v, m.instance_id.as_deref());
                        put_str(&mut v, &m.client_id);
                        put_str(&mut v, &m.client_host);
                        v.put_i32(m.rebalance_timeout_ms);
                        v.put_i32(m.session_timeout_ms);
                        put_bytes(&mut v, &m.subscription);
                        put_bytes(&mut v, &m.assignment);
                    }
                    v.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::ConsumerGroup { group, value } => {
                key.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut v = BytesMut::new();
                    v.put_i16(0);
                    v.extend_from_slice(
                        &serde_json::to_vec(g).expect("a consumer group serializes"),
                    );
                    v.freeze()
                });
                (key.freeze(), value)
            }
        }
    }

    /// Reads a record back; `None` for a layout this broker does not know
    /// (other key versions, damage), which is skipped.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetsRecord> {
        let mut k = Reader(key);
        match k.i16()? {
            0 | 1 => {
                let (group, topic, partition) = (k.string()?, k.string()?, k.i32()?);
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut v = Reader(v);
                        Some(match v.i16()? {
                            1 => {
                                let offset = v.i64()?;
                                let metadata = v.string()?;
                                let commit_timestamp = v.i64()?;
                                Committed {
                                    offset,
                                    leader_epoch: -1,
                                    metadata,
                                    commit_timestamp,
                                }
                            }
                            3 => Committed {
                                offset: v.i64()?,
                                leader_epoch: v.i32()?,
                                metadata: v.string()?,
                                commit_timestamp: v.i64()?,
                            },
                            _ => return None,
                        })
                    }
                };
                Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = k.string()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut v = Reader(v);
                        if v.i16()? != 3 {
                            return None;
                        }
                        let protocol_type = v.string()?;
                        let generation = v.i32()?;
                        let protocol = v.opt_string()?;
                        let leader = v.opt_string()?;
                        let state_timestamp = v.i64()?;
                        let n = v.i32()?;
                        let mut members = Vec::new();
                        for _ in 0..n.max(0) {
                            members.push(SnapshotMember {
                                id: v.string()?,
                                instance_id: v.opt_string()?,
                                client_id: v.string()?,
                                client_host: v.string()?,
                                rebalance_timeout_ms: v.i32()?,
                                session_timeout_ms: v.i32()?,
                                subscription: v.bytes()?,
                                assignment: v.bytes()?,
                            });
                        }
                        Some(GroupSnapshot {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            state_timestamp,
                            members,
                        })
                    }
                };
                Some(OffsetsRecord::Group { group, value })
            }
            CONSUMER_GROUP_KEY_VERSION => {
                let group = k.string()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut v = Reader(v);
                        if v.i16()? != 0 {
                            return None;
                        }
                        Some(Box::new(serde_json::from_slice(v.0).ok()?))
                    }
                };
                Some(OffsetsRecord::ConsumerGroup { group, value })
            }
            _ => None,
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        Some(Some(
            String::from_utf8(self.take(n as usize)?.to_vec()).ok()?,
        ))
    }
    fn string(&mut self) -> Option<String> {
        self.opt_string()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.i32()?;
        if n < 0 {
            return Some(Bytes::new());
        }
        Some(Bytes::copy_from_slice(self.take(n as usize)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let offset = OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(Committed {
                offset: 42,
                leader_epoch: 7,
                metadata: "meta".into(),
                commit_timestamp: 1_700_000_000_000,
            }),
        };
        let group = OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupSnapshot {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp: 9,
                members: vec![SnapshotMember {
                    id: "m-1".into(),
                    instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        for r in [
            offset,
            group,
            OffsetsRecord::Group {
                group: "gone".into(),
                value: None,
            },
            OffsetsRecord::ConsumerGroup {
                group: "new".into(),
                value: Some(Box::new(ConsumerGroup::new())),
            },
            OffsetsRecord::ConsumerGroup {
                group: "new".into(),
                value: None,
            },
        ] {
            let (k, v) = r.encode();
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
        }
        assert_eq!(OffsetsRecord::decode(&[0, 9], None), None);
        assert_eq!(OffsetsRecord::decode(&[0, 1, 0], None), None);
    }
}
