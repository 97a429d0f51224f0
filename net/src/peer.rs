//! Rill's peer protocol between brokers: Raft messages of any number of
//! groups (partitions) in one length-prefixed frame, so the traffic of a
//! broker pair shares one connection and one write per flush.
//!
//! ```text
//! frame  := u32 length (of what follows) | u32 header length | header | body
//! header := rkyv archive of FrameHeader: the cluster id, then each message
//!           without its entries' data (group, from, to, term, kind, entry
//!           boundaries and lengths)
//! body   := the entries' data (record batches) back to back, as stored
//! ```
//!
//! Decoding checks the archive (rkyv's validation), the cluster id (a peer
//! of another cluster is refused, never stepped), and that the entries'
//! lengths add up to the body; entry data are slices of the received frame,
//! not copies.

use bytes::{BufMut, Bytes, BytesMut};
use rill_raft::log::{Entry, Membership};
use rill_raft::node::{Message, MessageKind};

/// The frame header: every message of the frame, entries without data.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FrameHeader {
    pub cluster: String,
    pub messages: Vec<MessageHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageHeader {
    pub group: u64,
    pub from: u64,
    pub to: u64,
    pub term: u64,
    pub kind: KindHeader,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum KindHeader {
    PreVote {
        last_end: u64,
        last_term: u64,
    },
    PreVoteResp {
        granted: bool,
    },
    Vote {
        last_end: u64,
        last_term: u64,
        force: bool,
    },
    VoteResp {
        granted: bool,
    },
    Append {
        prev_end: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<EntryHeader>,
    },
    AppendResp {
        success: bool,
        end: u64,
        hint_term: u64,
        abstaining: bool,
    },
    Snapshot {
        end: u64,
        term: u64,
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
    TimeoutNow,
}

/// An entry's boundaries; its `len` bytes of data are in the body.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EntryHeader {
    pub term: u64,
    pub start: u64,
    pub end: u64,
    pub len: u32,
    /// (voters, learners) of a membership change.
    pub conf: Option<(Vec<u64>, Vec<u64>)>,
}

/// Why a frame was refused; nothing of it is delivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("frame of {have} bytes is shorter than it says ({want})")]
    Short { have: usize, want: usize },
    #[error("frame header does not decode: {0}")]
    Header(String),
    #[error("peer of cluster `{theirs}` (this is `{ours}`)")]
    OtherCluster { ours: String, theirs: String },
    #[error("entries need {want} bytes of body, the frame has {have}")]
    Body { have: usize, want: usize },
}

fn conf_of(m: &Membership) -> (Vec<u64>, Vec<u64>) {
    (
        m.voters.iter().copied().collect(),
        m.learners.iter().copied().collect(),
    )
}

fn membership((voters, learners): (Vec<u64>, Vec<u64>)) -> Membership {
    Membership {
        voters: voters.into_iter().collect(),
        learners: learners.into_iter().collect(),
    }
}

/// One frame carrying `messages` (any groups, one destination broker).
pub fn encode_frame(cluster: &str, messages: &[Message]) -> Bytes {
    let mut body: Vec<&Bytes> = Vec::new();
    let headers = messages
        .iter()
        .map(|m| MessageHeader {
            group: m.group,
            from: m.from,
            to: m.to,
            term: m.term,
            kind: match &m.kind {
                MessageKind::PreVote {
                    last_end,
                    last_term,
                } => KindHeader::PreVote {
                    last_end: *last_end,
                    last_term: *last_term,
                },
                MessageKind::PreVoteResp { granted } => {
                    KindHeader::PreVoteResp { granted: *granted }
                }
                MessageKind::Vote {
                    last_end,
                    last_term,
                    force,
                } => KindHeader::Vote {
                    last_end: *last_end,
                    last_term: *last_term,
                    force: *force,
                },
                MessageKind::VoteResp { granted } => KindHeader::VoteResp { granted: *granted },
                MessageKind::Append {
                    prev_end,
                    prev_term,
                    entries,
                    commit,
                } => KindHeader::Append {
                    prev_end: *prev_end,
                    prev_term: *prev_term,
                    commit: *commit,
                    entries: entries
                        .iter()
                        .map(|e| {
                            body.push(&e.data);
                            EntryHeader {
                                term: e.term,
                                start: e.start,
                                end: e.end,
                                len: u32::try_from(e.data.len()).expect("an entry under 4 GiB"),
                                conf: e.conf.as_ref().map(conf_of),
                            }
                        })
                        .collect(),
                },
                MessageKind::AppendResp {
                    success,
                    end,
                    hint_term,
                    abstaining,
                } => KindHeader::AppendResp {
                    success: *success,
                    end: *end,
                    hint_term: *hint_term,
                    abstaining: *abstaining,
                },
                MessageKind::Snapshot { end, term, conf } => {
                    let (voters, learners) = conf_of(conf);
                    KindHeader::Snapshot {
                        end: *end,
                        term: *term,
                        voters,
                        learners,
                    }
                }
                MessageKind::TimeoutNow => KindHeader::TimeoutNow,
            },
        })
        .collect();
    let header = FrameHeader {
        cluster: cluster.to_string(),
        messages: headers,
    };
    let archived =
        rkyv::to_bytes::<rkyv::rancor::Error>(&header).expect("a frame header serializes");
    let body_len: usize = body.iter().map(|b| b.len()).sum();
    let mut out = BytesMut::with_capacity(8 + archived.len() + body_len);
    out.put_u32((4 + archived.len() + body_len) as u32);
    out.put_u32(archived.len() as u32);
    out.put_slice(&archived);
    for b in body {
        out.put_slice(b);
    }
    out.freeze()
}

