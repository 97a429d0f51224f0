//! Consumer groups with Rill's own tools on a real broker: the `rill group`
//! commands (list, describe, reset offsets, delete) against groups of
//! Debian's and the newest clients, and rill-client group consumers sharing
//! a topic exactly once on the classic and KIP-848 protocols.

mod groups_support;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use groups_support::*;
use support::{clients_dir, run, Broker};

/// A runtime for rill-client members in a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn rill(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(args)
            .args(["--brokers", &broker.addr()]),
        Duration::from_secs(60),
    )
}

#[test]
fn rill_group_lists_describes_resets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, parts) = ("tools", 4);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), "400"],
    );
    let m = Member::start(&debian(), &broker, dir.path(), "m", topic, "tooled", &[]);
    wait_until("all read", Duration::from_secs(60), || {
        m.records().len() >= 400
    });
    wait_until("committed", Duration::from_secs(30), || {
        committed(&broker, topic, "tooled", parts)
            .values()
            .all(|o| *o == 100)
    });
    // While the member is in the group: described with its partitions; a reset is refused.
    let (ok, out, err) = rill(&broker, &["group", "describe", "tooled"]);
    assert!(ok, "{err}");
    assert!(out.contains("Stable"), "{out}");
    assert!(out.contains("tools-0,tools-1,tools-2,tools-3"), "{out}");
    let (ok, _, err) = rill(
        &broker,
        &[
            "group",
            "reset-offsets",
            "tooled",
            "--topic",
            topic,
            "--to",
            "earliest",
        ],
    );
    assert!(!ok && err.contains("active member"), "{err}");
    m.stop();

    let (ok, out, _) = rill(&broker, &["group", "list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("tooled") && l.contains("Empty")),
        "{out}"
    );
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out, err) = rill(&broker, &a);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let lags = |v: &serde_json::Value| -> Vec<(i64, i64)> {
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["committed"].as_i64().unwrap(), o["lag"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(
        lags(&json(&["group", "describe", "tooled"])),
        vec![(100, 0); 4]
    );
    for (to, want) in [("earliest", 0), ("42", 42), ("latest", 100)] {
        let (ok, _, err) = rill(
            &broker,
            &[
                "group",
                "reset-offsets",
                "tooled",
                "--topic",
                topic,
                "--to",
                to,
            ],
        );
        assert!(ok, "{err}");
        assert_eq!(
            lags(&json(&["group", "describe", "tooled"])),
            vec![(want, 100 - want); 4],
            "--to {to}"
        );
    }
    // By time: every record is older than now + 1 h, so the end.
    let later = format!("@{}", rill_storage::batch::now_ms() + 3_600_000);
    let (ok, _, err) = rill(
        &broker,
        &[
            "group",
            "reset-offsets",
            "tooled",
            "--topic",
            topic,
            "--to",
            &later,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        lags(&json(&["group", "describe", "tooled"])),
        vec![(100, 0); 4]
    );
    // A member resumes from the reset offsets.
    let (ok, _, err) = rill(
        &broker,
        &[
            "group",
            "reset-offsets",
            "tooled",
            "--topic",
            topic,
            "--to",
            "90",
        ],
    );
    assert!(ok, "{err}");
    let m = Member::start(&debian(), &broker, dir.path(), "m2", topic, "tooled", &[]);
    wait_until("the rest read", Duration::from_secs(60), || {
        m.records().len() >= 40
    });
    assert!(m.records().iter().all(|(_, o)| *o >= 90));
    m.stop();
    let (ok, out, err) = rill(&broker, &["group", "delete", "tooled"]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = rill(&broker, &["group", "list"]);
    assert!(!out.contains("tooled"), "{out}");
}

/// Two rill-client group consumers over 12 partitions, the second joining
/// mid-stream: each record once across the two (auto-commit commits before
/// a revocation), every assignment disjoint, committed offsets at the end.
/// With the consumer protocol the first member gives up only the half that
/// moves and keeps reading the rest through the rebalance.
fn rill_members_share_a_topic(protocol: rill_client::GroupProtocol) {
    use rill_client::{Client, ClientConfig, GroupConfig, GroupConsumer, OffsetReset, Rebalance};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (topic, n, parts) = ("rill-group", 24_000usize, 12);
    groups_py(
        &debian(),
        &broker,
        &["produce", topic, &parts.to_string(), &n.to_string()],
    );
    let rt = runtime();
    let addr = broker.addr();
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let events: Arc<Mutex<Vec<(usize, Rebalance)>>> = Arc::default();
    rt.block_on(async {
        let member = |k: usize, delay: Duration| {
            let (addr, seen, events) = (addr.clone(), seen.clone(), events.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
                let mut config = GroupConfig::new("rill-members");
                config.protocol = protocol;
                config.offset_reset = OffsetReset::Earliest;
                config.session_timeout = Duration::from_secs(10);
                config.heartbeat_interval = Duration::from_millis(300);
                // Slow enough (about 5,000 records/s) that the second member joins mid-stream.
                config.consumer.max_poll_records = 100;
                let mut c = GroupConsumer::new(client, config);
                let ev = events.clone();
                c.on_rebalance(move |e| ev.lock().unwrap().push((k, e.clone())));
                c.subscribe(&[topic]);
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let done = seen.lock().unwrap().len() >= n;
                    if done || Instant::now() > deadline {
                        break;
                    }
                    let records = c.poll(Duration::from_millis(200)).await.unwrap();
                    seen.lock()
                        .unwrap()
                        .extend(records.iter().map(|r| (r.partition, r.offset)));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                c.close().await.unwrap();
            })
        };
        let a = member(0, Duration::ZERO);
        let b = member(1, Duration::from_millis(1500));
        a.await.unwrap();
        b.await.unwrap();
    });
    let mut all = seen.lock().unwrap().clone();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        total,
        all.len(),
        "{} records delivered twice",
        total - all.len()
    );
    assert_eq!(all.len(), n);
    let events = events.lock().unwrap().clone();
    let assigned_b = events
        .iter()
        .any(|(k, e)| *k == 1 && matches!(e, Rebalance::Assigned(p) if !p.is_empty()));
    assert!(
        assigned_b,
        "the second member never got partitions: {events:?}"
    );
    let first_revoke = events.iter().find_map(|(k, e)| match e {
        Rebalance::Revoked(p) if *k == 0 => Some(p.len()),
        _ => None,
    });
    match protocol {
        rill_client::GroupProtocol::Classic => {
            assert_eq!(first_revoke, Some(12), "eager: all revoked: {events:?}")
        }
        rill_client::GroupProtocol::Consumer => assert_eq!(
            first_revoke,
            Some(6),
            "incremental: only the half that moves is revoked: {events:?}"
        ),
    }
    let c = committed(&broker, topic, "rill-members", parts);
    let per = (n / parts as usize) as i64;
    assert!(c.values().all(|o| *o == per), "{c:?}");
    println!(
        "rill-client members ({protocol:?}): {} rebalance events, committed {per} per partition",
        events.len()
    );
}

#[test]
fn rill_client_group_consumers_share_a_topic_exactly_once() {
    rill_members_share_a_topic(rill_client::GroupProtocol::Classic);
}

#[test]
fn rill_client_kip848_members_share_a_topic_exactly_once_handing_over_only_what_moves() {
    rill_members_share_a_topic(rill_client::GroupProtocol::Consumer);
}

/// rill-client on the consumer protocol: a pattern subscription follows a
/// topic created while it runs; an async commit is what the others resume
/// from; a static member closes (epoch -2) and a new process with its
/// instance id takes its partitions back while the other member sees no
/// rebalance.
#[test]
fn rill_client_kip848_patterns_follow_new_topics_and_a_static_member_returns_without_a_rebalance() {
    use rill_client::{Client, ClientConfig, GroupConfig, GroupConsumer, OffsetReset, Rebalance};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    groups_py(&debian(), &broker, &["produce", "rp-one", "2", "200"]);
    groups_py(&debian(), &broker, &["produce", "unrelated", "2", "50"]);
    let rt = runtime();
    let addr = broker.addr();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(&addr)).await.unwrap();
        let config = |instance: Option<&str>| {
            let mut c = GroupConfig::new("rill-pattern");
            c.offset_reset = OffsetReset::Earliest;
            c.instance_id = instance.map(str::to_string);
            // Only the explicit commit_async below commits.
            c.auto_commit_interval = None;
            c
        };
        // Reads until `want` records or `limit`; (topic, partition, offset).
        async fn read(
            c: &mut GroupConsumer,
            want: usize,
            limit: Duration,
        ) -> Vec<(String, i32, i64)> {
            let mut got = Vec::new();
            let deadline = Instant::now() + limit;
            while got.len() < want && Instant::now() < deadline {
                for r in c.poll(Duration::from_millis(100)).await.unwrap() {
                    got.push((r.topic.to_string(), r.partition, r.offset));
                }
            }
            got
        }
        let mut a = GroupConsumer::new(client.clone(), config(Some("static-a")));
        a.subscribe_pattern("rp-.*");
        let first = read(&mut a, 200, Duration::from_secs(30)).await;
        assert_eq!(first.len(), 200);
        assert!(first.iter().all(|(t, _, _)| t == "rp-one"), "{first:?}");
        groups_py(&debian(), &broker, &["produce", "rp-two", "2", "100"]);
        let second = read(&mut a, 100, Duration::from_secs(30)).await;
        assert_eq!(second.len(), 100, "the new topic was not picked up");
        assert!(second.iter().all(|(t, _, _)| t == "rp-two"));
        let commit = a.commit_async().await.unwrap();
        commit.await.unwrap().unwrap();

        // A second, dynamic member: two of the four partitions move to it.
        let events: Arc<Mutex<Vec<Rebalance>>> = Arc::default();
        let mut b = GroupConsumer::new(client.clone(), config(None));
        let ev = events.clone();
        b.on_rebalance(move |e| ev.lock().unwrap().push(e.clone()));
        b.subscribe_pattern("rp-.*");
        let settle = Instant::now() + Duration::from_secs(30);
        // Everything was read and committed: whoever polls from here on
        // must get nothing.
        let mut late = Vec::new();
        while (a.assignment().len() != 2 || b.assignment().len() != 2) && Instant::now() < settle {
            late.extend(a.poll(Duration::from_millis(50)).await.unwrap());
            late.extend(b.poll(Duration::from_millis(50)).await.unwrap());
        }
        assert_eq!((a.assignment().len(), b.assignment().len()), (2, 2));
        let mut a_parts = a.assignment();
        a_parts.sort();
        let before = events.lock().unwrap().len();
        a.close().await.unwrap();

        // The static member comes back: its two partitions, no rebalance for b.
        let mut a2 = GroupConsumer::new(client.clone(), config(Some("static-a")));
        a2.subscribe_pattern("rp-.*");
        let back = Instant::now() + Duration::from_secs(20);
        while a2.assignment().len() < 2 && Instant::now() < back {
            late.extend(a2.poll(Duration::from_millis(50)).await.unwrap());
            late.extend(b.poll(Duration::from_millis(50)).await.unwrap());
        }
        let mut a2_parts = a2.assignment();
        a2_parts.sort();
        assert_eq!(a2_parts, a_parts, "the static member got other partitions");
        for _ in 0..10 {
            late.extend(a2.poll(Duration::from_millis(50)).await.unwrap());
            late.extend(b.poll(Duration::from_millis(50)).await.unwrap());
        }
        assert_eq!(
            events.lock().unwrap()[before..],
            [],
            "the other member saw a rebalance"
        );
        let late: Vec<(String, i32, i64)> = late
            .iter()
            .map(|r| (r.topic.to_string(), r.partition, r.offset))
            .collect();
        assert_eq!(late, vec![], "read again after the async commit");
        a2.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// `rill consume --group`: a count stops mid-stream and commits only what
/// was printed; the next run resumes after it, on either protocol.
#[test]
fn rill_consume_with_a_group_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    groups_py(&debian(), &broker, &["produce", "cg-topic", "2", "100"]);
    let read = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "consume",
            "cg-topic",
            "--group",
            "cg",
            "--format",
            "{partition}:{offset}",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = rill(&broker, &args);
        assert!(ok, "{err}");
        out.lines().map(str::to_string).collect()
    };
    // The first run on the classic protocol, the rest on the consumer
    // protocol: an empty group's committed offsets carry over.
    let first = read(&["-n", "30", "--group-protocol", "classic"]);
    assert_eq!(first.len(), 30);
    let rest = read(&[]);
    assert_eq!(rest.len(), 70, "{rest:?}");
    let all: BTreeSet<&String> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 100, "a record was read twice or never");
    assert!(read(&[]).is_empty(), "everything was committed");
}

