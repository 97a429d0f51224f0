//! The README's quick start, run literally: `rill broker` with its defaults
//! (data in `./data`, listener 127.0.0.1:9092) from a fresh working
//! directory, then the rill CLI and kcat against it, across a restart.
//! Also: a topic whose partitions cannot be opened is refused, not "created".

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use support::{kcat_read, run, run_with_input, Broker};

fn rill(addr: &str, args: &[&str]) -> (bool, String, String) {
    run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(args)
            .env("RILL_BROKERS", addr),
        Duration::from_secs(60),
    )
}

fn rill_ok(addr: &str, args: &[&str]) -> String {
    let (ok, out, err) = rill(addr, args);
    assert!(ok, "rill {args:?} failed: {err}");
    out
}

/// The quick start's broker command exactly as the README gives it, unless
/// something else holds 127.0.0.1:9092 (a developer's own broker, started
/// from the same README): then only the port is changed, and the data
/// directory is still the default one.
fn quick_start_broker(cwd: &std::path::Path) -> Broker {
    let mut args = Vec::new();
    if TcpListener::bind("127.0.0.1:9092").is_err() {
        eprintln!("127.0.0.1:9092 is taken; running the quick start on a free port");
        args.extend(["--listen", "127.0.0.1:0"]);
    }
    if TcpListener::bind("127.0.0.1:9644").is_err() {
        eprintln!("127.0.0.1:9644 is taken; the quick start's admin listener takes a free port");
        args.extend(["--admin-listen", "127.0.0.1:0"]);
    }
    Broker::start_literal(cwd, &args)
}

#[test]
fn readme_quick_start_literally() {
    let cwd = tempfile::tempdir().unwrap();
    let mut broker = quick_start_broker(cwd.path());
    let addr = broker.addr();

    let out = rill_ok(&addr, &["topic", "create", "demo", "-p", "3"]);
    assert!(
        out.contains("created topic demo with 3 partitions"),
        "{out}"
    );
    for p in 0..3 {
        assert!(
            cwd.path().join(format!("data/topics/demo-{p}")).is_dir(),
            "partition {p} not under ./data"
        );
    }
    let describe = rill_ok(&addr, &["topic", "describe", "demo", "--json"]);
    assert!(
        !describe.to_lowercase().contains("error\":\""),
        "{describe}"
    );

    let lines: Vec<String> = (0..300).map(|i| format!("k{i}:value-{i}")).collect();
    let input = lines.join("\n") + "\n";
    let (ok, _, err) = run_with_input(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["produce", "demo", "-K", ":"])
            .env("RILL_BROKERS", &addr),
        input.as_bytes(),
        Duration::from_secs(60),
    );
    assert!(ok, "rill produce failed: {err}");
    // kcat writes too: 100 more records.
    let kcat_input: String = (0..100).map(|i| format!("kcat-{i}\n")).collect();
    let (ok, _, err) = run_with_input(
        Command::new("kcat").args(["-b", &addr, "-P", "-t", "demo"]),
        kcat_input.as_bytes(),
        Duration::from_secs(60),
    );
    assert!(ok, "kcat -P failed: {err}");

    let check = |addr: &str| {
        let mut seen = rill_ok(
            addr,
            &[
                "consume",
                "demo",
                "--from",
                "beginning",
                "-n",
                "400",
                "--format",
                "{key}={value}",
            ],
        )
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>();
        seen.sort();
        let mut want: Vec<String> = (0..300)
            .map(|i| format!("k{i}=value-{i}"))
            .chain((0..100).map(|i| format!("=kcat-{i}")))
            .collect();
        want.sort();
        assert_eq!(seen, want, "rill consume");
        let mut by_kcat: Vec<String> = kcat_read(addr, "demo", "%k=%s\n", &["-o", "beginning"])
            .lines()
            .map(str::to_string)
            .collect();
        by_kcat.sort();
        assert_eq!(by_kcat, want, "kcat -C");
    };
    check(&addr);

    assert!(broker.terminate().success());
    broker.restart();
    check(&broker.addr());
    broker.kill9();
    broker.restart();
    check(&broker.addr());
}

#[test]
fn relative_data_dir_flag_works_too() {
    let cwd = tempfile::tempdir().unwrap();
    let broker = Broker::start_literal(
        cwd.path(),
        &[
            "--data-dir",
            "data-rel",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    rill_ok(&broker.addr(), &["topic", "create", "t", "-p", "2"]);
    let (ok, _, err) = run_with_input(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["produce", "t"])
            .env("RILL_BROKERS", broker.addr()),
        b"a\nb\n",
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    assert!(cwd.path().join("data-rel/topics/t-1").is_dir());
}

/// A partition directory that cannot be created (a file stands in its place)
/// makes CreateTopics fail with KAFKA_STORAGE_ERROR naming the partition;
/// the topic is not kept, and the other partitions' directories are removed.
#[test]
fn create_topics_refuses_partitions_that_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let addr = broker.addr();
    std::fs::create_dir_all(dir.path().join("topics")).unwrap();
    std::fs::write(dir.path().join("topics/blocked-1"), b"not a directory").unwrap();

    let (ok, out, err) = rill(&addr, &["topic", "create", "blocked", "-p", "3"]);
    assert!(!ok, "create should fail: {out}");
    assert!(err.contains("KAFKA_STORAGE_ERROR"), "{err}");
    assert!(
        err.contains("blocked-1"),
        "the error names the partition: {err}"
    );
    let list = rill_ok(&addr, &["topic", "list"]);
    assert!(!list.contains("blocked"), "topic kept: {list}");
    assert!(!dir.path().join("topics/blocked-0").exists());
    assert!(!dir.path().join("topics/blocked-2").exists());

    // The same for partitions added later.
    rill_ok(&addr, &["topic", "create", "grow", "-p", "1"]);
    std::fs::write(dir.path().join("topics/grow-2"), b"x").unwrap();
    let (ok, _, err) = rill(&addr, &["topic", "add-partitions", "grow", "--total", "3"]);
    assert!(!ok && err.contains("KAFKA_STORAGE_ERROR"), "{err}");
    let describe = rill_ok(&addr, &["topic", "describe", "grow", "--json"]);
    assert!(describe.matches("\"partition\"").count() == 1, "{describe}");
    assert!(!dir.path().join("topics/grow-1").exists());

    // Once the obstacle is gone the same request succeeds.
    std::fs::remove_file(dir.path().join("topics/blocked-1")).unwrap();
    rill_ok(&addr, &["topic", "create", "blocked", "-p", "3"]);
}
