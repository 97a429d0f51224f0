//! Server-side partition assignors of the KIP-848 consumer protocol: the
//! group coordinator, not a client leader, decides who reads what.
//!
//! - `uniform` (the default): balanced — no member can take a partition
//!   from another and leave both closer to even — and sticky: a partition
//!   stays with its owner in the previous target unless balance needs it
//!   elsewhere. Works for members with different subscriptions.
//! - `range`: per topic, the subscribed members sorted by id get contiguous
//!   ranges (the first `n mod m` one partition more), so members subscribed
//!   to co-partitioned topics get the same partition numbers of each.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id.
pub type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors the broker offers, by the names clients ask for.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];
pub const DEFAULT_ASSIGNOR: &str = "uniform";

/// What an assignor sees: each member's subscribed topic ids, each topic's
/// partition count, and the previous target assignment.
pub struct AssignmentSpec<'a> {
    pub members: &'a BTreeMap<String, BTreeSet<Uuid>>,
    pub topics: &'a BTreeMap<Uuid, i32>,
    pub previous: &'a BTreeMap<String, Partitions>,
}

/// The target assignment by `assignor` (an unknown name gets `uniform`;
/// names are checked where requests come in).
pub fn assign(assignor: &str, spec: &AssignmentSpec<'_>) -> BTreeMap<String, Partitions> {
    match assignor {
        "range" => range(spec),
        _ => uniform(spec),
    }
}

fn uniform(spec: &AssignmentSpec<'_>) -> BTreeMap<String, Partitions> {
    let mut owner: HashMap<(Uuid, i32), &str> = HashMap::new();
    let mut count: BTreeMap<&str, usize> = spec.members.keys().map(|m| (m.as_str(), 0)).collect();
    let eligible = |m: &str, t: &Uuid| spec.members.get(m).is_some_and(|s| s.contains(t));
    // Keep what each member had, where it may still have it.
    for (m, parts) in spec.previous {
        let Some((m, _)) = spec.members.get_key_value(m) else {
            continue;
        };
        for (t, ps) in parts {
            let Some(&n) = spec.topics.get(t) else {
                continue;
            };
            if !eligible(m, t) {
                continue;
            }
            for &p in ps.iter().filter(|&&p| p < n) {
                if owner.insert((*t, p), m.as_str()).is_none() {
                    *count.get_mut(m.as_str()).expect("a member") += 1;
                }
            }
        }
    }
    // The rest, each to the least loaded member that subscribes to it.
    for (t, &n) in spec.topics {
        for p in 0..n {
            if owner.contains_key(&(*t, p)) {
                continue;
            }
            let best = count
                .iter()
                .filter(|(m, _)| eligible(m, t))
                .min_by_key(|(_, c)| **c)
                .map(|(m, _)| *m);
            if let Some(m) = best {
                owner.insert((*t, p), m);
                *count.get_mut(m).expect("a member") += 1;
            }
        }
    }
    // Balance: move a partition from a member to an eligible one with at
    // least two fewer until none can. Each move lowers the sum of squared
    // counts, so this ends; the bound only guards against a mistake.
    let mut sorted: Vec<(Uuid, i32)> = owner.keys().copied().collect();
    sorted.sort();
    let limit = sorted.len() * 4 + 16;
    let mut moves = 0;
    loop {
        let mut moved = false;
        for tp in &sorted {
            let from = owner[tp];
            let have = count[from];
            let to = count
                .iter()
                .filter(|(m, c)| **c + 1 < have && eligible(m, &tp.0))
                .min_by_key(|(_, c)| **c)
                .map(|(m, _)| *m);
            if let Some(to) = to {
                owner.insert(*tp, to);
                *count.get_mut(from).expect("a member") -= 1;
                *count.get_mut(to).expect("a member") += 1;
                moved = true;
                moves += 1;
            }
        }
        if !moved || moves > limit {
            break;
        }
    }
    let mut out: BTreeMap<String, Partitions> = spec
        .members
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    for ((t, p), m) in owner {
        out.get_mut(m)
            .expect("a member")
            .entry(t)
            .or_default()
            .insert(p);
    }
    out
}

