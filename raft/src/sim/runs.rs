//! The simulator's runs: thousands of seeds under harsh faults, a replay of
//! one seed, and the deliberate bugs it must catch.

use super::{DriverBug, Faults, Sim};
use crate::node::Bug;

/// Runs one seed: `steps` faulty steps then the liveness check. Returns
/// (entries committed, membership changes made).
pub fn run_seed(
    seed: u64,
    nodes: u64,
    steps: u64,
    bug: Option<Bug>,
    driver_bug: Option<DriverBug>,
) -> (usize, u64) {
    let mut sim = Sim::new(seed, nodes, Faults::harsh(), bug, driver_bug);
    for _ in 0..steps {
        sim.step(true);
    }
    sim.check_liveness();
    (sim.committed_entries(), sim.conf_changes)
}

fn seeds_budget() -> (u64, std::time::Duration) {
    let seeds = std::env::var("RILL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let secs = std::env::var("RILL_SIM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    (seeds, std::time::Duration::from_secs(secs))
}

#[test]
fn thousands_of_seeds_keep_every_invariant() {
    let (seeds, budget) = seeds_budget();
    let start = std::time::Instant::now();
    let base: u64 = std::env::var("RILL_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (mut ran, mut committed, mut changes) = (0u64, 0usize, 0u64);
    for s in 0..seeds {
        if start.elapsed() > budget {
            break;
        }
        let nodes = if s % 2 == 0 { 3 } else { 5 };
        let (c, m) = run_seed(base + s, nodes, 400, None, None);
        committed += c;
        changes += m;
        ran += 1;
    }
    println!(
        "{ran} seeds (3 and 5 nodes), {committed} entries committed, {changes} membership changes, {:?}",
        start.elapsed()
    );
    assert!(
        changes > ran,
        "membership changes are exercised: {changes} over {ran} seeds"
    );
    assert!(
        ran >= seeds.min(1000),
        "only {ran} seeds ran within {budget:?}: the machine is too slow for a meaningful run"
    );
    assert!(
        committed > ran as usize * 5,
        "too little progress: {committed} entries over {ran} seeds"
    );
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("RILL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let nodes = std::env::var("RILL_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if seed % 2 == 1 { 3 } else { 5 });
    let (committed, changes) = run_seed(seed, nodes, 400, None, None);
    println!("seed {seed}: ok, {committed} entries committed, {changes} membership changes");
}

/// The checker must bite: each deliberate bug is caught within a few thousand seeds.
#[test]
fn broken_variants_are_caught() {
    for (name, bug, driver_bug) in [
        (
            "commit without a majority",
            Some(Bug::CommitWithoutMajority),
            None,
        ),
        (
            "acknowledge before persisting",
            None,
            Some(DriverBug::AckBeforePersist),
        ),
    ] {
        let caught = (1..=3000u64).find(|&seed| {
            std::panic::catch_unwind(|| run_seed(seed, 3, 400, bug, driver_bug)).is_err()
        });
        let seed = caught.unwrap_or_else(|| panic!("'{name}' was not caught in 3000 seeds"));
        println!("'{name}' caught at seed {seed}");
    }
}
