//! A node that lost acknowledged entries to damage (`abstain_through`)
//! takes no part in elections until it commits an entry of a later term,
//! and tells its leader so once it has caught up.

use bytes::Bytes;

use super::{Config, HardState, Message, MessageKind, Raft, Role};
use crate::log::Entry;
use crate::log::MemStorage;

fn node(abstain_through: Option<u64>) -> Raft<MemStorage> {
    let storage = MemStorage::new();
    for (term, start) in [(1, 0), (2, 1), (2, 2)] {
        storage.append(Entry {
            term,
            start,
            end: start + 1,
            data: Bytes::new(),
            conf: None,
        });
    }
    let hs = HardState {
        term: 3,
        vote: None,
        commit: 1,
        abstain_through,
    };
    Raft::new(Config::new(1, [1, 2, 3]), hs, storage)
}

fn from(from: u64, term: u64, kind: MessageKind) -> Message {
    Message {
        group: 0,
        from,
        to: 1,
        term,
        kind,
    }
}

/// Asks `r` for its vote for a candidate whose log ends at `last`
/// (offset, term); forced, as in a leadership transfer, so a leader heard
/// recently does not stand in the way.
fn vote_granted(r: &mut Raft<MemStorage>, candidate: u64, term: u64, last: (u64, u64)) -> bool {
    let ask = MessageKind::Vote {
        last_end: last.0,
        last_term: last.1,
        force: true,
    };
    r.step(from(candidate, term, ask));
    let ready = r.take_ready();
    ready
        .persisted_messages
        .iter()
        .chain(ready.messages.iter())
        .any(|m| matches!(m.kind, MessageKind::VoteResp { granted: true }))
}

#[test]
fn a_damaged_node_neither_campaigns_nor_votes_until_it_commits_a_later_term() {
    // Unharmed, it votes for any candidate whose log is at least its own:
    // after damage cut its log, that may be a candidate lacking entries it
    // had acknowledged.
    let mut healthy = node(None);
    assert!(
        vote_granted(&mut healthy, 2, 4, (3, 2)),
        "a log as long as its own"
    );
    let mut r = node(Some(3));
    for _ in 0..100 {
        r.tick();
    }
    assert_eq!(r.role(), Role::Follower, "it does not campaign");
    let ready = r.take_ready();
    assert!(ready.messages.is_empty() && ready.persisted_messages.is_empty());
    r.step(from(
        2,
        4,
        MessageKind::PreVote {
            last_end: 9,
            last_term: 9,
        },
    ));
    let ready = r.take_ready();
    assert!(ready
        .messages
        .iter()
        .all(|m| m.kind == MessageKind::PreVoteResp { granted: false }));
    let mut r = node(Some(3));
    assert!(!vote_granted(&mut r, 2, 9, (9, 9)), "even for a longer log");

    // A leader of term 4 (elected without it) brings it up to date; its
    // first answer in term 4 no longer says it abstains through the term.
    let mut r = node(Some(3));
    let entry = Entry {
        term: 4,
        start: 3,
        end: 4,
        data: Bytes::new(),
        conf: None,
    };
    r.step(from(
        2,
        4,
        MessageKind::Append {
            prev_end: 3,
            prev_term: 2,
            entries: vec![entry],
            commit: 4,
        },
    ));
    let _ = r.take_ready();
    r.persisted(4, 4);
    let ready = r.take_ready();
    assert_eq!(r.commit(), 4);
    assert_eq!(r.hard_state().abstain_through, None, "repaired");
    assert_eq!(ready.hard_state.and_then(|h| h.abstain_through), None);
    assert!(vote_granted(&mut r, 3, 5, (4, 4)), "it votes again");
}

#[test]
fn a_node_abstaining_through_its_leaders_term_says_so() {
    let mut r = node(Some(3));
    r.step(from(
        2,
        3,
        MessageKind::Append {
            prev_end: 3,
            prev_term: 2,
            entries: Vec::new(),
            commit: 3,
        },
    ));
    let ready = r.take_ready();
    let said = ready
        .messages
        .iter()
        .chain(ready.persisted_messages.iter())
        .find_map(|m| match m.kind {
            MessageKind::AppendResp { abstaining, .. } => Some(abstaining),
            _ => None,
        });
    assert_eq!(said, Some(true));
    assert_eq!(
        r.hard_state().abstain_through,
        Some(3),
        "term 3 gives nothing back"
    );
}