fn range(spec: &AssignmentSpec<'_>) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = spec
        .members
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    for (t, &n) in spec.topics {
        let subscribers: Vec<&String> = spec
            .members
            .iter()
            .filter(|(_, s)| s.contains(t))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() || n <= 0 {
            continue;
        }
        let (each, extra) = (
            n as usize / subscribers.len(),
            n as usize % subscribers.len(),
        );
        let mut next = 0i32;
        for (i, m) in subscribers.into_iter().enumerate() {
            let take = (each + usize::from(i < extra)) as i32;
            if take > 0 {
                out.get_mut(m.as_str())
                    .expect("a member")
                    .entry(*t)
                    .or_default()
                    .extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn total(a: &BTreeMap<String, Partitions>, m: &str) -> usize {
        a[m].values().map(|s| s.len()).sum()
    }

    fn members(spec: &[(&str, &[u8])]) -> BTreeMap<String, BTreeSet<Uuid>> {
        spec.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|&t| topic(t)).collect()))
            .collect()
    }

    /// Every partition of a subscribed topic has exactly one owner, and
    /// only members subscribed to its topic own it.
    fn check_complete(
        a: &BTreeMap<String, Partitions>,
        members: &BTreeMap<String, BTreeSet<Uuid>>,
        topics: &BTreeMap<Uuid, i32>,
    ) {
        let mut seen = BTreeSet::new();
        for (m, parts) in a {
            for (t, ps) in parts {
                assert!(members[m].contains(t), "{m} owns a topic it does not read");
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}/{p} has two owners");
                    assert!(*p < topics[t]);
                }
            }
        }
        for (t, n) in topics {
            if members.values().any(|s| s.contains(t)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*t, p)), "{t}/{p} has no owner");
                }
            }
        }
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 40)].into();
        let two = members(&[("a", &[1]), ("b", &[1])]);
        let none = BTreeMap::new();
        let first = assign(
            "uniform",
            &AssignmentSpec {
                members: &two,
                topics: &topics,
                previous: &none,
            },
        );
        check_complete(&first, &two, &topics);
        assert_eq!((total(&first, "a"), total(&first, "b")), (20, 20));
        // A third member takes about a third, and only from the others'
        // surplus: nothing moves between a and b.
        let three = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let second = assign(
            "uniform",
            &AssignmentSpec {
                members: &three,
                topics: &topics,
                previous: &first,
            },
        );
        check_complete(&second, &three, &topics);
        let counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| total(&second, m)).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        for m in ["a", "b"] {
            let kept = &second[m][&topic(1)];
            assert!(
                kept.is_subset(&first[m][&topic(1)]),
                "{m} got another's partition"
            );
        }
        // Same members again: the same assignment.
        let again = assign(
            "uniform",
            &AssignmentSpec {
                members: &three,
                topics: &topics,
                previous: &second,
            },
        );
        assert_eq!(again, second);
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 6), (topic(2), 2)].into();
        let m = members(&[("a", &[1, 2]), ("b", &[1]), ("c", &[2])]);
        let a = assign(
            "uniform",
            &AssignmentSpec {
                members: &m,
                topics: &topics,
                previous: &BTreeMap::new(),
            },
        );
        check_complete(&a, &m, &topics);
        // 8 partitions over 3 members: c can only take topic 2's two.
        let counts: Vec<usize> = ["a", "b", "c"].iter().map(|x| total(&a, x)).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(
            counts[2] >= 1 && counts[0].abs_diff(counts[1]) <= 1,
            "{counts:?}"
        );
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 7), (topic(2), 7)].into();
        let m = members(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let a = assign(
            "range",
            &AssignmentSpec {
                members: &m,
                topics: &topics,
                previous: &BTreeMap::new(),
            },
        );
        check_complete(&a, &m, &topics);
        let of = |x: &str, t: u8| a[x][&topic(t)].iter().copied().collect::<Vec<_>>();
        assert_eq!(of("a", 1), vec![0, 1, 2]);
        assert_eq!(of("b", 1), vec![3, 4]);
        assert_eq!(of("c", 1), vec![5, 6]);
        assert_eq!(of("a", 2), of("a", 1), "co-partitioned topics line up");
    }

    #[test]
    fn members_without_topics_get_nothing_and_unsubscribed_topics_go_unassigned() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 3), (topic(9), 3)].into();
        let m = members(&[("a", &[1]), ("idle", &[])]);
        for name in ASSIGNORS {
            let a = assign(
                name,
                &AssignmentSpec {
                    members: &m,
                    topics: &topics,
                    previous: &BTreeMap::new(),
                },
            );
            check_complete(&a, &m, &topics);
            assert_eq!(total(&a, "a"), 3);
            assert_eq!(total(&a, "idle"), 0);
        }
    }
}