/// The messages of one whole frame (as [`encode_frame`] wrote it, length
/// prefix included), if it is intact and of cluster `cluster`.
pub fn decode_frame(cluster: &str, frame: Bytes) -> Result<Vec<Message>, PeerError> {
    let short = |want| PeerError::Short {
        have: frame.len(),
        want,
    };
    if frame.len() < 8 {
        return Err(short(8));
    }
    let total = u32::from_be_bytes(frame[..4].try_into().expect("4")) as usize;
    let header_len = u32::from_be_bytes(frame[4..8].try_into().expect("4")) as usize;
    if frame.len() != 4 + total || total < 4 + header_len {
        return Err(short((4 + total).max(8 + header_len)));
    }
    // rkyv reads the archive in place and wants it aligned: the small
    // header is copied, the body is not.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(header_len);
    aligned.extend_from_slice(&frame[8..8 + header_len]);
    let header = rkyv::from_bytes::<FrameHeader, rkyv::rancor::Error>(&aligned)
        .map_err(|e| PeerError::Header(e.to_string()))?;
    if header.cluster != cluster {
        return Err(PeerError::OtherCluster {
            ours: cluster.to_string(),
            theirs: header.cluster,
        });
    }
    let body = frame.slice(8 + header_len..);
    let want: usize = header
        .messages
        .iter()
        .map(|m| match &m.kind {
            KindHeader::Append { entries, .. } => entries.iter().map(|e| e.len as usize).sum(),
            _ => 0,
        })
        .sum();
    if want != body.len() {
        return Err(PeerError::Body {
            have: body.len(),
            want,
        });
    }
    let mut at = 0usize;
    Ok(header
        .messages
        .into_iter()
        .map(|m| Message {
            group: m.group,
            from: m.from,
            to: m.to,
            term: m.term,
            kind: match m.kind {
                KindHeader::PreVote {
                    last_end,
                    last_term,
                } => MessageKind::PreVote {
                    last_end,
                    last_term,
                },
                KindHeader::PreVoteResp { granted } => MessageKind::PreVoteResp { granted },
                KindHeader::Vote {
                    last_end,
                    last_term,
                    force,
                } => MessageKind::Vote {
                    last_end,
                    last_term,
                    force,
                },
                KindHeader::VoteResp { granted } => MessageKind::VoteResp { granted },
                KindHeader::Append {
                    prev_end,
                    prev_term,
                    commit,
                    entries,
                } => MessageKind::Append {
                    prev_end,
                    prev_term,
                    commit,
                    entries: entries
                        .into_iter()
                        .map(|e| {
                            let data = body.slice(at..at + e.len as usize);
                            at += e.len as usize;
                            Entry {
                                term: e.term,
                                start: e.start,
                                end: e.end,
                                data,
                                conf: e.conf.map(membership),
                            }
                        })
                        .collect(),
                },
                KindHeader::AppendResp {
                    success,
                    end,
                    hint_term,
                    abstaining,
                } => MessageKind::AppendResp {
                    success,
                    end,
                    hint_term,
                    abstaining,
                },
                KindHeader::Snapshot {
                    end,
                    term,
                    voters,
                    learners,
                } => MessageKind::Snapshot {
                    end,
                    term,
                    conf: membership((voters, learners)),
                },
                KindHeader::TimeoutNow => MessageKind::TimeoutNow,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Vec<Message> {
        let entry = |start, end, data: &'static [u8]| Entry {
            term: 3,
            start,
            end,
            data: Bytes::from_static(data),
            conf: None,
        };
        let mut conf = entry(7, 8, b"");
        conf.conf = Some(Membership {
            voters: [1, 2, 3].into(),
            learners: [4].into(),
        });
        let m = |group, kind| Message {
            group,
            from: 1,
            to: 2,
            term: 3,
            kind,
        };
        vec![
            m(
                7,
                MessageKind::Append {
                    prev_end: 0,
                    prev_term: 0,
                    entries: vec![entry(0, 5, b"batch-one"), entry(5, 7, b"two"), conf],
                    commit: 0,
                },
            ),
            m(
                8,
                MessageKind::Append {
                    prev_end: 10,
                    prev_term: 2,
                    entries: vec![],
                    commit: 10,
                },
            ),
            m(
                9,
                MessageKind::Vote {
                    last_end: 4,
                    last_term: 2,
                    force: true,
                },
            ),
            m(9, MessageKind::PreVoteResp { granted: false }),
            m(
                10,
                MessageKind::AppendResp {
                    success: false,
                    end: 3,
                    hint_term: 1,
                    abstaining: true,
                },
            ),
            m(
                11,
                MessageKind::Snapshot {
                    end: 40,
                    term: 2,
                    conf: Membership {
                        voters: [1, 2].into(),
                        learners: Default::default(),
                    },
                },
            ),
            m(12, MessageKind::TimeoutNow),
        ]
    }

    #[test]
    fn messages_of_many_groups_round_trip_in_one_frame() {
        let sent = messages();
        let frame = encode_frame("c1", &sent);
        assert_eq!(decode_frame("c1", frame).unwrap(), sent);
        assert_eq!(decode_frame("c1", encode_frame("c1", &[])).unwrap(), vec![]);
    }

    #[test]
    fn a_peer_of_another_cluster_is_refused() {
        let frame = encode_frame("theirs", &messages());
        assert_eq!(
            decode_frame("ours", frame),
            Err(PeerError::OtherCluster {
                ours: "ours".into(),
                theirs: "theirs".into()
            })
        );
    }

    #[test]
    fn damaged_frames_are_errors_never_panics() {
        let frame = encode_frame("c1", &messages());
        for cut in 0..frame.len() {
            assert!(
                decode_frame("c1", frame.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        // Flip every byte of the header in turn: an error or the same frame
        // shape, never a panic or a body read out of bounds.
        let header_len = u32::from_be_bytes(frame[4..8].try_into().unwrap()) as usize;
        for i in 8..8 + header_len {
            let mut bad = frame.to_vec();
            bad[i] ^= 0xff;
            let _ = decode_frame("c1", Bytes::from(bad));
        }
    }

    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            0u64..5,
            0u64..1000,
            1u64..50,
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of((
                proptest::collection::btree_set(0u64..9, 0..4),
                proptest::collection::btree_set(0u64..9, 0..3),
            )),
        )
            .prop_map(|(term, start, len, data, conf)| Entry {
                term,
                start,
                end: start + len,
                data: Bytes::from(data),
                conf: conf.map(|(voters, learners)| Membership { voters, learners }),
            })
    }

    fn kind() -> impl Strategy<Value = MessageKind> {
        prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(last_end, last_term)| MessageKind::PreVote {
                last_end,
                last_term
            }),
            any::<bool>().prop_map(|granted| MessageKind::PreVoteResp { granted }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(last_end, last_term, force)| {
                MessageKind::Vote {
                    last_end,
                    last_term,
                    force,
                }
            }),
            any::<bool>().prop_map(|granted| MessageKind::VoteResp { granted }),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(entry(), 0..4),
                any::<u64>()
            )
                .prop_map(|(prev_end, prev_term, entries, commit)| {
                    MessageKind::Append {
                        prev_end,
                        prev_term,
                        entries,
                        commit,
                    }
                }),
            (any::<bool>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                |(success, end, hint_term, abstaining)| MessageKind::AppendResp {
                    success,
                    end,
                    hint_term,
                    abstaining,
                }
            ),
            Just(MessageKind::TimeoutNow),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (any::<u64>(), 1u64..9, 1u64..9, any::<u64>(), kind()).prop_map(
            |(group, from, to, term, kind)| Message {
                group,
                from,
                to,
                term,
                kind,
            },
        )
    }

    proptest! {
        #[test]
        fn any_messages_round_trip(messages in proptest::collection::vec(message(), 0..12)) {
            let frame = encode_frame("c", &messages);
            prop_assert_eq!(decode_frame("c", frame).unwrap(), messages);
        }
    }
}
