//! confluent-kafka for Python (librdkafka) against a real broker: every
//! compression codec with acks=all, assign/seek/watermarks/offsets_for_times,
//! and the admin client. The checks live in `tests/clients/confluent_suite.py`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{clients_dir, python, run, Broker};

fn suite(broker: &Broker, checks: &[&str]) {
    let (ok, out, err) = run(
        Command::new(python())
            .arg(clients_dir().join("confluent_suite.py"))
            .arg(broker.addr())
            .args(checks),
        Duration::from_secs(240),
    );
    assert!(
        ok,
        "confluent-kafka checks {checks:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    println!("{out}");
}

#[test]
fn producer_with_every_codec_and_acks_all() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    suite(&broker, &["compression_codecs"]);
}

#[test]
fn consumer_assign_seek_watermarks_and_offsets_for_times() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    suite(&broker, &["assign_seek_watermarks_and_times"]);
}

#[test]
fn admin_client_topics_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    suite(&broker, &["admin_topics_and_configs"]);
}
