//! Restarts: a clean SIGTERM keeps every topic and message and leaves clean
//! logs; a kill -9 in the middle of a produce loop loses nothing that was
//! acknowledged with acks=all.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rill_storage::checkpoint::Checkpoint;
use support::{clients_dir, kcat_read, python, run, Broker};

/// (partition, offset, value) of every message in `topic`.
fn read_all(broker: &Broker, topic: &str) -> HashSet<(i32, i64, String)> {
    let out = kcat_read(&broker.addr(), topic, "%p\t%o\t%s\n", &["-o", "beginning"]);
    out.lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
            )
        })
        .collect()
}

fn parse_acks(out: &str) -> Vec<(i32, i64, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
            )
        })
        .collect()
}

fn produce(broker: &Broker, topic: &str, count: usize, prefix: &str) -> Vec<(i32, i64, String)> {
    let (ok, out, err) = run(
        Command::new(python())
            .arg(clients_dir().join("acked_producer.py"))
            .args([&broker.addr(), topic, &count.to_string(), prefix]),
        Duration::from_secs(120),
    );
    assert!(ok, "producer failed: {err}");
    assert!(out.contains("done failed=0"), "{out}");
    parse_acks(&out)
}

#[test]
fn sigterm_is_clean_and_kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        dir.path(),
        &["--auto-create-topics", "--default-partitions", "3"],
    );
    let first = produce(&broker, "durable", 3000, "before");
    assert_eq!(first.len(), 3000);

    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    for p in 0..3 {
        let file =
            std::fs::read(dir.path().join(format!("topics/durable-{p}/checkpoint"))).unwrap();
        assert!(
            Checkpoint::newest(&file).unwrap().clean,
            "partition {p} was not closed cleanly"
        );
    }
    broker.restart();
    let (ok, out, _) = run(
        Command::new("kcat").args(["-b", &broker.addr(), "-L", "-t", "durable"]),
        Duration::from_secs(30),
    );
    assert!(
        ok && out.contains("topic \"durable\" with 3 partitions"),
        "{out}"
    );
    let stored = read_all(&broker, "durable");
    for m in &first {
        assert!(stored.contains(m), "lost after a clean restart: {m:?}");
    }

    // kill -9 while a producer is sending with acks=all.
    let mut producer = Command::new(python())
        .arg(clients_dir().join("acked_producer.py"))
        .args([&broker.addr(), "durable", "200000", "during"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = producer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            acks.extend(parse_acks(&line));
        }
        acks
    });
    std::thread::sleep(Duration::from_millis(1500));
    broker.kill9();
    let status = producer.wait().unwrap();
    assert!(status.success());
    let acked = reader.join().unwrap();
    assert!(
        acked.len() > 100,
        "only {} acknowledged before the kill",
        acked.len()
    );

    broker.restart();
    let stored = read_all(&broker, "durable");
    let lost: Vec<_> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    for m in &first {
        assert!(stored.contains(m), "lost an earlier message: {m:?}");
    }
}
