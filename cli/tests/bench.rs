//! `rill bench`: a small workload end to end, embedded and against a running
//! broker; the reports hold what the run did.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

fn workload(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("name = \"{name}\"\n{body}")).unwrap();
    path
}

/// `rill bench --embedded --skip-limits` of one workload, data in `dir`.
fn bench_embedded(
    dir: &std::path::Path,
    out: &std::path::Path,
    workload: &std::path::Path,
    limit: Duration,
) -> (bool, String, String) {
    run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["bench", "--embedded", "--skip-limits", "--data-dir"])
            .arg(dir)
            .arg("--out")
            .arg(out)
            .arg(workload),
        limit,
    )
}

fn report(out: &std::path::Path, name: &str) -> serde_json::Value {
    let json = std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn an_embedded_fixed_rate_run_reports_throughput_latency_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(
        dir.path(),
        "tiny-fixed",
        r#"
partitions_per_topic = 4
message_size = { distribution = "uniform", min = 64, max = 512 }
keys = { distribution = "zipf", count = 50, exponent = 1.2 }
producers = 2
subscriptions = 2
consumers_per_subscription = 2
rate = 2000
warmup_secs = 1
duration_secs = 3
"#,
    );
    let out = dir.path().join("reports");
    let (ok, stdout, stderr) = run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["bench", "--embedded", "--data-dir"])
            .arg(dir.path())
            .args(["--broker-cpus", "0", "--generator-cpus", "0"])
            .arg("--out")
            .arg(&out)
            .arg(&w),
        Duration::from_secs(180),
    );
    assert!(ok, "rill bench failed: {stderr}");
    assert!(stdout.contains("end-to-end"), "{stdout}");
    assert!(
        stdout.contains("pinned: broker on CPUs 0, generator on CPUs 0"),
        "the report states the layout: {stdout}"
    );
    assert!(
        stderr.contains("measure produce"),
        "a progress line every second: {stderr}"
    );
    assert!(
        stdout.contains(
            "consumers: 2 subscription(s) × 2 consumer(s): a consumer group each, KIP-848"
        ) && stderr.contains("consumer group(s) (consumer protocol) gave out all 4 partitions"),
        "subscriptions are consumer groups, and the report says which protocol: {stdout}{stderr}"
    );
    let r = report(&out, "tiny-fixed");
    let produced = r["result"]["produce"]["messages"].as_u64().unwrap();
    // 2,000 msgs/s for 3 s, within the slack of a shared machine.
    assert!((4_500..=6_600).contains(&produced), "produced {produced}");
    assert_eq!(
        r["result"]["consume"]["messages"].as_u64().unwrap(),
        2 * produced,
        "both subscriptions read everything"
    );
    assert_eq!(r["result"]["errors"], 0, "{}", r["result"]["first_error"]);
    assert_eq!(r["result"]["undelivered"], 0);
    // The embedded broker's own CPU time, and what a GB produced cost it.
    let cpu = r["broker_cpu"]["cpu_seconds"].as_f64().unwrap();
    let per_gb = r["broker_cpu_seconds_per_gb"].as_f64().unwrap();
    assert!(cpu > 0.0 && per_gb > cpu, "{cpu} s, {per_gb} s/GB");
    assert!(stdout.contains("CPU-s per GB produced"), "{stdout}");
    for l in ["publish_latency", "end_to_end_latency"] {
        let s = &r["result"][l];
        assert!(s["count"].as_u64().unwrap() > 0, "{l}");
        let p50 = s["p50_ms"].as_f64().unwrap();
        let p99 = s["p99_ms"].as_f64().unwrap();
        let max = s["max_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{l}: {s}");
    }
    assert!(r["limits"]["disk_write_mb_s"].as_f64().unwrap() > 1.0);
    assert!(r["limits"]["disk_write_synced_mb_s"].as_f64().unwrap() > 1.0);
    assert!(r["limits"]["disk_read_mb_s"].as_f64().unwrap() > 1.0);
    // The generator's own CPU use, against the one CPU it was pinned to.
    let generator = &r["generator_cpu"];
    assert!(
        generator["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{generator}"
    );
    assert_eq!(generator["capacity_cpus"], 1.0);
    assert!(stdout.contains("generator CPU"), "{stdout}");
    assert!(stdout.contains("write+fdatasync"), "{stdout}");
    assert!(r["limits"]["loopback_tcp_mb_s"].as_f64().unwrap() > 1.0);
    assert!(r["produce_fraction_of_disk"].as_f64().unwrap() > 0.0);
    assert!(r["result"]["timeline"].as_array().unwrap().len() >= 4);
    // The producers' requests: how many, what they carried, their round
    // trip and how many were in flight (two producers, five each at most).
    let q = &r["result"]["produce_requests"];
    let per_second = q["per_second"].as_f64().unwrap();
    assert!(per_second > 10.0, "{q}");
    assert!(q["batches_per_request"].as_f64().unwrap() >= 1.0, "{q}");
    assert!(q["bytes_per_request"].as_f64().unwrap() > 64.0, "{q}");
    let (mean, max) = (
        q["round_trip_mean_ms"].as_f64().unwrap(),
        q["round_trip_max_ms"].as_f64().unwrap(),
    );
    assert!(mean > 0.0 && mean <= max, "{q}");
    assert_eq!(q["in_flight_max"], 10, "{q}");
    let in_flight = q["in_flight_mean"].as_f64().unwrap();
    assert!(in_flight > 0.0 && in_flight <= 10.0, "{q}");
    assert!(stdout.contains("produce requests"), "{stdout}");
    let html = std::fs::read_to_string(out.join("tiny-fixed.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert!(html.contains("Throughput over time") && html.contains("p99.99"));
}

#[test]
fn a_max_rate_run_against_a_running_broker_stops_at_its_message_bound() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let w = workload(
        dir.path(),
        "tiny-max",
        r#"
topics = 2
partitions_per_topic = 3
message_size = 200
rate = "max"
compression = "lz4"
warmup_secs = 0
duration_secs = 30
max_messages = 20000
"#,
    );
    let out = dir.path().join("reports");
    let (ok, stdout, stderr) = run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args([
                "bench",
                "--skip-limits",
                "--quiet",
                "--brokers",
                &broker.addr(),
                "--out",
            ])
            .arg(&out)
            .arg(&w),
        Duration::from_secs(120),
    );
    assert!(ok, "rill bench failed: {stderr}");
    assert!(stdout.contains("not measured"), "{stdout}");
    let r = report(&out, "tiny-max");
    let produced = r["result"]["produce"]["messages"].as_u64().unwrap();
    assert!((20_000..20_000 + 1000).contains(&produced), "{produced}");
    assert_eq!(
        r["result"]["consume"]["messages"].as_u64().unwrap(),
        produced
    );
    assert!(r["result"]["produce"]["seconds"].as_f64().unwrap() < 30.0);
    // The benchmark cleans up its topics.
    let (_, topics, _) = run(
        Command::new(env!("CARGO_BIN_EXE_rill")).args([
            "topic",
            "list",
            "--brokers",
            &broker.addr(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!topics.contains("tiny-max"), "{topics}");
}

#[test]
fn a_bad_workload_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(
        dir.path(),
        "bad",
        "partitions_per_topic = 1\nmessage_size = 100\nrate = \"fast\"\nduration_secs = 1\n",
    );
    let (ok, _, stderr) = run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["bench", "--skip-limits"])
            .arg(&w),
        Duration::from_secs(30),
    );
    assert!(!ok);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("rate"),
        "{stderr}"
    );
}

