//! What goes in and out of the core: node ids, the durable hard state, the
//! messages between nodes, and the [`Ready`] a driver takes after each step.

use crate::log::{Entry, Membership};

pub type NodeId = u64;

/// A Raft group: one partition's replicas (or the controller's). Every
/// message carries it, so the traffic of many groups can share the
/// connections between two brokers and be routed to its group on arrival.
pub type GroupId = u64;

/// The state that must survive a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    /// The highest offset known committed (the high watermark).
    pub commit: u64,
    /// Set by the driver when recovery found this node's synced log damaged
    /// and cut it while in this term: entries it may have acknowledged are
    /// gone, so its vote could elect a leader without them. It grants no
    /// (pre-)votes and stands in no election until it commits an entry of a
    /// later term — a leader elected without it, whose log holds everything
    /// committed (the voters it needed overlap every majority that committed
    /// with the lost acknowledgements, without it) — and then clears this.
    /// Safe however many replicas abstain; live while a majority does not.
    pub abstain_through: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// "Would you vote for me in term `msg.term`?" Changes no state (pre-vote).
    PreVote {
        last_end: u64,
        last_term: u64,
    },
    PreVoteResp {
        granted: bool,
    },
    /// `force` is set when the leader handed over leadership (TimeoutNow), so
    /// followers do not refuse it for having heard from a leader recently.
    Vote {
        last_end: u64,
        last_term: u64,
        force: bool,
    },
    VoteResp {
        granted: bool,
    },
    /// Entries after (`prev_end`, `prev_term`); empty entries make a heartbeat.
    Append {
        prev_end: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Success: the follower's log matches up to `end`. Failure: the
    /// follower's best guess of where it may match: (`end`, `hint_term`).
    AppendResp {
        success: bool,
        end: u64,
        hint_term: u64,
        /// The follower lost acknowledged entries to damage and abstains
        /// from elections through this message's term: only a leader of a
        /// later term lets it vote again, so once it has caught up this
        /// leader hands over to another voter (see
        /// [`HardState::abstain_through`]).
        abstaining: bool,
    },
    /// The leader no longer has the entries the follower needs: restart the
    /// log at the leader's log start (`end`, `term`), with `conf` the
    /// membership in force there, and continue from there.
    Snapshot {
        end: u64,
        term: u64,
        conf: Membership,
    },
    /// Leadership transfer: start an election now.
    TimeoutNow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Output of one round of input; see the module docs for the contract.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    /// (end, term, membership) the log restarts at.
    pub restore: Option<(u64, u64, Membership)>,
    pub truncate_after: Option<u64>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    /// New commit index, if it moved.
    pub commit: Option<u64>,
    /// Stored entries the core needs but storage could not hand over at
    /// once: load the entries after each of these ends (up to the Append
    /// size), then call `Raft::entries_loaded`.
    pub fetch: Vec<u64>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        *self == Ready::default()
    }
}
