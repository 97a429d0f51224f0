//! Manual replica assignments (CreateTopics, CreatePartitions): checked
//! against the live brokers. Pure; the handlers apply the result.

use std::collections::BTreeSet;

use rill_net::kafka_protocol::ResponseError;

use super::Failure;

fn refuse(message: String) -> Failure {
    (ResponseError::InvalidReplicaAssignment, message)
}

/// Checks replica lists, one per partition, numbered from `first_partition`:
/// each non-empty, without duplicates, naming only `live` brokers, and all
/// of the same length. Returns that length (the replication factor).
pub fn check(
    assignments: &[Vec<i32>],
    first_partition: i32,
    live: &[i32],
) -> Result<usize, Failure> {
    let mut factor = None;
    for (i, replicas) in assignments.iter().enumerate() {
        let p = first_partition + i as i32;
        if replicas.is_empty() {
            return Err(refuse(format!("partition {p} is assigned no broker")));
        }
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return Err(refuse(format!(
                "partition {p} names a broker twice: {replicas:?}"
            )));
        }
        if let Some(unknown) = replicas.iter().find(|b| !live.contains(b)) {
            return Err(refuse(format!(
                "partition {p} is assigned to broker {unknown}, which is not a live broker (live: {live:?})"
            )));
        }
        match factor {
            None => factor = Some(replicas.len()),
            Some(f) if f != replicas.len() => {
                return Err(refuse(format!(
                    "partition {p} has {} replicas where the others have {f}; all partitions need the same number",
                    replicas.len()
                )))
            }
            Some(_) => {}
        }
    }
    factor.ok_or_else(|| refuse("the assignment names no partitions".into()))
}

/// CreateTopics' assignments as (partition index, brokers): the indexes must
/// run 0, 1, 2, … in some order. Returns the replica lists by partition.
pub fn in_partition_order(mut assignments: Vec<(i32, Vec<i32>)>) -> Result<Vec<Vec<i32>>, Failure> {
    assignments.sort_by_key(|(p, _)| *p);
    for (want, (p, _)) in assignments.iter().enumerate() {
        if *p != want as i32 {
            return Err(refuse(format!(
                "assigned partitions must be numbered 0 to {} without gaps or repeats; found {p} where {want} belongs",
                assignments.len() - 1
            )));
        }
    }
    Ok(assignments.into_iter().map(|(_, b)| b).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_live_brokers_and_names_what_is_wrong() {
        assert_eq!(check(&[vec![0], vec![0]], 0, &[0]), Ok(1));
        let msg = |r: Result<usize, Failure>| r.unwrap_err().1;
        assert!(msg(check(&[vec![0], vec![3]], 0, &[0])).contains("broker 3"));
        assert!(msg(check(&[vec![0, 0]], 0, &[0])).contains("twice"));
        assert!(msg(check(&[vec![]], 4, &[0])).contains("partition 4"));
        assert!(msg(check(&[vec![0], vec![0, 1]], 0, &[0, 1])).contains("same number"));
        assert!(msg(check(&[], 0, &[0])).contains("no partitions"));
        assert_eq!(
            in_partition_order(vec![(1, vec![0]), (0, vec![1])]).unwrap(),
            vec![vec![1], vec![0]]
        );
        assert!(in_partition_order(vec![(0, vec![0]), (2, vec![0])]).is_err());
    }
}
