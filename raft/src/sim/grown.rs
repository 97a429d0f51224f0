//! A group grown by membership changes keeps its leader: check-quorum
//! counts the voters in force, and the simulator catches it when it does not.

use super::{Core, Faults, Sim};
use crate::node::{Bug, ConfChange, Role};

impl Sim {
    fn leader_id(&self) -> Option<u64> {
        self.live().into_iter().find(|id| {
            self.nodes[id]
                .raft
                .as_ref()
                .is_some_and(|r| r.role() == Role::Leader)
        })
    }

    fn raft(&self, id: u64) -> &Core {
        self.nodes[&id].raft.as_ref().expect("live")
    }

    /// Proposes `change` on the leader and steps until every live node has
    /// it in its membership (bounded).
    fn change_membership(&mut self, change: ConfChange) {
        let leader = self.leader_id().expect("a leader");
        let raft = self
            .nodes
            .get_mut(&leader)
            .expect("node")
            .raft
            .as_mut()
            .expect("live");
        raft.propose_conf_change(change)
            .unwrap_or_else(|e| panic!("{change:?} refused: {e:?}"));
        self.drain_ready(leader);
        for _ in 0..200 {
            self.step(false);
            let Some(leader) = self.leader_id() else {
                continue;
            };
            let m = self.raft(leader).membership().clone();
            let done = match &change {
                ConfChange::AddLearner(n) => m.learners.contains(n),
                ConfChange::Promote(n) => m.voters.contains(n),
                ConfChange::Remove(n) => !m.voters.contains(n) && !m.learners.contains(n),
            } && self.raft(leader).commit() >= self.raft(leader).log().last_end();
            if done {
                return;
            }
        }
        panic!("seed {}: {change:?} did not complete", self.seed);
    }
}

/// A group that grew from one voter to two by membership changes keeps its
/// leader on a healthy network: check-quorum counts the voters in force.
/// Counting the voters the node was built with (one), the leader saw less
/// than a quorum of the two and stepped down every election timeout.
fn grown_group_keeps_its_leader(bug: Option<Bug>) {
    for seed in 1..=20u64 {
        let mut sim = Sim::new(seed, 1, Faults::none(), bug, None);
        // Node 2 is the simulator's spare, built with config {1}.
        for _ in 0..100 {
            sim.step(false);
        }
        let leader = sim.leader_id().expect("the single voter leads");
        sim.change_membership(ConfChange::AddLearner(2));
        sim.change_membership(ConfChange::Promote(2));
        let term = sim.raft(leader).term();
        for _ in 0..500 {
            sim.step(false);
        }
        assert_eq!(
            sim.leader_id(),
            Some(leader),
            "seed {seed}: the leader changed"
        );
        assert_eq!(
            sim.raft(leader).term(),
            term,
            "seed {seed}: a new term began"
        );
    }
}

#[test]
fn a_group_that_grew_keeps_its_leader_on_a_healthy_network() {
    grown_group_keeps_its_leader(None);
}

#[test]
fn check_quorum_over_the_initial_voters_is_caught() {
    let caught = std::panic::catch_unwind(|| {
        grown_group_keeps_its_leader(Some(Bug::CheckQuorumInitialVoters))
    });
    let message = caught.expect_err("the grown-group case did not catch the bug");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("the leader changed") || message.contains("a new term began"),
        "caught for another reason: {message}"
    );
}
