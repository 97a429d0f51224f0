//! The `rill` client verbs, run as the real binary against a real broker.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, run_with_input, Broker};

struct Cli {
    brokers: String,
}

impl Cli {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rill"));
        c.args(args).env("RILL_BROKERS", &self.brokers);
        c
    }

    /// (success, stdout, stderr)
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        run(&mut self.cmd(args), Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "rill {args:?} failed: {err}");
        out
    }

    /// Fails with one clear line (no panic, no backtrace) containing `needle`.
    fn fails(&self, args: &[&str], needle: &str) {
        let (ok, out, err) = self.run(args);
        assert!(!ok, "rill {args:?} should fail: {out}");
        assert!(
            err.contains(needle),
            "rill {args:?}: {err:?} lacks {needle:?}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "rill {args:?}: {err}"
        );
    }

    fn produce(&self, args: &[&str], input: &str) -> String {
        let (ok, out, err) = run_with_input(
            &mut self.cmd(args),
            input.as_bytes(),
            Duration::from_secs(60),
        );
        assert!(ok, "rill {args:?} failed: {err}");
        out + &err
    }
}

#[test]
fn topic_verbs_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let cli = Cli {
        brokers: broker.addr(),
    };
    let out = cli.ok(&[
        "topic",
        "create",
        "orders",
        "-p",
        "4",
        "-c",
        "retention.ms=60000",
    ]);
    assert!(
        out.contains("created topic orders with 4 partitions"),
        "{out}"
    );
    cli.fails(&["topic", "create", "orders"], "TOPIC_ALREADY_EXISTS");
    cli.ok(&["topic", "create", "orders", "--if-not-exists"]);
    cli.fails(&["topic", "create", "bad/name"], "INVALID_TOPIC_EXCEPTION");
    cli.fails(
        &["topic", "create", "x", "-c", "novalue"],
        "expected KEY=VALUE",
    );
    cli.fails(&["topic", "create", "x", "-p", "0"], "at least 1");

    let out = cli.ok(&["topic", "list"]);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("orders ") && l.contains(" 4 ")),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["topic", "list", "--json"])).unwrap();
    assert_eq!(v[0]["name"], "orders");
    assert_eq!(v[0]["partitions"], 4);

    let out = cli.ok(&["topic", "describe", "orders"]);
    assert!(
        out.contains("PARTITION") && out.contains("HIGH-WATERMARK"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("retention.ms") && l.contains("60000") && l.contains("topic")),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&cli.ok(&["topic", "describe", "orders", "--json"])).unwrap();
    assert_eq!(v["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(v["configs"]["retention.ms"]["value"], "60000");
    cli.fails(
        &["topic", "describe", "nope"],
        "unknown topic or partition: nope",
    );

    cli.ok(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "segment.bytes=2097152",
        "--delete",
        "retention.ms",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&cli.ok(&["topic", "describe", "orders", "--json"])).unwrap();
    assert_eq!(v["configs"]["segment.bytes"]["value"], "2097152");
    assert_eq!(v["configs"]["retention.ms"]["override"], false);
    cli.fails(&["topic", "alter-config", "orders"], "nothing to change");
    cli.fails(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=soon",
        ],
        "INVALID_CONFIG",
    );
    cli.fails(
        &["topic", "alter-config", "nope", "--set", "retention.ms=1"],
        "unknown topic",
    );

    let out = cli.ok(&["topic", "delete", "orders"]);
    assert!(out.contains("deleted topic orders"));
    cli.fails(&["topic", "delete", "orders"], "unknown topic or partition");
}

