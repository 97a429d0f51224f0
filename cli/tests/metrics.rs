//! The admin listener with real parts: a `rill broker` process, kcat and
//! the rill CLI as clients, Debian's `promtool` checking the exposition and
//! a real Prometheus server scraping it (both from Debian's `prometheus`
//! package, which `scripts/test.sh` installs).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, run_with_input, Broker};

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).timeout(Duration::from_secs(20)).call() {
        Ok(r) => {
            let status = r.status();
            (status, r.into_string().unwrap())
        }
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn metrics(broker: &Broker) -> String {
    let admin = broker.admin.as_ref().expect("an admin listener");
    let (status, body) = get(&format!("http://{admin}/metrics"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` exactly as written (labels in
/// the encoder's order), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

fn rill(addr: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(args)
            .env("RILL_BROKERS", addr),
        Duration::from_secs(60),
    );
    assert!(ok, "rill {args:?}: {err}");
    out
}

fn kcat_produce(addr: &str, topic: &str, n: usize, from: usize) {
    let lines: String = (from..from + n)
        .map(|i| format!("k{i}:value-{i}\n"))
        .collect();
    let (ok, _, err) = run_with_input(
        Command::new("kcat").args(["-b", addr, "-P", "-t", topic, "-K", ":"]),
        lines.as_bytes(),
        Duration::from_secs(60),
    );
    assert!(ok, "kcat -P: {err}");
}

fn promtool_check(text: &str) {
    let (ok, out, err) = run_with_input(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
        Duration::from_secs(30),
    );
    assert!(
        ok,
        "promtool check metrics failed (is Debian's prometheus installed? `bash scripts/test.sh` installs it):\n{out}{err}"
    );
}

#[test]
fn metrics_pass_promtool_and_count_what_clients_did() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let addr = broker.addr();
    rill(&addr, &["topic", "create", "orders", "-p", "3"]);
    kcat_produce(&addr, "orders", 500, 0);
    // A group reads everything and commits: no lag.
    let read = rill(
        &addr,
        &["consume", "orders", "--group", "billing", "--count", "500"],
    );
    assert_eq!(read.lines().count(), 500);
    // Then 120 more that nobody reads.
    kcat_produce(&addr, "orders", 120, 500);

    let text = metrics(&broker);
    promtool_check(&text);
    assert_eq!(
        sample(&text, "rill_topic_records_in_total{topic=\"orders\"}"),
        Some(620.0),
        "{text}"
    );
    assert!(sample(&text, "rill_topic_bytes_in_total{topic=\"orders\"}").unwrap() > 620.0 * 10.0);
    assert!(sample(&text, "rill_topic_records_out_total{topic=\"orders\"}").unwrap() >= 500.0);
    let lag: f64 = (0..3)
        .map(|p| {
            sample(
                &text,
                &format!("rill_consumer_group_lag{{group=\"billing\",topic=\"orders\",partition=\"{p}\"}}"),
            )
            .unwrap_or_else(|| panic!("lag of partition {p}:\n{text}"))
        })
        .sum();
    assert_eq!(lag, 120.0, "the unread records are the group's lag");
    let end: f64 = (0..3)
        .map(|p| {
            sample(
                &text,
                &format!("rill_partition_log_end_offset{{topic=\"orders\",partition=\"{p}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(end, 620.0);
    assert!(sample(&text, "rill_requests_total{api=\"Produce\"}").unwrap() >= 2.0);
    assert!(sample(&text, "rill_request_duration_seconds_count{api=\"Fetch\"}").unwrap() >= 1.0);
    assert!(text.contains("rill_sync_duration_seconds_bucket{kind=\"journal\""));
    // A journal that wrote little makes its files at its first size: at
    // least 4 MiB, at most 32 MiB (less on a nearly full disk).
    let file_bytes = sample(&text, "rill_journal_file_bytes{shard=\"0\"}").unwrap();
    assert!(
        ((4 << 20) as f64..=(32 << 20) as f64).contains(&file_bytes),
        "{file_bytes}"
    );
    assert_eq!(sample(&text, "rill_ready"), Some(1.0));
    assert!(sample(&text, "rill_shard_busy_seconds_total{shard=\"0\"}").unwrap() > 0.0);
    assert!(sample(&text, "rill_shard_cpu_seconds_total{shard=\"0\"}").unwrap() > 0.0);
    assert!(
        sample(&text, "rill_read_cache_bytes").unwrap() > 0.0,
        "recent batches are cached"
    );
    for family in [
        "rill_write_buffer_bytes",
        "rill_producer_ids",
        "rill_connections_open",
        "rill_disk_reads_total{served=\"ready\"}",
        "rill_disk_reads_total{served=\"waited\"}",
        "rill_disk_reads_total{served=\"missed\"}",
    ] {
        assert!(sample(&text, family).is_some(), "{family}:\n{text}");
    }
    assert!(sample(&text, "rill_connections_accepted_total").unwrap() >= 3.0);

    // An unknown topic's produce is an error by its Kafka name.
    let (_, _, _) = run_with_input(
        Command::new("kcat").args([
            "-b",
            &addr,
            "-P",
            "-t",
            "no-such-topic",
            "-X",
            "message.timeout.ms=3000",
        ]),
        b"x\n",
        Duration::from_secs(30),
    );
    let text = metrics(&broker);
    assert!(
        text.lines()
            .any(|l| l.starts_with("rill_request_errors_total{")
                && l.contains("error=\"UNKNOWN_TOPIC_OR_PARTITION\"")),
        "{text}"
    );

    // `rill broker status` reads the same listener.
    let admin = broker.admin.clone().unwrap();
    let out = rill(&addr, &["broker", "status", "--admin", &admin]);
    assert!(out.contains("ready        yes"), "{out}");
    assert!(out.contains("3 open"), "{out}");
}

/// Cleaner progress: a compacted topic whose keys are written over and
/// over; the cleaner's passes show as counters and the clean point moves.
#[test]
fn the_cleaners_progress_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--log-cleaner-backoff-ms", "100"]);
    let addr = broker.addr();
    rill(
        &addr,
        &[
            "topic",
            "create",
            "table",
            "-c",
            "cleanup.policy=compact",
            "-c",
            "segment.ms=200",
            "-c",
            "min.cleanable.dirty.ratio=0.01",
            "-c",
            "min.compaction.lag.ms=0",
        ],
    );
    let keys = 20;
    let rounds = 6;
    for round in 0..rounds {
        let lines: String = (0..keys).map(|k| format!("k{k}:v{round}\n")).collect();
        let (ok, _, err) = run_with_input(
            Command::new("kcat").args(["-b", &addr, "-P", "-t", "table", "-K", ":"]),
            lines.as_bytes(),
            Duration::from_secs(60),
        );
        assert!(ok, "kcat -P: {err}");
        // segment.ms is 200: the next round starts a new segment.
        std::thread::sleep(Duration::from_millis(250));
    }
    let written = (keys * rounds) as f64;
    let started = Instant::now();
    let text = loop {
        let text = metrics(&broker);
        let removed = sample(&text, "rill_cleaner_records_removed_total").unwrap();
        if removed > 0.0 {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no cleaner pass:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    promtool_check(&text);
    assert!(sample(&text, "rill_cleaner_passes_total").unwrap() >= 1.0);
    assert!(sample(&text, "rill_cleaner_segments_read_total").unwrap() >= 1.0);
    assert!(sample(&text, "rill_cleaner_bytes_read_total").unwrap() > 0.0);
    let removed = sample(&text, "rill_cleaner_records_removed_total").unwrap();
    assert!(
        removed <= written - keys as f64,
        "never more than the superseded values: {removed}"
    );
    let cleaned = sample(
        &text,
        "rill_partition_cleaned_offset{topic=\"table\",partition=\"0\"}",
    )
    .unwrap();
    assert!(cleaned > 0.0 && cleaned <= written, "{cleaned}");
    let dirty = sample(&text, "rill_cleaner_dirty_offsets").unwrap();
    assert_eq!(dirty, written - cleaned, "log end minus the clean point");
}

#[test]
fn per_partition_series_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--metrics-partition-series", "false"]);
    let addr = broker.addr();
    rill(&addr, &["topic", "create", "small", "-p", "2"]);
    let before = metrics(&broker);
    rill(&addr, &["topic", "create", "big", "-p", "400"]);
    let after = metrics(&broker);
    promtool_check(&after);
    assert!(!after.contains("rill_partition_log_end_offset{"));
    assert_eq!(
        sample(&after, "rill_partitions{state=\"open\"}"),
        Some(402.0)
    );
    // The scrape does not grow with the partitions: the only new series
    // are the new topic's own (its bytes and records in and out).
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_string()))
            .collect()
    };
    let (was, now) = (series(&before), series(&after));
    let new: Vec<_> = now.difference(&was).collect();
    assert!(
        new.len() <= 4
            && new
                .iter()
                .all(|k| k.contains("topic=\"big\"") && !k.contains("partition=")),
        "new series with 400 partitions: {new:?}"
    );
}

/// Polls `/v1/status/ready` until 200; returns the statuses seen in turn.
fn statuses_until_ready(admin: &str) -> Vec<u16> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let (status, body) = get(&format!("http://{admin}/v1/status/ready"));
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status == 200 {
            return seen;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("starting"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The records of every partition of `topic`, by ListOffsets.
fn records_in(addr: &str, topic: &str, partitions: usize) -> u64 {
    let offsets = rill(addr, &["offsets", topic]);
    assert_eq!(offsets.lines().skip(1).count(), partitions, "{offsets}");
    offsets
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn ready_is_503_while_partitions_open_and_200_once_they_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let addr = broker.addr();
    rill(&addr, &["topic", "create", "wide", "-p", "6000"]);
    kcat_produce(&addr, "wide", 200, 0);
    // After `kill -9` every partition's log opens (the journal replays
    // into them) before the broker says it is ready.
    broker.kill9();
    broker.restart();
    let admin = broker.admin.clone().expect("admin");
    assert_eq!(
        statuses_until_ready(&admin),
        [503, 200],
        "not ready while 6,000 partitions open, then ready"
    );
    // Ready means serving: every partition answers at once.
    assert_eq!(
        records_in(&addr, "wide", 6000),
        200,
        "every record is there"
    );
    // After a clean stop the partitions serve from the stop's record while
    // their logs open behind: ready as soon as they are placed, and every
    // partition answers with what it holds.
    assert_eq!(broker.terminate().code(), Some(0));
    broker.restart();
    let admin = broker.admin.clone().expect("admin");
    let seen = statuses_until_ready(&admin);
    assert_eq!(seen.last(), Some(&200), "{seen:?}");
    let at_ready = metrics(&broker);
    let state = |text: &str, s: &str| {
        sample(text, &format!("rill_partitions{{state=\"{s}\"}}")).unwrap_or(-1.0)
    };
    assert_eq!(
        state(&at_ready, "open") + state(&at_ready, "dormant"),
        6000.0,
        "every partition serves, open or dormant"
    );
    assert_eq!(
        records_in(&addr, "wide", 6000),
        200,
        "every record is there"
    );
    // The logs open behind.
    let waited = Instant::now();
    while state(&metrics(&broker), "dormant") > 0.0 {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "logs never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state(&metrics(&broker), "open"), 6000.0);
    assert_eq!(
        records_in(&addr, "wide", 6000),
        200,
        "every record is there"
    );
    let (status, _) = get(&format!("http://{admin}/v1/status/live"));
    assert_eq!(status, 200);
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One instant-vector query's single value.
fn query(prom: &str, q: &str) -> Option<f64> {
    let url = format!(
        "http://{prom}/api/v1/query?query={}",
        q.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' =>
                    (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array()?.first()?.clone();
    result["value"][1].as_str()?.parse().ok()
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_real_prometheus_sees_rates_and_lag_move_with_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let addr = broker.addr();
    let admin = broker.admin.clone().unwrap();
    rill(&addr, &["topic", "create", "events", "-p", "2"]);

    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: rill\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    let prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package; `bash scripts/test.sh` installs it)"),
    );
    let p = format!("127.0.0.1:{prom_port}");
    eventually(
        "prometheus scrapes the broker",
        Duration::from_secs(60),
        || std::net::TcpStream::connect(&p).is_ok() && query(&p, "up{job=\"rill\"}") == Some(1.0),
    );

    // Load: produce and consume; the bytes-in rate goes above zero.
    kcat_produce(&addr, "events", 300, 0);
    let read = rill(
        &addr,
        &["consume", "events", "--group", "audit", "--count", "300"],
    );
    assert_eq!(read.lines().count(), 300);
    eventually("bytes-in rate > 0", Duration::from_secs(60), || {
        query(
            &p,
            "sum(rate(rill_topic_bytes_in_total{topic=\"events\"}[1m]))",
        )
        .is_some_and(|v| v > 0.0)
    });
    eventually("the group has caught up", Duration::from_secs(60), || {
        query(&p, "sum(rill_consumer_group_lag{group=\"audit\"})") == Some(0.0)
    });
    // The group stops consuming: its lag grows to exactly the unread count.
    kcat_produce(&addr, "events", 75, 300);
    eventually(
        "lag = the 75 unread records",
        Duration::from_secs(60),
        || query(&p, "sum(rill_consumer_group_lag{group=\"audit\"})") == Some(75.0),
    );
    drop(prom);
}
