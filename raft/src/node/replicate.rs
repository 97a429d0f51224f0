//! Log replication: Appends from leader to follower, their answers, and the
//! commit index they move.

use super::progress::Flow;
use super::{Bug, MessageKind, NodeId, Raft, Role};
use crate::log::{Entry, Storage, Unavailable};

impl<S: Storage> Raft<S> {
    pub(super) fn handle_append(
        &mut self,
        leader: NodeId,
        prev_end: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let term = self.hs.term;
        if prev_end < self.hs.commit {
            // Already committed here; say how far we match for sure.
            let commit = self.hs.commit;
            self.send_after_persist(
                leader,
                term,
                MessageKind::AppendResp {
                    success: true,
                    end: commit,
                    hint_term: 0,
                    abstaining: self.abstaining_through_term(),
                },
            );
            return;
        }
        if self.log.term_at(prev_end) != Some(prev_term) {
            // The largest boundary here whose term is at most the leader's
            // `prev_term`: skips our entries of terms the leader never had,
            // and guarantees the leader's next guess moves strictly back.
            let hint_end = self
                .log
                .find_conflict_by_term(prev_end.min(self.log.last_end()), prev_term);
            let hint_term = self.log.term_at(hint_end).unwrap_or(0);
            self.send(
                leader,
                MessageKind::AppendResp {
                    success: false,
                    end: hint_end,
                    hint_term,
                    abstaining: self.abstaining_through_term(),
                },
            );
            return;
        }
        let mut last_new = prev_end;
        for e in entries {
            last_new = e.end;
            if self.log.term_at(e.end) == Some(e.term) && e.end <= self.log.last_end() {
                continue;
            }
            if e.start < self.log.last_end() {
                assert!(
                    e.start >= self.hs.commit,
                    "never truncate committed entries ({} < {})",
                    e.start,
                    self.hs.commit
                );
                self.log.truncate_after(e.start);
                self.refresh_conf();
                self.ready.entries.retain(|x| x.end <= e.start);
                self.ready.truncate_after = Some(
                    self.ready
                        .truncate_after
                        .map_or(e.start, |t| t.min(e.start)),
                );
                self.persisted_end = self.persisted_end.min(e.start);
            }
            self.append_local(e);
        }
        self.set_commit(leader_commit.min(last_new));
        self.send_after_persist(
            leader,
            term,
            MessageKind::AppendResp {
                success: true,
                end: last_new,
                hint_term: 0,
                abstaining: self.abstaining_through_term(),
            },
        );
    }

    pub(super) fn handle_append_resp(
        &mut self,
        from: NodeId,
        success: bool,
        end: u64,
        hint_term: u64,
        abstaining: bool,
    ) {
        let ticks = self.ticks;
        let log_start = self.log.start();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.active = true;
        p.last_heard = ticks;
        if success {
            if end > p.matched {
                p.matched = end;
            }
            p.next = p.next.max(p.matched);
            p.inflight.retain(|&e| e > end);
            if let Flow::Probe { .. } = p.flow {
                p.flow = Flow::Replicate;
                p.next = p.matched;
                p.inflight.clear();
            }
            self.maybe_commit();
            let last_end = self.log.last_end();
            if self.transfer_to == Some(from) && self.progress[&from].matched == last_end {
                self.send(from, MessageKind::TimeoutNow);
            }
            if abstaining && self.transfer_to.is_none() && self.progress[&from].matched == last_end
            {
                // It holds everything now, but votes only after a later term
                // than ours begins: hand over to a voter as up to date.
                let to = self.conf.voters.iter().copied().find(|&v| {
                    v != from && self.progress.get(&v).is_some_and(|p| p.matched == last_end)
                });
                if let Some(to) = to {
                    self.transfer_leadership(to);
                }
            }
            self.send_append(from, false);
        } else {
            // Back off to where the follower can match, skipping a whole
            // conflicting term at a time.
            // A follower whose best match lies before our log start cannot be
            // served entries any more: aim below the start so the next send
            // is a Snapshot (restart your log at our log start).
            let below_start =
                end < log_start || (end == log_start && hint_term != self.log.start_term());
            let guess = if below_start && log_start > 0 {
                log_start - 1
            } else {
                self.log.find_conflict_by_term(end, hint_term)
            };
            let p = self.progress.get_mut(&from).expect("present");
            p.flow = Flow::Probe { waiting: false };
            p.inflight.clear();
            if guess < p.matched {
                // Below what it acknowledged: it lost entries to damage on
                // recovery (or this answer is older than its acknowledgement).
                // Either way, count only what it surely holds.
                p.matched = guess;
            }
            p.next = guess.max(p.matched).min(p.next);
            self.send_append(from, false);
        }
    }

