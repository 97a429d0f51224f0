//! librdkafka's command-line client against a real broker: metadata,
//! thousands of keyed and unkeyed messages, read back whole and in order,
//! and seeking by offset and from the end.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{kcat_read, run, Broker};

fn produce(broker: &Broker, topic: &str, lines: &str, keyed: bool) {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", &broker.addr(), "-P", "-t", topic, "-X", "linger.ms=5"]);
    if keyed {
        cmd.arg("-K:");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat -P failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (partition, offset, key, value) of every message kcat reads.
fn consume(broker: &Broker, topic: &str, extra: &[&str]) -> Vec<(i32, i64, String, String)> {
    let out = kcat_read(&broker.addr(), topic, "%p\t%o\t%k\t%s\n", extra);
    out.lines()
        .map(|l| {
            let mut f = l.splitn(4, '\t');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn kcat_lists_produces_consumes_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--auto-create-topics", "--default-partitions", "4"],
    );

    let (ok, out, err) = run(
        Command::new("kcat").args(["-b", &broker.addr(), "-L"]),
        Duration::from_secs(30),
    );
    assert!(ok, "kcat -L failed: {err}");
    assert!(
        out.contains("1 brokers:")
            && out.contains(&format!("broker 0 at 127.0.0.1:{}", broker.port)),
        "{out}"
    );

    let keyed: String = (0..3000)
        .map(|i| format!("key-{}:keyed-{i}\n", i % 37))
        .collect();
    let unkeyed: String = (0..2000).map(|i| format!("unkeyed-{i}\n")).collect();
    produce(&broker, "events", &keyed, true);
    produce(&broker, "events", &unkeyed, false);

    let (ok, out, _) = run(
        Command::new("kcat").args(["-b", &broker.addr(), "-L", "-t", "events"]),
        Duration::from_secs(30),
    );
    assert!(
        ok && out.contains("topic \"events\" with 4 partitions"),
        "{out}"
    );

    let got = consume(&broker, "events", &["-o", "beginning"]);
    assert_eq!(got.len(), 5000, "every message comes back");
    // Offsets per partition are contiguous from 0, and within a partition
    // messages keep the order they were produced in.
    let mut per_partition: BTreeMap<i32, Vec<&(i32, i64, String, String)>> = BTreeMap::new();
    for m in &got {
        per_partition.entry(m.0).or_default().push(m);
    }
    assert!(per_partition.len() > 1, "messages spread over partitions");
    let seq = |v: &str| -> (u8, u32) {
        let (kind, n) = v.rsplit_once('-').unwrap();
        (u8::from(kind == "unkeyed"), n.parse().unwrap())
    };
    for msgs in per_partition.values() {
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.1, i as i64, "offsets contiguous in partition {}", m.0);
        }
        for w in msgs.windows(2) {
            assert!(
                seq(&w[0].3) < seq(&w[1].3),
                "order kept in partition {}: {} then {}",
                w[0].0,
                w[0].3,
                w[1].3
            );
        }
    }
    // Keys stick to one partition, and every message is there exactly once with its key.
    let mut key_partition: HashMap<&str, i32> = HashMap::new();
    for m in got.iter().filter(|m| m.3.starts_with("keyed")) {
        assert_eq!(
            *key_partition.entry(&m.2).or_insert(m.0),
            m.0,
            "key {} in two partitions",
            m.2
        );
        let n: u32 = m.3.strip_prefix("keyed-").unwrap().parse().unwrap();
        assert_eq!(m.2, format!("key-{}", n % 37));
    }
    let mut values: Vec<&str> = got.iter().map(|m| m.3.as_str()).collect();
    values.sort();
    let mut expected: Vec<String> = (0..3000)
        .map(|i| format!("keyed-{i}"))
        .chain((0..2000).map(|i| format!("unkeyed-{i}")))
        .collect();
    expected.sort();
    assert_eq!(
        values,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Seek: from an absolute offset, and N from the end.
    let p0 = &per_partition[&0];
    let from_10 = consume(&broker, "events", &["-p", "0", "-o", "10"]);
    assert_eq!(from_10.len(), p0.len() - 10);
    assert_eq!((from_10[0].1, &from_10[0].3), (10, &p0[10].3));
    let last_5 = consume(&broker, "events", &["-p", "0", "-o", "-5"]);
    assert_eq!(
        last_5.iter().map(|m| m.1).collect::<Vec<_>>(),
        ((p0.len() - 5) as i64..p0.len() as i64).collect::<Vec<_>>()
    );
}
