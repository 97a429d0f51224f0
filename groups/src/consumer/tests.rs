use super::test_image::Image;
use super::*;

fn image(topics: &[(&str, u8, i32)]) -> Image {
    Image {
        version: 1,
        topics: topics
            .iter()
            .map(|(n, id, p)| (n.to_string(), (Uuid::from_bytes([*id; 16]), *p)))
            .collect(),
    }
}

fn join(id: &str, topics: &[&str]) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        epoch: 0,
        rebalance_timeout_ms: 10_000,
        topics: Some(topics.iter().map(|s| s.to_string()).collect()),
        owned: Some(Partitions::new()),
        ..Default::default()
    }
}

fn beat(id: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Default::default()
    }
}

fn count(p: &Partitions) -> usize {
    p.values().map(|s| s.len()).sum()
}

fn overlap(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|q| !q.is_disjoint(ps)))
}

#[test]
fn a_second_member_gets_half_only_after_the_first_revokes_it() {
    let img = image(&[("t", 1, 8)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    let (a, changed) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
    assert!(changed);
    assert_eq!((a.epoch, count(a.assignment.as_ref().unwrap())), (1, 8));
    let a_owns = a.assignment.unwrap();
    let (b, _) = g.heartbeat(10, join("b", &["t"]), &img, &limits).unwrap();
    // b is at epoch 2 but its partitions are a's until a lets go.
    assert_eq!(b.epoch, 2);
    assert_eq!(count(b.assignment.as_ref().unwrap()), 0);
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    // a hears it must give up four, and stays at epoch 1.
    let (a2, _) = g
        .heartbeat(20, beat("a", 1, &a_owns), &img, &limits)
        .unwrap();
    assert_eq!(a2.epoch, 1);
    let a_keeps = a2.assignment.unwrap();
    assert_eq!(count(&a_keeps), 4);
    // b asks again before a confirmed: still nothing.
    let (b2, _) = g
        .heartbeat(30, beat("b", 2, &Partitions::new()), &img, &limits)
        .unwrap();
    assert_eq!(b2.assignment.map(|p| count(&p)), Some(0));
    // a confirms; b then gets the other four.
    let (a3, _) = g
        .heartbeat(40, beat("a", 1, &a_keeps), &img, &limits)
        .unwrap();
    assert_eq!(a3.epoch, 2);
    let (b3, _) = g
        .heartbeat(50, beat("b", 2, &Partitions::new()), &img, &limits)
        .unwrap();
    let b_owns = b3.assignment.unwrap();
    assert_eq!(count(&b_owns), 4);
    assert!(!overlap(&a_keeps, &b_owns));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_are_checked() {
    let img = image(&[("t", 1, 4)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    let (a, _) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
    let owned = a.assignment.unwrap();
    let err = g
        .heartbeat(1, beat("a", 7, &owned), &img, &limits)
        .unwrap_err();
    assert_eq!(err.error, ResponseError::FencedMemberEpoch);
    let err = g
        .heartbeat(1, beat("x", 1, &owned), &img, &limits)
        .unwrap_err();
    assert_eq!(err.error, ResponseError::UnknownMemberId);
    assert_eq!(g.check_member_epoch("a", 1), Ok(()));
    assert_eq!(
        g.check_member_epoch("a", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.check_member_epoch("a", 2),
        Err(ResponseError::FencedMemberEpoch)
    );
    assert_eq!(
        g.check_member_epoch("", -1),
        Err(ResponseError::UnknownMemberId)
    );
    // A lost answer: the previous epoch with a subset of the partitions is fine.
    g.heartbeat(2, join("b", &["t"]), &img, &limits).unwrap();
    g.heartbeat(3, beat("a", 1, &owned), &img, &limits).unwrap();
    let keep: Partitions = g.members["a"].assigned.clone();
    let (a3, _) = g.heartbeat(4, beat("a", 1, &keep), &img, &limits).unwrap();
    assert_eq!(a3.epoch, 2);
    assert!(g.heartbeat(5, beat("a", 1, &keep), &img, &limits).is_ok());
}

#[test]
fn leaving_expiring_and_fencing_hand_partitions_to_the_others() {
    let img = image(&[("t", 1, 6)]);
    let limits = ConsumerLimits {
        session_timeout_ms: 1_000,
        ..Default::default()
    };
    let mut g = ConsumerGroup::new();
    g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
    g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
    g.heartbeat(0, join("c", &["t"]), &img, &limits).unwrap();
    // c leaves: the target moves its partitions to a and b.
    let (r, changed) = g
        .heartbeat(
            10,
            beat("c", LEAVE_EPOCH, &Partitions::new()),
            &img,
            &limits,
        )
        .unwrap();
    assert!(changed && r.epoch == LEAVE_EPOCH);
    assert_eq!(
        count(&g.target["a"]) + count(&g.target["b"]),
        6,
        "{:?}",
        g.target
    );
    // b goes silent: after its session, a's target is everything.
    g.heartbeat(
        900,
        beat("a", g.members["a"].epoch, &g.members["a"].assigned.clone()),
        &img,
        &limits,
    )
    .unwrap();
    let gone = g.tick(1_001, &img);
    assert_eq!(gone, vec!["b".to_string()]);
    assert_eq!(count(&g.target["a"]), 6);
    let (a, _) = g
        .heartbeat(
            1_002,
            beat("a", g.members["a"].epoch, &g.members["a"].assigned.clone()),
            &img,
            &limits,
        )
        .unwrap();
    assert_eq!(count(a.assignment.as_ref().unwrap()), 6);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let img = image(&[("t", 1, 4)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    let (a, _) = g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
    let owned = a.assignment.unwrap();
    g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
    g.heartbeat(100, beat("a", 1, &owned), &img, &limits)
        .unwrap();
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    // It keeps reporting all four as owned, past its 10 s rebalance timeout.
    g.heartbeat(5_000, beat("a", 1, &owned), &img, &limits)
        .unwrap();
    assert_eq!(g.next_due(), Some(10_100));
    assert_eq!(g.tick(10_100, &img), vec!["a".to_string()]);
    let (b, _) = g
        .heartbeat(10_200, beat("b", 2, &Partitions::new()), &img, &limits)
        .unwrap();
    assert_eq!(count(b.assignment.as_ref().unwrap()), 4);
}

#[test]
fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
    let img = image(&[("t", 1, 4)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    let mut s = join("s1", &["t"]);
    s.instance_id = Some("inst".into());
    let (a, _) = g.heartbeat(0, s.clone(), &img, &limits).unwrap();
    g.heartbeat(0, join("b", &["t"]), &img, &limits).unwrap();
    g.heartbeat(
        1,
        beat("s1", a.epoch, &a.assignment.clone().unwrap()),
        &img,
        &limits,
    )
    .unwrap();
    let keep = g.members["s1"].assigned.clone();
    let mut hb = beat("s1", 1, &keep);
    hb.instance_id = Some("inst".into());
    g.heartbeat(2, hb, &img, &limits).unwrap();
    g.heartbeat(3, beat("b", 2, &Partitions::new()), &img, &limits)
        .unwrap();
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let epoch = g.epoch;
    let mine = g.members["s1"].assigned.clone();
    // It leaves for now (-2) and comes back under a new member id.
    let mut leave = beat("s1", STATIC_LEAVE_EPOCH, &Partitions::new());
    leave.instance_id = Some("inst".into());
    g.heartbeat(4, leave, &img, &limits).unwrap();
    // Another instance of the same id cannot take it while it is held.
    let mut other = join("s2", &["t"]);
    other.instance_id = Some("inst".into());
    let (back, _) = g.heartbeat(5, other, &img, &limits).unwrap();
    assert_eq!(back.assignment.as_ref(), Some(&mine));
    assert_eq!(g.epoch, epoch, "no rebalance");
    assert!(!g.members.contains_key("s1"));
    // While it is active, a second process with the same instance is refused.
    let mut third = join("s3", &["t"]);
    third.instance_id = Some("inst".into());
    let err = g.heartbeat(6, third, &img, &limits).unwrap_err();
    assert_eq!(err.error, ResponseError::UnreleasedInstanceId);
}

#[test]
fn regex_subscriptions_follow_new_topics() {
    let mut img = image(&[("orders-eu", 1, 2), ("payments", 2, 2)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    let mut hb = join("a", &[]);
    hb.topics = None;
    hb.regex = Some("orders-.*".into());
    let (a, _) = g.heartbeat(0, hb, &img, &limits).unwrap();
    assert_eq!(count(a.assignment.as_ref().unwrap()), 2);
    img.topics
        .insert("orders-us".into(), (Uuid::from_bytes([3; 16]), 3));
    img.version += 1;
    let (a2, changed) = g
        .heartbeat(1, beat("a", a.epoch, &a.assignment.unwrap()), &img, &limits)
        .unwrap();
    assert!(changed);
    assert_eq!(count(a2.assignment.as_ref().unwrap()), 5);
    let mut bad = join("b", &[]);
    bad.regex = Some("(".into());
    assert_eq!(
        g.heartbeat(2, bad, &img, &limits).unwrap_err().error,
        ResponseError::InvalidRegularExpression
    );
}

#[test]
fn a_snapshot_restores_the_group() {
    let img = image(&[("t", 1, 4)]);
    let limits = ConsumerLimits::default();
    let mut g = ConsumerGroup::new();
    g.heartbeat(0, join("a", &["t"]), &img, &limits).unwrap();
    let json = serde_json::to_vec(&g).unwrap();
    let back: ConsumerGroup = serde_json::from_slice(&json).unwrap();
    let back = back.restore(100, &limits);
    assert_eq!(back.members["a"].assigned, g.members["a"].assigned);
    assert_eq!(back.members["a"].expires_at, 100 + 45_000);
    assert_eq!(
        (back.epoch, back.assignment_epoch),
        (g.epoch, g.assignment_epoch)
    );
}
