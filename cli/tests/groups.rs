//! Consumer groups on a real broker with the clients people use: Debian's
//! confluent-kafka (librdkafka 2.0.2) and kcat, the newest confluent-kafka,
//! kafka-python and kafkajs (`clients/groups.py`, `clients/kafkajs_group.js`).
//! Within a group every record goes to one member (a queue); every group
//! gets every record (publish-subscribe); a killed member's partitions move
//! to the survivor; committed offsets survive SIGTERM and kill -9; a static
//! member restarts without a rebalance; 20 members settle over 200
//! partitions within a bound. The same with the KIP-848 consumer protocol
//! (`group.protocol=consumer`, newest confluent-kafka): server-side
//! assignment, incremental hand-over, regex subscriptions.

mod groups_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use groups_support::*;
use support::{clients_dir, run};

#[test]
fn two_members_share_forty_partitions_exactly_once_with_commit_on_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, n, parts) = ("queue", 100_000usize, 40);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), &n.to_string()],
    );
    // Both read slowly enough (about 5,000 records/s each) that the second
    // joins while the first is reading: a rebalance mid-stream.
    let slow = ["rill.pause_every=50"];
    let a = Member::start(&debian(), &broker, dir.path(), "a", topic, "shared", &slow);
    wait_until("the first member reads", Duration::from_secs(60), || {
        !a.records().is_empty()
    });
    let b = Member::start(&debian(), &broker, dir.path(), "b", topic, "shared", &slow);
    wait_until("every record read", Duration::from_secs(120), || {
        a.records().len() + b.records().len() >= n
    });
    let (ra, rb) = (a.records(), b.records());
    let (aa, ab) = (a.assignments(), b.assignments());
    a.stop();
    b.stop();
    assert!(!rb.is_empty(), "the second member read nothing");
    assert!(
        aa.len() >= 2,
        "the first member was never rebalanced: {aa:?}"
    );
    let mut all: Vec<(i32, i64)> = ra.iter().chain(&rb).copied().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        total,
        all.len(),
        "{} records were delivered twice",
        total - all.len()
    );
    assert_eq!(all.len(), n);
    let last_a: BTreeSet<i32> = aa.last().unwrap().iter().copied().collect();
    let last_b: BTreeSet<i32> = ab.last().unwrap().iter().copied().collect();
    assert!(last_a.is_disjoint(&last_b), "a partition with two owners");
    assert_eq!(last_a.len() + last_b.len(), parts as usize);
    let committed = committed(&broker, topic, "shared", parts);
    let per = (n / parts as usize) as i64;
    assert!(
        committed.values().all(|o| *o == per),
        "committed offsets are not last + 1: {committed:?}"
    );
    println!(
        "a read {}, b read {}; committed {per} on each of {parts} partitions",
        ra.len(),
        rb.len()
    );
}

