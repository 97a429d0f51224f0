//! A compacted topic (`cleanup.policy=compact`) on a real broker, written
//! and read by the clients people use: the newest confluent-kafka and
//! kafka-python (`clients/compacted_topic.py`), Debian's kcat (librdkafka
//! 2.0.2) and rill-client. The cleaner (every 100 ms here) leaves each key's
//! newest value and drops delete markers after `delete.retention.ms`; every
//! client reads across the gaps it leaves; records without a key are
//! refused with INVALID_RECORD; and `kill -9` while the cleaner runs loses
//! no newest value.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rill_client::{Client, ClientConfig};
use support::{clients_dir, consume_all, kcat_read, run, Broker};

const KEYS: usize = 50;
const DELETED: usize = 5;

fn venv_python() -> PathBuf {
    // The venv's python is a symlink: resolve the directory, not the binary.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.test-clients")
        .canonicalize()
        .expect("the newest Kafka clients are not installed: run `bash scripts/test.sh` (the README's test command) or `bash scripts/test-clients.sh`")
        .join("venv/bin/python")
}

fn script(broker: &Broker, check: &str, topic: &str, round: Option<usize>) -> String {
    let round = round.map(|r| r.to_string());
    let (ok, out, err) = run(
        Command::new(venv_python())
            .arg(clients_dir().join("compacted_topic.py"))
            .args([broker.addr().as_str(), check, topic])
            .args(round.as_deref()),
        Duration::from_secs(120),
    );
    assert!(ok, "{check} failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// Records read per client, from `verify`'s output.
fn records_read(out: &str) -> Vec<usize> {
    out.lines()
        .filter_map(|l| l.split("read ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// What kcat (Debian's librdkafka) reads: each key's newest value, with
/// `None` for a delete marker.
fn kcat_newest(broker: &Broker, topic: &str) -> HashMap<String, Option<String>> {
    let out = kcat_read(&broker.addr(), topic, "%k|%S|%s\n", &[]);
    let mut newest = HashMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(3, '|');
        let (k, size, v) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        );
        // %S is -1 for a null value.
        let value = (size != "-1").then(|| v.to_string());
        newest.insert(k.to_string(), value);
    }
    newest
}

/// Every record of `topic` as rill-client reads it from the start.
fn rill_client_read(broker: &Broker, topic: &str) -> Vec<rill_client::ConsumerRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(&broker.addr()))
            .await
            .unwrap();
        consume_all(&client, topic).await
    })
}

fn check_newest(newest: &HashMap<String, Option<String>>, round: usize, who: &str) {
    for k in 0..KEYS {
        let got = newest.get(&format!("key-{k}")).cloned().flatten();
        if round >= 2 && k < DELETED {
            assert_eq!(got, None, "{who}: key-{k} was deleted");
        } else {
            let want = format!("k{k}:r{round}:");
            assert!(
                got.as_deref().is_some_and(|v| v.starts_with(&want)),
                "{who}: key-{k} reads {got:?}, not round {round}"
            );
        }
    }
}