#[test]
fn kip848_members_share_a_topic_exactly_once_and_a_killed_ones_partitions_move() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let venv = test_clients().join("venv/bin/python");
    let (topic, n, parts) = ("kip848", 24_000usize, 12);
    groups_py(
        &venv,
        &broker,
        &["produce", topic, &parts.to_string(), &n.to_string()],
    );
    // Slow readers, so that b joins while a is reading: a hands b its
    // half partition by partition (revoke first, then b gets them).
    let slow = [KIP848, "rill.pause_every=50"];
    let a = Member::start(&venv, &broker, dir.path(), "a", topic, "g848", &slow);
    wait_until("the first member reads", Duration::from_secs(60), || {
        !a.records().is_empty()
    });
    let joined = Instant::now();
    let mut b = Member::start(&venv, &broker, dir.path(), "b", topic, "g848", &slow);
    let settled = wait_until("b gets its half", Duration::from_secs(60), || {
        let (oa, ob) = (a.owned(), b.owned());
        oa.len() + ob.len() == parts as usize && !ob.is_empty() && oa.is_disjoint(&ob)
    });
    wait_until("every record read", Duration::from_secs(120), || {
        a.records().len() + b.records().len() >= n
    });
    let (ra, rb) = (a.records(), b.records());
    let (oa, ob) = (a.owned(), b.owned());
    assert!(
        oa.is_disjoint(&ob),
        "a partition with two owners: {oa:?} {ob:?}"
    );
    assert_eq!(oa.len(), parts as usize / 2, "uniform: half each");
    let mut all: Vec<(i32, i64)> = ra.iter().chain(&rb).copied().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        total,
        all.len(),
        "{} records delivered twice",
        total - all.len()
    );
    assert_eq!(all.len(), n);
    // The group as the broker describes it (ConsumerGroupDescribe).
    let (ok, out, err) = rill(&broker, &["group", "describe", "g848", "--json"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"uniform\"") && out.contains("consumer"),
        "{out}"
    );
    let (ok, out, _) = rill(&broker, &["group", "list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.contains("g848") && l.contains("Stable") && l.contains("consumer")),
        "{out}"
    );
    wait_until("everything committed", Duration::from_secs(30), || {
        committed(&broker, topic, "g848", parts)
            .values()
            .all(|o| *o == (n / parts as usize) as i64)
    });
    // b dies: after its session (6 s) a owns every partition again and
    // reads what is written meanwhile; b had committed all it read.
    b.kill9();
    let killed = Instant::now();
    let b_read: BTreeSet<(i32, i64)> = rb.iter().copied().collect();
    groups_py(
        &venv,
        &broker,
        &[
            "append",
            topic,
            &parts.to_string(),
            &n.to_string(),
            &(2 * n).to_string(),
        ],
    );
    let takeover = wait_until("a takes every partition", Duration::from_secs(40), || {
        a.owned().len() == parts as usize
    });
    wait_until("a reads the rest", Duration::from_secs(90), || {
        a.records().len() >= 2 * n - b_read.len()
    });
    let ra = a.records();
    a.stop();
    let mine: BTreeSet<(i32, i64)> = ra.iter().copied().collect();
    assert_eq!(mine.len(), ra.len(), "a read a record twice");
    assert!(
        mine.is_disjoint(&b_read),
        "records b had committed were delivered again"
    );
    assert_eq!(mine.union(&b_read).count(), 2 * n, "records were lost");
    println!(
        "KIP-848: b had its half {:.1} s after it started; a owned all {parts} {:.1} s after b was killed (session 6 s); a read {}, b read {}",
        settled.as_secs_f64().min(joined.elapsed().as_secs_f64()),
        takeover.min(killed.elapsed()).as_secs_f64(),
        ra.len(),
        b_read.len()
    );
}

