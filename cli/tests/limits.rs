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

use std::path::Path;
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

fn topic_dirs(data_dir: &Path, topic: &str) -> usize {
    std::fs::read_dir(data_dir.join("topics"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.rsplit_once('-').is_some_and(|(t, _)| t == topic))
                .count()
        })
        .unwrap_or(0)
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

/// Running out of descriptors never bricks the broker. Under `ulimit -n
/// 1024` (partition logs may hold 896 files: 128 stay for connections,
/// metadata and signals), one CreateTopics of three 400-partition topics
/// through Debian's confluent-kafka creates the first and refuses the
/// others with INVALID_PARTITIONS and a message naming the limit (as
/// Redpanda refuses them); nothing of the refused topics is left. A data
/// directory holding more partitions than the limit lets the broker open
/// (it ran with a higher limit before) still starts: what fits is served,
/// the rest is reported as a count and retried, and once a topic is deleted
/// the retry opens what was left closed.
#[test]
fn running_out_of_descriptors_never_bricks_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_with_open_files(dir.path(), 1024, &[]);
    let out = create_topics(&broker, &["fits:400", "big-1:400", "big-2:400"]);
    assert_eq!(out[2], "fits ok", "{out:?}");
    for (line, name) in out[..2].iter().zip(["big-1", "big-2"]) {
        assert!(
            line.starts_with(&format!(
                "{name} error INVALID_PARTITIONS: topic `{name}` needs 800 open files"
            )) && line.contains("the open-file limit is 1024"),
            "{line}"
        );
        assert!(line.len() < 400, "one cause, said once: {line}");
        assert_eq!(topic_dirs(dir.path(), name), 0, "{name} left directories");
    }
    let stored = std::fs::read_to_string(dir.path().join("meta/cluster.json")).unwrap();
    assert!(
        !stored.contains("big-"),
        "a refused topic is in the metadata"
    );
    assert!(kcat_produce(&broker, "fits", 399, "one"));
    assert!(open_files(broker.pid()) <= 1024);

    // A clean restart under the same limit serves what it served.
    assert!(broker.terminate().success());
    broker.restart();
    assert_eq!(kcat_first(&broker, "fits", 399), "one\n");

    // More partitions than the limit allows: written under 4096, opened under 1024.
    assert!(broker.terminate().success());
    broker.set_open_files(4096);
    broker.restart();
    assert_eq!(create_topics(&broker, &["wide:1200"]), ["wide ok"]);
    assert!(broker.terminate().success());
    broker.set_open_files(1024);
    let started = Instant::now();
    broker.restart();
    println!(
        "started with 1,600 partitions under a limit of 1024 in {:?}",
        started.elapsed()
    );
    let files = open_files(broker.pid());
    assert!(files <= 1024, "{files} open files");
    // It serves: Metadata names both topics.
    let (ok, listing, err) = run(
        Command::new("kcat").args(["-b", &broker.addr(), "-L"]),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");
    assert!(
        listing.contains("topic \"fits\" with 400 partitions"),
        "{listing}"
    );
    assert!(
        listing.contains("topic \"wide\" with 1200 partitions"),
        "{listing}"
    );

    // Deleting `wide` gives its descriptors back: within a retry (10 s)
    // every partition of `fits` is open, and all of them take a record.
    let (ok, _, err) = run(
        Command::new(env!("CARGO_BIN_EXE_rill")).args([
            "topic",
            "delete",
            "wide",
            "--brokers",
            &broker.addr(),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");
    assert_eq!(topic_dirs(dir.path(), "wide"), 0, "wide left directories");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut produced = 0;
    for p in 0..400 {
        while !kcat_produce(&broker, "fits", p, "two") {
            assert!(Instant::now() < deadline, "fits-{p} never opened");
            std::thread::sleep(Duration::from_millis(500));
        }
        produced += 1;
        if Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(produced, 400);
    assert_eq!(kcat_first(&broker, "fits", 399), "one\ntwo\n");
    let stopping = Instant::now();
    assert!(broker.terminate().success());
    assert!(stopping.elapsed() < Duration::from_secs(10));
}