#[test]
fn compacted_topic_with_the_clients_people_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--log-cleaner-backoff-ms", "100"]);
    let topic = "compacted";
    script(&broker, "create", topic, None);
    let rounds = 8;
    for round in 0..rounds {
        script(&broker, "produce", topic, Some(round));
        // segment.ms is 300: the next round starts a new segment.
        std::thread::sleep(Duration::from_millis(350));
    }
    let last = rounds - 1;
    let produced = rounds * KEYS + (rounds - 2) * DELETED;

    // The cleaner catches up within a few of its rounds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = loop {
        let out = script(&broker, "verify", topic, Some(last));
        let read = records_read(&out);
        assert_eq!(read.len(), 2, "{out}");
        if read.iter().all(|&n| n <= produced / 3) {
            break read;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: read {read:?} of {produced}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("compacted: clients read {read:?} of {produced} records produced");
    check_newest(&kcat_newest(&broker, topic), last, "kcat");
    let records = rill_client_read(&broker, topic);
    let mut newest = HashMap::new();
    let mut previous = -1;
    for r in &records {
        assert!(r.offset > previous, "rill-client: offsets go back");
        previous = r.offset;
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        newest.insert(
            key,
            r.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
    }
    check_newest(&newest, last, "rill-client");

    let out = script(&broker, "keyless", topic, None);
    println!("{out}");

    // kill -9 while the cleaner works: every restart reads each key's newest value.
    for round in rounds..rounds + 4 {
        script(&broker, "produce", topic, Some(round));
        std::thread::sleep(Duration::from_millis(350));
        script(&broker, "produce", topic, Some(round));
        std::thread::sleep(Duration::from_millis(50 + 60 * (round - rounds) as u64));
        broker.kill9();
        broker.restart();
        script(&broker, "verify", topic, Some(round));
        check_newest(&kcat_newest(&broker, topic), round, "kcat after kill -9");
    }
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    let files: Vec<String> = std::fs::read_dir(dir.path().join("topics/compacted-0"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let leftovers: Vec<&String> = files
        .iter()
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // kafka-python's superseded batches stayed as empty batches (its
    // producer state needs them), and every client above stepped over them.
    let mut empty = 0;
    for name in files.iter().filter(|n| n.ends_with(".log")) {
        let log = std::fs::read(dir.path().join("topics/compacted-0").join(name)).unwrap();
        let mut at = 0;
        while at + 61 <= log.len() {
            let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap()) as usize + 12;
            if len == 12 {
                break;
            }
            empty +=
                usize::from(i32::from_be_bytes(log[at + 57..at + 61].try_into().unwrap()) == 0);
            at += len;
        }
    }
    assert!(empty > 0, "no empty batches: the test does not reach them");
    println!("{empty} empty batches in the compacted log");
}

/// The log files of partition 0 of `topic`, with their sizes.
fn segment_files(data_dir: &std::path::Path, topic: &str) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> =
        std::fs::read_dir(data_dir.join(format!("topics/{topic}-0")))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let len = e.metadata().ok()?.len();
                name.ends_with(".log").then_some((name, len))
            })
            .collect();
    files.sort();
    files
}

/// A changelog rebuilt from its start after one cleaner pass over a log
/// whose every closed segment held only superseded records (issue: Debian's
/// librdkafka stopped with "Message at offset … might be too large to
/// fetch" on a run of segments of one empty batch each). The pass merges
/// what it shrank into one segment, and Debian's confluent-kafka and kcat,
/// the newest confluent-kafka and rill-client read through to the end.
#[test]
fn a_compacted_changelog_reads_from_the_start_with_debians_librdkafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--log-cleaner-backoff-ms", "200"]);
    let topic = "changelog";
    let changelog = |python: &str, check: &str| {
        let (ok, out, err) = run(
            Command::new(python)
                .arg(clients_dir().join("changelog.py"))
                .args([broker.addr().as_str(), check, topic]),
            Duration::from_secs(120),
        );
        assert!(
            ok,
            "{check} ({python}) failed\nstdout:\n{out}\nstderr:\n{err}"
        );
        out
    };
    changelog(support::python(), "create");
    changelog(support::python(), "produce");
    let before = segment_files(dir.path(), topic);
    assert!(before.len() > 20, "{} segments", before.len());
    changelog(support::python(), "compact");
    // The first pass: the closed segments shrink (the active one stays),
    // then the files stay as they are for a second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = (before.clone(), Instant::now());
    let after = loop {
        let now = segment_files(dir.path(), topic);
        if now != seen.0 {
            seen = (now, Instant::now());
        } else if now != before && seen.1.elapsed() > Duration::from_secs(1) {
            break now;
        }
        assert!(Instant::now() < deadline, "no cleaner pass: {:?}", seen.0);
        std::thread::sleep(Duration::from_millis(100));
    };
    let debian = changelog(support::python(), "verify");
    let newest = changelog(venv_python().to_str().unwrap(), "verify");
    println!("Debian confluent-kafka: {debian}newest: {newest}segments {before:?} → {after:?}");
    assert!(
        after.len() <= 3,
        "the cleaned segments merged: {} before, now {after:?}",
        before.len()
    );
    let kcat = kcat_read(&broker.addr(), topic, "%k\n", &["-o", "beginning"]);
    let read = records_read(&debian)[0];
    assert_eq!(
        kcat.lines().count(),
        read,
        "kcat reads what confluent-kafka read"
    );
    let records = rill_client_read(&broker, topic);
    assert_eq!(
        records.len(),
        read,
        "rill-client reads what confluent-kafka read"
    );
}