#[test]
fn a_fraction_of_max_rate_is_calibrated_first() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let w = workload(
        dir.path(),
        "tiny-half",
        r#"
partitions_per_topic = 2
message_size = 512
rate = "max*0.25"
warmup_secs = 0
duration_secs = 2
"#,
    );
    let out = dir.path().join("reports");
    let (ok, _, stderr) = run(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args([
                "bench",
                "--skip-limits",
                "--quiet",
                "--calibration-secs",
                "2",
            ])
            .args(["--brokers", &broker.addr(), "--out"])
            .arg(&out)
            .arg(&w),
        Duration::from_secs(120),
    );
    assert!(ok, "rill bench failed: {stderr}");
    assert!(stderr.contains("calibrating tiny-half"), "{stderr}");
    let r = report(&out, "tiny-half");
    let max = r["calibrated_max_msgs_per_s"].as_f64().unwrap();
    let rate = r["workload"]["rate"].as_f64().unwrap();
    assert!(
        (rate - max / 4.0).abs() < 1.0,
        "rate {rate} is a quarter of {max}"
    );
    let achieved = r["result"]["produce"]["msgs_per_s"].as_f64().unwrap();
    assert!(
        achieved < max * 0.6,
        "the run holds its rate ({achieved} msgs/s) well below the max ({max})"
    );
}