#[test]
fn every_group_gets_every_record_with_the_newest_clients_and_kcat() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, n, parts) = ("pubsub", 3_000usize, 6);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), &n.to_string()],
    );
    let venv = test_clients().join("venv/bin/python");
    println!(
        "{}",
        groups_py(
            &venv,
            &broker,
            &["kafka-python", topic, "g-kafka-python", &n.to_string()]
        )
    );
    let clients = test_clients();
    let (ok, out, err) = run(
        Command::new("node")
            .arg(clients_dir().join("kafkajs_group.js"))
            .args([broker.addr().as_str(), topic, "g-kafkajs", &n.to_string()])
            .env("NODE_PATH", clients.join("node/node_modules")),
        Duration::from_secs(120),
    );
    assert!(ok, "kafkajs failed\n{out}\n{err}");
    println!("{out}");
    // The newest confluent-kafka as a group member.
    let m = Member::start(
        &venv,
        &broker,
        dir.path(),
        "newest",
        topic,
        "g-confluent",
        &[],
    );
    wait_until(
        "the newest confluent-kafka reads all",
        Duration::from_secs(60),
        || m.records().len() >= n,
    );
    let read: BTreeSet<(i32, i64)> = m.records().into_iter().collect();
    m.stop();
    assert_eq!(read.len(), n);
    // kcat's balanced consumer (Debian's librdkafka), two of them in one group.
    let kcat = |name: &str| {
        Command::new("kcat")
            .args([
                "-b",
                &broker.addr(),
                "-G",
                "g-kcat",
                topic,
                "-e",
                "-q",
                "-f",
                "%p %o\n",
            ])
            .args(["-X", "auto.offset.reset=earliest"])
            .stdout(std::fs::File::create(dir.path().join(name)).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut k1, mut k2) = (kcat("k1"), kcat("k2"));
    for k in [&mut k1, &mut k2] {
        let deadline = Instant::now() + Duration::from_secs(90);
        while k.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "kcat -G did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let union: BTreeSet<String> = ["k1", "k2"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.path().join(f))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(union.len(), n, "kcat -G read {} of {n}", union.len());
    // Each group committed everything: the topic's end on every partition.
    for group in ["g-kafka-python", "g-kafkajs", "g-confluent", "g-kcat"] {
        let c = committed(&broker, topic, group, parts);
        assert!(
            c.values().all(|o| *o == (n / parts as usize) as i64),
            "{group}: {c:?}"
        );
    }
}

#[test]
fn a_killed_members_partitions_move_to_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, parts) = ("failover", 8);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), "0"],
    );
    let a = Member::start(&debian(), &broker, dir.path(), "a", topic, "fo", &[]);
    let mut b = Member::start(&debian(), &broker, dir.path(), "b", topic, "fo", &[]);
    wait_until("both assigned", Duration::from_secs(60), || {
        let (aa, ab) = (a.assignments(), b.assignments());
        aa.last().is_some_and(|x| !x.is_empty())
            && ab.last().is_some_and(|x| !x.is_empty())
            && aa.last().unwrap().len() + ab.last().unwrap().len() == parts as usize
    });
    groups_py(
        &debian(),
        &broker,
        &["append", topic, &parts.to_string(), "0", "4000"],
    );
    wait_until("all read", Duration::from_secs(60), || {
        a.records().len() + b.records().len() >= 4000
    });
    assert!(!b.records().is_empty() && !a.records().is_empty());
    // Both commit within a second of reading.
    wait_until("everything committed", Duration::from_secs(30), || {
        committed(&broker, topic, "fo", parts)
            .values()
            .all(|o| *o == 500)
    });
    b.kill9();
    let killed_at = Instant::now();
    let b_read: BTreeSet<(i32, i64)> = b.records().into_iter().collect();
    // More records while b is gone: only a can read them, once b's session ends.
    groups_py(
        &debian(),
        &broker,
        &["append", topic, &parts.to_string(), "4000", "8000"],
    );
    let takeover = wait_until("a takes every partition", Duration::from_secs(40), || {
        a.assignments()
            .last()
            .is_some_and(|x| x.len() == parts as usize)
    });
    wait_until("a reads everything", Duration::from_secs(60), || {
        let mine: BTreeSet<(i32, i64)> = a.records().into_iter().collect();
        mine.union(&b_read).count() >= 8000
    });
    let ra = a.records();
    a.stop();
    let mine: BTreeSet<(i32, i64)> = ra.iter().copied().collect();
    assert_eq!(mine.len(), ra.len(), "a read a record twice");
    let twice: Vec<_> = mine.intersection(&b_read).collect();
    println!(
        "a took over {:.1} s after b was killed (session timeout 6 s); {} records read by both",
        killed_at.elapsed().min(takeover).as_secs_f64(),
        twice.len()
    );
    // b had committed all it read: nothing is delivered twice.
    assert!(
        twice.is_empty(),
        "{} records b had committed were delivered again",
        twice.len()
    );
    assert_eq!(mine.union(&b_read).count(), 8000, "records were lost");
}