#[test]
fn produce_consume_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let cli = Cli {
        brokers: broker.addr(),
    };
    cli.ok(&["topic", "create", "lines", "-p", "3"]);
    let input: String = (0..30)
        .map(|i| format!("user{}:event {i}\n", i % 5))
        .collect();
    let out = cli.produce(
        &[
            "produce", "lines", "-K", ":", "-z", "lz4", "--acks", "1", "-H", "src=cli",
        ],
        &input,
    );
    assert!(out.contains("produced 30 records"), "{out}");
    cli.produce(
        &["produce", "lines", "--partition", "2"],
        "unkeyed a\nunkeyed b\n",
    );

    // JSON lines: every record, keys on their Java partition, headers kept.
    let out = cli.ok(&["consume", "lines", "--json"]);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 32);
    for r in records.iter().filter(|r| !r["key"].is_null()) {
        let key = r["key"].as_str().unwrap();
        assert_eq!(
            r["partition"].as_i64().unwrap() as i32,
            rill_client::protocol::partitioner::partition_for_key(key.as_bytes(), 3)
        );
        assert_eq!(r["headers"][0]["key"], "src");
        assert_eq!(r["headers"][0]["value"], "cli");
    }
    let unkeyed: Vec<_> = records.iter().filter(|r| r["key"].is_null()).collect();
    assert_eq!(unkeyed.len(), 2);
    assert!(unkeyed.iter().all(|r| r["partition"] == 2));

    // --format, --partition, --from offset, --count.
    let out = cli.ok(&[
        "consume",
        "lines",
        "--partition",
        "2",
        "--format",
        "{partition}/{offset} {key}={value} [{headers}]",
    ]);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("2/") && last.ends_with(" =unkeyed b []"),
        "{out}"
    );
    let n2 = out.lines().count();
    let out = cli.ok(&[
        "consume", "lines", "-p", "2", "--from", "1", "-n", "1", "--format", "{offset}",
    ]);
    assert_eq!(out.trim(), "1");
    let out = cli.ok(&["consume", "lines", "-p", "2", "--from", "end"]);
    assert_eq!(out, "", "nothing after the end");
    // A timestamp in the future: nothing; one in the past: everything.
    let out = cli.ok(&["consume", "lines", "-p", "2", "--from", "@99999999999999"]);
    assert_eq!(out, "");
    let out = cli.ok(&[
        "consume",
        "lines",
        "-p",
        "2",
        "--from",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(out.lines().count(), n2);

    // offsets: table and JSON agree with what was produced.
    let out = cli.ok(&["offsets", "lines"]);
    assert!(out.starts_with("PARTITION"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&cli.ok(&["offsets", "lines", "--json"])).unwrap();
    let total: i64 = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 32);

    // --follow waits for new records; --count ends it.
    let mut follower = cli.cmd(&[
        "consume", "lines", "-p", "0", "--from", "end", "--follow", "-n", "2", "--format",
        "{value}",
    ]);
    let follower = std::thread::spawn(move || run(&mut follower, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1500));
    cli.produce(&["produce", "lines", "-p", "0"], "late 1\nlate 2\n");
    let (ok, out, err) = follower.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "late 1\nlate 2\n");

    // Errors: one line each.
    cli.fails(&["consume", "nope"], "unknown topic or partition: nope");
    cli.fails(&["consume", "lines", "-p", "7"], "has no partition 7");
    cli.fails(
        &["consume", "lines", "--from", "yesterday"],
        "--from yesterday",
    );
    cli.fails(&["offsets", "nope"], "unknown topic or partition");
    let (ok, _, err) = run_with_input(
        &mut cli.cmd(&["produce", "nope"]),
        b"x\n",
        Duration::from_secs(30),
    );
    assert!(!ok && err.contains("unknown topic or partition"), "{err}");
    cli.fails(&["produce", "lines", "--acks", "2"], "acks must be");
    cli.fails(&["produce", "lines", "-z", "brotli"], "unknown compression");
    let (ok, _, err) = cli.run(&["consume"]);
    assert!(
        !ok && err.contains("Usage"),
        "clap explains bad arguments: {err}"
    );
}

#[test]
fn an_unreachable_broker_is_one_clear_line() {
    let cli = Cli {
        brokers: "127.0.0.1:1".into(),
    };
    for args in [
        &["topic", "list"][..],
        &["consume", "t"][..],
        &["offsets", "t"][..],
    ] {
        cli.fails(args, "no broker reachable");
    }
}