#[test]
fn kip848_regex_subscriptions_pick_up_new_topics_and_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let venv = test_clients().join("venv/bin/python");
    groups_py(&venv, &broker, &["produce", "rx-one", "2", "100"]);
    groups_py(&venv, &broker, &["produce", "other", "2", "100"]);
    let m = Member::start(&venv, &broker, dir.path(), "m", "^rx-.*", "grx", &[KIP848]);
    wait_until("rx-one read", Duration::from_secs(60), || {
        m.records().len() >= 100
    });
    // A new matching topic joins the subscription (and `other` never does).
    groups_py(&venv, &broker, &["produce", "rx-two", "3", "300"]);
    wait_until("rx-two read", Duration::from_secs(60), || {
        m.records().len() >= 400
    });
    let owned = |broker: &Broker| -> BTreeSet<String> {
        let (ok, out, err) = rill(broker, &["group", "describe", "grx", "--json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["members"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let expect: BTreeSet<String> = ["rx-one-0", "rx-one-1", "rx-two-0", "rx-two-1", "rx-two-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        owned(&broker),
        expect,
        "the regex matches rx-one and rx-two, not other"
    );
    let lines_before = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("# revoked"))
        .count();
    // The broker restarts (SIGTERM): the member keeps its epoch and its
    // partitions (the group was recorded in __consumer_offsets) and reads on.
    assert!(broker.terminate().success());
    broker.restart();
    groups_py(&venv, &broker, &["append", "rx-two", "3", "300", "600"]);
    wait_until("read after the restart", Duration::from_secs(60), || {
        m.records().len() >= 700
    });
    let revoked_after = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("# revoked"))
        .count();
    assert_eq!(
        revoked_after,
        lines_before,
        "the restart revoked partitions: {:?}",
        m.lines()
            .iter()
            .filter(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
    );
    assert_eq!(owned(&broker), expect, "after the restart");
    m.stop();
}

/// librdkafka's 0113 h_delete_topic: one member subscribed to two topics,
/// one deleted; the group settles with the member holding the survivor's
/// partition and nothing else, on the classic protocol (cooperative-sticky)
/// with Debian's confluent-kafka and the newest, and on KIP-848 with the
/// newest. Debian's librdkafka 2.0.2 then never finishes destroying that
/// consumer (a client-side hang, gone in the newest), so its run ends
/// without closing.
#[test]
fn deleting_one_of_two_subscribed_topics_leaves_the_member_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let newest = test_clients().join("venv/bin/python");
    for (py, protocol, close) in [
        (debian(), "classic", "no-close"),
        (newest.clone(), "classic", "close"),
        (newest, "consumer", "close"),
    ] {
        let (ok, out, err) = run(
            Command::new(&py)
                .arg(clients_dir().join("delete_subscribed.py"))
                .args([broker.addr().as_str(), protocol, close]),
            Duration::from_secs(90),
        );
        assert!(
            ok && out.contains("settled on"),
            "{} {protocol}: stdout:\n{out}\nstderr:\n{err}",
            py.display()
        );
        println!(
            "{} {protocol}: {}",
            py.display(),
            out.trim().replace('\n', "; ")
        );
    }
}
