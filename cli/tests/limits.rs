//! Resource limits the broker sets for itself: started with a low soft
//! limit on open files (below a shell's usual 1024), it raises it to the hard
//! limit, as many partitions and connections need.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn limits_line(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string()
}

#[test]
fn the_broker_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 512 && exec {} broker --data-dir {} --listen 127.0.0.1:0",
            env!("CARGO_BIN_EXE_rill"),
            dir.path().display()
        ))
        .env("RILL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("rill broker listening on"), "{line}");
    // "Max open files            <soft>  <hard>  files"
    let l = limits_line(child.id());
    let fields: Vec<&str> = l.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert_eq!(soft, hard, "started at 512: {l}");
}

mod support;

use std::time::{Duration, Instant};
use support::{clients_dir, python, run, run_with_input, Broker};

/// Each topic's outcome of one CreateTopics request made by Debian's
/// confluent-kafka, as `create_topics.py` prints them.
fn create_topics(broker: &Broker, specs: &[&str]) -> Vec<String> {
    let (ok, out, err) = run(
        Command::new(python())
            .arg(clients_dir().join("create_topics.py"))
            .arg(broker.addr())
            .args(specs),
        Duration::from_secs(120),
    );
    assert!(ok, "create_topics.py failed: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `kcat` against `broker` with `args`, and `input` on its standard input.
fn kcat(broker: &Broker, args: &[&str], input: &str) -> (bool, String, String) {
    run_with_input(
        Command::new("kcat").args(["-b", &broker.addr()]).args(args),
        input.as_bytes(),
        Duration::from_secs(30),
    )
}

fn kcat_produce(broker: &Broker, topic: &str, partition: i32, line: &str) -> bool {
    let partition = partition.to_string();
    let args = [
        "-P",
        "-t",
        topic,
        "-p",
        &partition,
        "-X",
        "message.timeout.ms=5000",
    ];
    let (ok, _, err) = kcat(broker, &args, &format!("{line}\n"));
    ok && !err.contains("Delivery failed")
}

fn kcat_first(broker: &Broker, topic: &str, partition: i32) -> String {
    let partition = partition.to_string();
    let args = [
        "-C",
        "-t",
        topic,
        "-p",
        &partition,
        "-o",
        "beginning",
        "-e",
        "-q",
    ];
    let (ok, out, err) = kcat(broker, &args, "");
    assert!(ok, "kcat -C {topic}: {err}");
    out
}

/// What `every_partition.py` says: (topic, end offset, partitions) lines.
fn every_partition(broker: &Broker, mode: &str, specs: &[&str]) -> Vec<String> {
    let (ok, out, err) = run(
        Command::new(python())
            .arg(clients_dir().join("every_partition.py"))
            .args([&broker.addr(), mode])
            .args(specs),
        Duration::from_secs(180),
    );
    assert!(ok, "every_partition.py {mode} failed: {err}");
    out.lines().map(str::to_string).collect()
}

/// Partitions outnumber descriptors and the broker does not mind. Under
/// `ulimit -n 1024` (partition logs may hold 896 files; 128 stay for
/// connections, metadata and signals) one CreateTopics of three
/// 400-partition topics through Debian's confluent-kafka creates all three
/// — 1,200 partitions, which would hold 2,400 files if every log kept its
/// descriptors — and every partition takes a record: idle files are closed
/// and reopened on demand. The broker stays within the limit, and after a
/// clean stop and after `kill -9` it starts under the same limit with every
/// record there. (Redpanda refuses such topics against its
/// `topic_fds_per_partition`; Kafka runs out of descriptors.)
#[test]
fn partitions_outnumbering_descriptors_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_with_open_files(dir.path(), 1024, &[]);
    let specs = ["a:400", "b:400", "c:400"];
    let out = create_topics(&broker, &specs);
    assert_eq!(out, ["a ok", "b ok", "c ok"]);
    assert_eq!(
        every_partition(&broker, "write", &specs).last().unwrap(),
        "delivered 1200"
    );
    let files = open_files(broker.pid());
    assert!(files <= 1024, "{files} open files");
    let all_one = ["a 1 400", "b 1 400", "c 1 400"];
    assert_eq!(every_partition(&broker, "ends", &specs), all_one);

    let stopping = Instant::now();
    assert!(broker.terminate().success());
    assert!(stopping.elapsed() < Duration::from_secs(10));
    broker.restart();
    assert_eq!(every_partition(&broker, "ends", &specs), all_one);
    assert_eq!(kcat_first(&broker, "c", 399), "c-399\n");

    broker.kill9();
    broker.restart();
    assert_eq!(every_partition(&broker, "ends", &specs), all_one);
    assert!(kcat_produce(&broker, "a", 0, "two"));
    assert_eq!(kcat_first(&broker, "a", 0), "a-0\ntwo\n");
    let files = open_files(broker.pid());
    assert!(files <= 1024, "{files} open files");
    assert!(broker.terminate().success());
}