    pub(super) fn maybe_commit(&mut self) {
        let own = self.persisted_end.min(self.log.last_end());
        let candidate = if self.cfg.bug == Some(Bug::CommitWithoutMajority) {
            own
        } else {
            let mut matched: Vec<u64> = self
                .conf
                .voters
                .iter()
                .map(|v| {
                    if *v == self.cfg.id {
                        own
                    } else {
                        self.progress.get(v).map_or(0, |p| p.matched)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched[self.quorum() - 1]
        };
        // Only entries of the current term commit by counting (Raft §5.4.2).
        if candidate > self.hs.commit && self.log.term_at(candidate) == Some(self.hs.term) {
            self.set_commit(candidate);
            self.broadcast_append(false);
        }
        // A leader that the committed membership no longer lists steps down.
        if self.role == Role::Leader && !self.conf.voters.contains(&self.cfg.id) {
            let conf_end = self.log.last_conf_end();
            if conf_end.is_none_or(|e| e <= self.hs.commit) {
                let term = self.hs.term;
                self.become_follower(term, None);
            }
        }
    }

    pub(super) fn broadcast_append(&mut self, heartbeat: bool) {
        for p in self.peers() {
            self.send_append(p, heartbeat);
        }
    }

    /// Sends `to` what it lacks, within flow control; `heartbeat` sends even
    /// when there is nothing new (and re-probes a waiting follower).
    pub(super) fn send_append(&mut self, to: NodeId, heartbeat: bool) {
        let last_end = self.log.last_end();
        let (log_start, log_start_term) = (self.log.start(), self.log.start_term());
        let start_conf = self
            .log
            .start_conf()
            .cloned()
            .unwrap_or_else(|| self.initial_conf.clone());
        let inflight_max = self.cfg.inflight_max;
        let commit = self.hs.commit;
        let Some(p) = self.progress.get_mut(&to) else {
            return;
        };
        if p.next < log_start {
            if heartbeat || !matches!(p.flow, Flow::Probe { waiting: true }) {
                p.flow = Flow::Probe { waiting: true };
                self.send(
                    to,
                    MessageKind::Snapshot {
                        end: log_start,
                        term: log_start_term,
                        conf: start_conf,
                    },
                );
            }
            return;
        }
        if heartbeat && p.flow == Flow::Replicate && p.inflight.len() >= inflight_max {
            // Nothing acknowledged for a whole window: an Append was probably
            // lost. Fall back to probing from what is known to match.
            p.flow = Flow::Probe { waiting: false };
            p.inflight.clear();
            p.next = p.matched.max(log_start);
        }
        let paused = match p.flow {
            Flow::Probe { waiting } => waiting && !heartbeat,
            Flow::Replicate => p.inflight.len() >= inflight_max,
        };
        if paused {
            return;
        }
        let has_new = p.next < last_end;
        if !has_new && !heartbeat {
            return;
        }
        let prev_end = p.next;
        let entries = if has_new {
            match self.log.entries_after(prev_end, self.cfg.append_bytes_max) {
                Ok(entries) => entries,
                Err(Unavailable) => {
                    // Stored entries must be read first; `entries_loaded` retries.
                    if !self.ready.fetch.contains(&prev_end) {
                        self.ready.fetch.push(prev_end);
                    }
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let prev_term = self.log.term_at(prev_end).unwrap_or_else(|| {
            panic!(
                "progress points at an entry boundary: {prev_end} (log {}..{}, stable to {})",
                self.log.start(),
                self.log.last_end(),
                self.log.stable_end()
            )
        });
        let p = self.progress.get_mut(&to).expect("present");
        if let Some(last) = entries.last() {
            match p.flow {
                Flow::Replicate => {
                    p.next = last.end;
                    p.inflight.push(last.end);
                }
                Flow::Probe { .. } => p.flow = Flow::Probe { waiting: true },
            }
        } else if let Flow::Probe { .. } = p.flow {
            p.flow = Flow::Probe { waiting: true };
        }
        // A follower may only commit what it is known to hold.
        let commit = commit.min(prev_end.max(entries.last().map_or(0, |e| e.end)));
        self.send(
            to,
            MessageKind::Append {
                prev_end,
                prev_term,
                entries,
                commit,
            },
        );
    }
}
