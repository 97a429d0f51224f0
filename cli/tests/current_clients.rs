//! The newest releases of the popular Kafka clients against a real broker:
//! confluent-kafka (librdkafka 2.16), kafka-python 3, aiokafka from PyPI and
//! kafkajs from npm, installed by `scripts/test-clients.sh` (which `.ci/run`
//! runs) into `.test-clients/`. Round trips with byte-exact keys, values and
//! headers, plus what these clients showed broken: list_topics (trailing
//! bytes after Metadata v12), offsets_for_times in compressed batches, topic
//! `compression.type`, manual replica assignments, dynamic broker configs.

mod support;

use rill_net::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use rill_net::kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, ResponseKind};
use rill_net::kafka_protocol::protocol::StrBytes;
use wire::Wire;

#[path = "support/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{batches_in, clients_dir, run, Broker};

fn test_clients() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.test-clients")
        .canonicalize()
        .ok()
        .filter(|d| {
            d.join("venv/bin/python").exists() && d.join("node/node_modules/kafkajs").exists()
        });
    dir.expect("the newest Kafka clients are not installed: run `bash scripts/test.sh` (the README's test command) or `bash scripts/test-clients.sh`")
}

/// Runs a check of `current_clients.py` with the venv's python.
fn py(broker: &Broker, check: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(
        Command::new(test_clients().join("venv/bin/python"))
            .arg(clients_dir().join("current_clients.py"))
            .arg(broker.addr())
            .arg(check)
            .args(args),
        Duration::from_secs(240),
    );
    assert!(ok, "{check} failed\nstdout:\n{out}\nstderr:\n{err}");
    println!("{out}");
    out
}

/// The codec of every batch stored in a partition's first segment, once
/// the segment holds some: acknowledged batches are durable in the shard
/// journal at once, and reach the segment file within the flush interval
/// (1 s by default).
fn stored_codecs(data_dir: &Path, topic: &str) -> Vec<u8> {
    let path = data_dir.join(format!("topics/{topic}-0/00000000000000000000.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let codecs = codecs_in(&std::fs::read(&path).expect("segment file"));
        if !codecs.is_empty() || std::time::Instant::now() > deadline {
            return codecs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn codecs_in(log: &[u8]) -> Vec<u8> {
    batches_in(log).iter().map(|b| b[22] & 0x07).collect()
}

#[test]
fn confluent_kafka_newest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    py(&broker, "confluent_version", &[]);
    py(&broker, "confluent_list_topics", &[]);
    py(&broker, "confluent_round_trip", &[]);
    py(&broker, "confluent_replica_assignment", &[]);
    // The older suite, now with the newest librdkafka.
    for check in [
        "compression_codecs",
        "assign_seek_watermarks_and_times",
        "admin_topics_and_configs",
    ] {
        let (ok, out, err) = run(
            Command::new(test_clients().join("venv/bin/python"))
                .arg(clients_dir().join("confluent_suite.py"))
                .arg(broker.addr())
                .arg(check),
            Duration::from_secs(240),
        );
        assert!(
            ok,
            "confluent_suite {check} failed\nstdout:\n{out}\nstderr:\n{err}"
        );
    }
}

#[test]
fn offsets_for_times_exact_for_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    py(&broker, "confluent_timestamps_every_codec", &[]);
}

#[test]
fn topic_compression_type_recompresses_other_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    py(&broker, "confluent_topic_compression", &["lz4-topic"]);
    let codecs = stored_codecs(dir.path(), "lz4-topic");
    assert!(!codecs.is_empty());
    assert!(
        codecs.iter().all(|&c| c == 3),
        "stored codecs {codecs:?}, want all lz4 (3)"
    );
}

/// IncrementalAlterConfigs SET on the BROKER resource `name` (`""`: the
/// cluster-wide default, which the Python clients cannot name); returns
/// each resource's (error code, message).
fn set_broker_configs(addr: &str, name: &str, set: &[(&str, &str)]) -> Vec<(i16, String)> {
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 4;
    resource.resource_name = StrBytes::from_string(name.to_string());
    resource.configs = set
        .iter()
        .map(|(k, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.config_operation = 0;
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![resource];
    match Wire::connect(addr).call(ApiKey::IncrementalAlterConfigs, 1, &req) {
        ResponseKind::IncrementalAlterConfigs(r) => r
            .responses
            .iter()
            .map(|r| {
                (
                    r.error_code,
                    r.error_message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect(),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn dynamic_broker_configs_apply_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let set = set_broker_configs(
        &broker.addr(),
        "",
        &[
            ("num.partitions", "3"),
            ("log.retention.ms", "999"),
            ("compression.type", "gzip"),
        ],
    );
    assert_eq!(set, vec![(0, String::new())]);
    let refused = set_broker_configs(&broker.addr(), "7", &[("num.partitions", "2")]);
    assert!(
        refused[0].0 == 42 && refused[0].1.contains("no broker `7`"),
        "{refused:?}"
    );
    py(&broker, "confluent_broker_configs_set", &["after-defaults"]);
    let codecs = stored_codecs(dir.path(), "after-defaults");
    assert!(
        !codecs.is_empty() && codecs.iter().all(|&c| c == 4),
        "stored {codecs:?}, want zstd (4)"
    );
    assert!(broker.terminate().success());
    broker.restart();
    py(
        &broker,
        "confluent_broker_configs_after_restart",
        &["after-defaults"],
    );
}

#[test]
fn kafka_python_newest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    py(&broker, "kafka_python", &[]);
}

#[test]
fn aiokafka_newest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    py(&broker, "aiokafka", &[]);
}

#[test]
fn kafkajs_newest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let clients = test_clients();
    let (ok, out, err) = run(
        Command::new("node")
            .arg(clients_dir().join("kafkajs_suite.js"))
            .arg(broker.addr())
            .arg("from-kafkajs")
            .arg("3")
            .env("NODE_PATH", clients.join("node/node_modules")),
        Duration::from_secs(120),
    );
    assert!(ok, "kafkajs failed\nstdout:\n{out}\nstderr:\n{err}");
    println!("{out}");
    py(&broker, "read_back", &["from-kafkajs", "3"]);
}