#[test]
fn committed_offsets_survive_sigterm_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let (topic, parts) = ("durable", 4);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), "1000"],
    );
    let m = Member::start(&debian(), &broker, dir.path(), "m", topic, "d", &[]);
    wait_until("all read", Duration::from_secs(60), || {
        m.records().len() >= 1000
    });
    m.stop();
    let before = committed(&broker, topic, "d", parts);
    assert!(before.values().all(|o| *o == 250), "{before:?}");
    // Thousands of partitions more: a restarted broker listens while they
    // open, and the group coordinator must answer what clients retry
    // (COORDINATOR_LOAD_IN_PROGRESS) until its own partition is open.
    let (ok, _, err) = support::run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["topic", "create", "filler", "-p", "3000"])
            .env("RILL_BROKERS", broker.addr()),
        Duration::from_secs(120),
    );
    assert!(ok, "creating 3000 partitions: {err}");
    let status = broker.terminate();
    assert!(status.success());
    broker.restart();
    assert_eq!(
        committed(&broker, topic, "d", parts),
        before,
        "after SIGTERM"
    );
    groups_py(
        &debian(),
        &broker,
        &["append", topic, &parts.to_string(), "1000", "2000"],
    );
    let m = Member::start(&debian(), &broker, dir.path(), "m2", topic, "d", &[]);
    wait_until("the rest read", Duration::from_secs(60), || {
        m.records().len() >= 1000
    });
    assert!(
        m.records().iter().all(|(_, o)| *o >= 250),
        "the second run started before the commit"
    );
    m.stop();
    let after = committed(&broker, topic, "d", parts);
    assert!(after.values().all(|o| *o == 500), "{after:?}");
    broker.kill9();
    broker.restart();
    assert_eq!(
        committed(&broker, topic, "d", parts),
        after,
        "after kill -9"
    );
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, parts) = ("static", 6);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), "600"],
    );
    let statik = ["group.instance.id=member-a", "session.timeout.ms=20000"];
    let mut a = Member::start(&debian(), &broker, dir.path(), "a", topic, "st", &statik);
    let b = Member::start(
        &debian(),
        &broker,
        dir.path(),
        "b",
        topic,
        "st",
        &["session.timeout.ms=20000"],
    );
    wait_until("both assigned", Duration::from_secs(60), || {
        let (aa, ab) = (a.assignments(), b.assignments());
        aa.last().is_some_and(|x| !x.is_empty())
            && ab.last().is_some_and(|x| !x.is_empty())
            && aa.last().unwrap().len() + ab.last().unwrap().len() == parts as usize
    });
    std::thread::sleep(Duration::from_secs(2));
    let before_a = a.assignments().last().unwrap().clone();
    let b_assignments = b.assignments().len();
    a.kill9();
    let a2 = Member::start(&debian(), &broker, dir.path(), "a2", topic, "st", &statik);
    wait_until("the static member is back", Duration::from_secs(30), || {
        a2.assignments().last().is_some_and(|x| !x.is_empty())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a2.assignments().last().unwrap(),
        &before_a,
        "it got its partitions back"
    );
    assert_eq!(
        b.assignments().len(),
        b_assignments,
        "the other member was rebalanced"
    );
    a2.stop();
    b.stop();
}

/// 20 members over 200 partitions: how long until every member owns some
/// and every partition has exactly one owner.
fn twenty_members_settle(py: &Path, extra: &[&str], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, parts) = ("wide", 200);
    groups_py(py, &broker, &["produce", topic, &parts.to_string(), "200"]);
    let start = Instant::now();
    let members: Vec<Member> = (0..20)
        .map(|i| {
            Member::start(
                py,
                &broker,
                dir.path(),
                &format!("m{i}"),
                topic,
                "wide",
                extra,
            )
        })
        .collect();
    let settled = wait_until("20 members settle", Duration::from_secs(90), || {
        let owned: Vec<BTreeSet<i32>> = members.iter().map(Member::owned).collect();
        owned.iter().all(|a| !a.is_empty()) && {
            let all: BTreeSet<i32> = owned.iter().flatten().copied().collect();
            all.len() == parts as usize
                && owned.iter().map(BTreeSet::len).sum::<usize>() == parts as usize
        }
    });
    println!(
        "{what}: 20 members × 200 partitions settled {:.1} s after the first started ({:.1} s to start them)",
        start.elapsed().as_secs_f64(),
        (start.elapsed() - settled).as_secs_f64()
    );
    for m in members {
        m.stop();
    }
}

#[test]
fn twenty_members_settle_over_two_hundred_partitions() {
    twenty_members_settle(&debian(), &[], "classic, librdkafka 2.0.2");
}

#[test]
fn kip848_twenty_members_settle_over_two_hundred_partitions() {
    let venv = test_clients().join("venv/bin/python");
    twenty_members_settle(&venv, &[KIP848], "KIP-848, librdkafka 2.16");
}
