//! The classic protocol's range assignor, run by the member the
//! coordinator names leader.

use std::collections::BTreeMap;

use crate::offsets::TopicPartition;

/// The range assignor: per topic, the members subscribed to it (by id)
/// each take a contiguous run of its partitions, the first ones one more.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|(m, _)| (m.clone(), Vec::new()))
        .collect();
    for (topic, &n) in partitions {
        let mut subs: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subs.sort();
        if subs.is_empty() {
            continue;
        }
        let (per, extra) = (n / subs.len() as i32, n % subs.len() as i32);
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            for p in next..next + take {
                out.get_mut(*m)
                    .expect("a member")
                    .push(TopicPartition::new(topic.clone(), p));
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_splits_each_topic() {
        let members = vec![
            ("b".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("a".to_string(), vec!["t".to_string()]),
        ];
        let parts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let got = range_assign(&members, &parts);
        let names = |v: &Vec<TopicPartition>| v.iter().map(|tp| tp.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&got["a"]), vec!["t-0", "t-1", "t-2"]);
        assert_eq!(names(&got["b"]), vec!["t-3", "t-4", "u-0", "u-1"]);
    }
}
