//! What a leader knows of each follower: how far its log matches, the next
//! offset to send, and the flow-control mode.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Unsure where the follower's log matches: one Append at a time.
    Probe { waiting: bool },
    /// Matching: Appends are pipelined up to `inflight_max`.
    Replicate,
}

#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// Offset up to which the follower's log is known to match.
    pub(super) matched: u64,
    /// `prev_end` of the next Append.
    pub(super) next: u64,
    pub(super) flow: Flow,
    /// End offsets of Appends in flight (replicate mode).
    pub(super) inflight: Vec<u64>,
    /// Heard from since the last check-quorum round.
    pub(super) active: bool,
    /// Tick of the last message heard from this follower.
    pub(super) last_heard: u64,
}

impl Progress {
    /// A follower just learned of: its log is probed from `next` down.
    pub(super) fn new(next: u64, now_tick: u64) -> Progress {
        Progress {
            matched: 0,
            next,
            flow: Flow::Probe { waiting: false },
            inflight: Vec::new(),
            active: true,
            last_heard: now_tick,
        }
    }
}