/// A produce-only workload (no subscriptions) ends when producing ends:
/// there is nothing to drain. It used to wait out the reporter's 600 s bound.
#[test]
fn a_produce_only_run_ends_without_waiting_for_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(
        dir.path(),
        "produce-only",
        r#"
partitions_per_topic = 1
message_size = 256
producers = 1
subscriptions = 0
rate = 2000
warmup_secs = 1
duration_secs = 2
"#,
    );
    let out = dir.path().join("reports");
    let (ok, _stdout, stderr) = bench_embedded(dir.path(), &out, &w, Duration::from_secs(60));
    assert!(ok, "rill bench failed or hung: {stderr}");
    let r = report(&out, "produce-only");
    assert!(r["result"]["produce"]["messages"].as_u64().unwrap() > 2_000);
    assert_eq!(r["result"]["consume"]["messages"], 0);
    assert_eq!(r["result"]["undelivered"], 0);
}

/// Catch-up: the whole backlog is written before any consumer starts, then
/// read from the beginning; every message is read once and the backlog's
/// age is not reported as latency.
#[test]
fn a_catch_up_run_reads_the_whole_backlog_after_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(
        dir.path(),
        "tiny-catch-up",
        r#"
partitions_per_topic = 2
message_size = 512
producers = 1
subscriptions = 2
consumers_per_subscription = 2
rate = "max"
warmup_secs = 0
duration_secs = 20
max_messages = 30000
catch_up = true
"#,
    );
    let out = dir.path().join("reports");
    let (ok, stdout, stderr) = bench_embedded(dir.path(), &out, &w, Duration::from_secs(120));
    assert!(ok, "rill bench failed: {stderr}");
    let r = report(&out, "tiny-catch-up");
    let produced = r["result"]["produce"]["messages"].as_u64().unwrap();
    assert!((30_000..31_000).contains(&produced), "{produced}");
    // Two subscriptions, each reading everything.
    assert_eq!(
        r["result"]["consume"]["messages"].as_u64().unwrap(),
        2 * produced,
        "{stdout}"
    );
    assert_eq!(r["result"]["undelivered"], 0);
    assert_eq!(r["result"]["errors"], 0, "{}", r["result"]["first_error"]);
    assert_eq!(r["result"]["end_to_end_latency"]["count"], 0);
    // No consumer read anything while the backlog was being written.
    let timeline = r["result"]["timeline"].as_array().unwrap();
    let first_consumed = timeline
        .iter()
        .position(|s| s["consume_msgs"].as_u64().unwrap() > 0)
        .unwrap();
    let last_produced = timeline
        .iter()
        .rposition(|s| s["produce_msgs"].as_u64().unwrap() > 0)
        .unwrap();
    assert!(first_consumed >= last_produced, "{timeline:?}");
}
