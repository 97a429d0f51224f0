use super::*;

const LIMITS: GroupLimits = GroupLimits {
    min_session_timeout_ms: 1_000,
    max_session_timeout_ms: 60_000,
    initial_rebalance_delay_ms: 0,
    consumer: crate::consumer::ConsumerLimits::DEFAULT,
};

fn join(member_id: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id.
fn new_member(g: &mut Group, now: i64, token: Token, effects: &mut Vec<Effect>) -> String {
    let r = g.join(now, token, join("", &["range"]), effects).unwrap();
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    assert!(g
        .join(now, token, join(&r.member_id, &["range"]), effects)
        .is_none());
    r.member_id
}

fn joins(effects: &[Effect]) -> Vec<(Token, JoinReply)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join(t, r) => Some((*t, r.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn two_members_join_sync_and_become_stable() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    // Alone and nobody pending: the join completes at once.
    let done = joins(&fx);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].1.generation, done[0].1.leader.as_str()),
        (1, a.as_str())
    );
    assert_eq!(g.state, GroupState::CompletingRebalance);
    fx.clear();
    assert!(g
        .sync(
            0,
            2,
            &a,
            None,
            1,
            (None, None),
            vec![(a.clone(), Bytes::from("all"))],
            &mut fx
        )
        .is_none());
    let Effect::SyncAfterPersist(replies) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(replies[0].1.assignment, Bytes::from("all"));
    assert_eq!(g.state, GroupState::Stable);

    // A second member: the first is told to rejoin by its heartbeat.
    fx.clear();
    let b = new_member(&mut g, 10, 3, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(11, &a, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    assert!(g.join(12, 4, join(&a, &["range"]), &mut fx).is_none());
    let done = joins(&fx);
    assert_eq!(done.len(), 2);
    let leader = done.iter().find(|(t, _)| *t == 4).unwrap();
    assert_eq!(leader.1.members.len(), 2, "the leader gets the member list");
    assert_eq!(leader.1.generation, 2);
    let follower = done.iter().find(|(t, _)| *t == 3).unwrap();
    assert!(follower.1.members.is_empty());
    fx.clear();
    // The follower syncs first and waits for the leader.
    assert!(g
        .sync(
            13,
            5,
            &b,
            None,
            2,
            (Some("consumer"), Some("range")),
            vec![],
            &mut fx
        )
        .is_none());
    assert!(fx.is_empty());
    g.sync(
        14,
        6,
        &a,
        None,
        2,
        (None, None),
        vec![
            (a.clone(), Bytes::from("p0")),
            (b.clone(), Bytes::from("p1")),
        ],
        &mut fx,
    );
    let Effect::SyncAfterPersist(replies) = &fx[0] else {
        panic!()
    };
    let mut got: Vec<_> = replies
        .iter()
        .map(|(t, r)| (*t, r.assignment.clone()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(5, Bytes::from("p1")), (6, Bytes::from("p0"))]);
    assert_eq!(g.heartbeat(15, &b, None, 2), Ok(()));
    assert_eq!(
        g.heartbeat(15, &b, None, 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat(15, "nobody", None, 2),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn an_expired_member_is_removed_and_the_rest_rebalance() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
    let b = new_member(&mut g, 0, 3, &mut fx);
    g.join(0, 4, join(&a, &["range"]), &mut fx);
    g.sync(0, 5, &a, None, 2, (None, None), vec![], &mut fx);
    g.sync(0, 6, &b, None, 2, (None, None), vec![], &mut fx);
    assert_eq!(g.state, GroupState::Stable);
    fx.clear();
    // b heartbeats, a goes silent past its 10 s session.
    g.heartbeat(9_000, &b, None, 2).unwrap();
    g.tick(10_000, &mut fx);
    assert!(g.member(&a).is_none(), "a expired");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(10_001, &b, None, 2),
        Err(ResponseError::RebalanceInProgress)
    );
    g.join(10_002, 7, join(&b, &["range"]), &mut fx);
    let done = joins(&fx);
    assert_eq!(done.last().unwrap().1.leader, b, "the survivor leads");
    assert_eq!(g.generation, 3);
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
    let b = new_member(&mut g, 100, 3, &mut fx);
    fx.clear();
    // a keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    assert_eq!(
        g.heartbeat(9_000, &a, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    g.tick(15_000, &mut fx);
    assert!(g.member(&a).is_some());
    g.heartbeat(15_000, &a, None, 1).unwrap_err();
    g.tick(20_100, &mut fx);
    assert!(g.member(&a).is_none());
    assert_eq!(joins(&fx)[0].1.member_id, b);
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn leaving_and_the_last_member_leaving() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
    assert_eq!(
        g.leave(1, "x", None, &mut fx),
        Err(ResponseError::UnknownMemberId)
    );
    g.leave(1, &a, None, &mut fx).unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.members.is_empty());
    assert_eq!(g.generation, 2);
    assert_eq!(
        g.check_commit("", None, -1),
        Ok(()),
        "an empty group takes outside commits"
    );
}

#[test]
fn outside_commits_to_an_active_group_and_stale_generations_are_refused() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    assert_eq!(
        g.check_commit(&a, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
    assert_eq!(g.check_commit(&a, None, 1), Ok(()));
    assert_eq!(
        g.check_commit(&a, None, 0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("", None, -1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn incompatible_protocols_and_bad_timeouts() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    new_member(&mut g, 0, 1, &mut fx);
    let r = g.join(0, 2, join("", &["roundrobin"]), &mut fx).unwrap();
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut bad = join("", &["range"]);
    bad.session_timeout_ms = 10;
    assert_eq!(
        g.join(0, 3, bad, &mut fx).unwrap().error,
        Some(ResponseError::InvalidSessionTimeout)
    );
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let r = g
        .join(0, 1, join("", &["range", "cooperative-sticky"]), &mut fx)
        .unwrap();
    g.join(
        0,
        1,
        join(&r.member_id, &["range", "cooperative-sticky"]),
        &mut fx,
    );
    let a = r.member_id;
    g.sync(0, 2, &a, None, 1, (None, None), vec![], &mut fx);
    let r = g
        .join(0, 3, join("", &["cooperative-sticky", "range"]), &mut fx)
        .unwrap();
    g.join(
        0,
        3,
        join(&r.member_id, &["cooperative-sticky", "range"]),
        &mut fx,
    );
    let r2 = g
        .join(0, 4, join("", &["cooperative-sticky", "range"]), &mut fx)
        .unwrap();
    g.join(
        0,
        4,
        join(&r2.member_id, &["cooperative-sticky", "range"]),
        &mut fx,
    );
    g.join(0, 5, join(&a, &["range", "cooperative-sticky"]), &mut fx);
    assert_eq!(g.protocol.as_deref(), Some("cooperative-sticky"));
}

#[test]
fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let mut j = join("", &["range"]);
    j.instance_id = Some("i-1".into());
    assert!(
        g.join(0, 1, j.clone(), &mut fx).is_none(),
        "static members need no second join"
    );
    let a = joins(&fx)[0].1.member_id.clone();
    g.sync(
        0,
        2,
        &a,
        None,
        1,
        (None, None),
        vec![(a.clone(), Bytes::from("mine"))],
        &mut fx,
    );
    fx.clear();
    // Restarted: no member id, same instance id.
    let r = g.join(100, 3, j, &mut fx).unwrap();
    assert_eq!(r.error, None);
    assert_ne!(r.member_id, a);
    assert_eq!(r.generation, 1, "no rebalance");
    assert!(r.skip_assignment, "it led: it must not assign again");
    assert_eq!(g.state, GroupState::Stable);
    let s = g
        .sync(
            101,
            4,
            &r.member_id,
            Some("i-1"),
            1,
            (None, None),
            vec![],
            &mut fx,
        )
        .unwrap();
    assert_eq!(s.assignment, Bytes::from("mine"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(102, &a, Some("i-1"), 1),
        Err(ResponseError::FencedInstanceId)
    );
}

#[test]
fn an_assignment_that_was_not_persisted_starts_a_new_rebalance() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    g.sync(
        0,
        2,
        &a,
        None,
        1,
        (None, None),
        vec![(a.clone(), Bytes::from("x"))],
        &mut fx,
    );
    assert_eq!(g.state, GroupState::Stable);
    g.assignment_not_persisted(1, 0, &mut fx);
    assert_eq!(
        g.state,
        GroupState::Stable,
        "an older generation's failure changes nothing"
    );
    g.assignment_not_persisted(1, 1, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(2, &a, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    assert!(g.member(&a).unwrap().assignment.is_empty());
}

#[test]
fn snapshots_restore_a_stable_group() {
    let mut g = Group::new("g", 0, LIMITS);
    let mut fx = Vec::new();
    let a = new_member(&mut g, 0, 1, &mut fx);
    g.sync(
        0,
        2,
        &a,
        None,
        1,
        (None, None),
        vec![(a.clone(), Bytes::from("mine"))],
        &mut fx,
    );
    let back = Group::restore("g", g.snapshot(5), 1_000, LIMITS);
    assert_eq!(back.state, GroupState::Stable);
    assert_eq!(back.generation, 1);
    assert_eq!(back.member(&a).unwrap().assignment, Bytes::from("mine"));
    assert_eq!(back.member(&a).unwrap().expires_at, 11_000);
}
