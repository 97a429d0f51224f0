//! Idempotent producers against a real broker: every record stored exactly
//! once and in send order when answers are lost (a proxy cuts the
//! connection after the broker appended and answered, so every client
//! retries) and across `kill -9` of the broker; with kafka-python 3 at its
//! defaults, confluent-kafka (Debian's and the newest), kafkajs and
//! rill-client. The same lost answers without idempotence store duplicates:
//! the fault is real.

mod support;

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/wire.rs"]
mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fault_proxy::FaultProxy;
use rill_client::{Acks, Admin, Client, ClientConfig, NewTopic, Producer, ProducerConfig, Record};
use support::{clients_dir, consume_all, python, run, Broker};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn test_clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.test-clients")
        .canonicalize()
        .expect("the newest Kafka clients are not installed: run `bash scripts/test.sh` (the README's test command) or `bash scripts/test-clients.sh`")
}

/// A broker reached only through a proxy that loses the answer to every
/// third Produce request, at most `max_cuts` times.
struct Lossy {
    proxy: FaultProxy,
    broker: Broker,
    _dir: tempfile::TempDir,
}

impl Lossy {
    fn start(max_cuts: usize) -> Lossy {
        let dir = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(3, max_cuts);
        let advertised = proxy.addr();
        let broker = Broker::start(dir.path(), &["--advertised-listener", &advertised]);
        proxy.forward_to(&broker.addr());
        Lossy {
            proxy,
            broker,
            _dir: dir,
        }
    }

    fn create(&self, rt: &tokio::runtime::Runtime, topic: &str, partitions: i32) {
        rt.block_on(async {
            let c = Client::connect(ClientConfig::new(&self.proxy.addr()))
                .await
                .unwrap();
            Admin::new(c)
                .create_topic(NewTopic::new(topic, partitions))
                .await
                .unwrap();
        });
    }
}

/// Values of every record of `topic`, by partition, in offset order (read
/// past the proxy, straight from the broker).
fn stored(rt: &tokio::runtime::Runtime, addr: &str, topic: &str) -> HashMap<i32, Vec<String>> {
    let records = rt.block_on(async {
        let client = Client::connect(ClientConfig::new(addr)).await.unwrap();
        consume_all(&client, topic).await
    });
    let mut out: HashMap<i32, Vec<String>> = HashMap::new();
    for r in records {
        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
        out.entry(r.partition).or_default().push(v.into_owned());
    }
    out
}

fn numbers(count: usize) -> Vec<String> {
    (0..count).map(|i| i.to_string()).collect()
}

/// Runs an external client, which must acknowledge every record, through
/// the lossy proxy; then partition 0 must hold `0..count` exactly once each,
/// in order.
fn exactly_once_through_lost_answers(client: &str, command: &mut Command, count: usize) {
    let rt = runtime();
    let lossy = Lossy::start(8);
    let topic = format!("idem-{client}");
    lossy.create(&rt, &topic, 1);
    let (ok, out, err) = run(
        command
            .arg(lossy.proxy.addr())
            .arg(&topic)
            .arg(count.to_string()),
        Duration::from_secs(240),
    );
    println!("{client}: {out}");
    assert!(ok, "{client} failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(lossy.proxy.cuts() > 0, "{client}: the proxy cut no answer");
    let values = stored(&rt, &lossy.broker.addr(), &topic)
        .remove(&0)
        .unwrap_or_default();
    println!(
        "{client}: {} produce requests, {} answers lost, {} records stored",
        lossy.proxy.produce_requests(),
        lossy.proxy.cuts(),
        values.len()
    );
    assert_eq!(values.len(), count, "{client}: each record stored once");
    assert!(values == numbers(count), "{client}: records out of order");
}

#[test]
fn kafka_python_3_with_its_defaults() {
    exactly_once_through_lost_answers(
        "kafka-python",
        Command::new(test_clients().join("venv/bin/python"))
            .arg(clients_dir().join("idempotent_producer.py"))
            .arg("kafka-python"),
        3000,
    );
}

#[test]
fn confluent_kafka_newest_with_enable_idempotence() {
    exactly_once_through_lost_answers(
        "confluent-newest",
        Command::new(test_clients().join("venv/bin/python"))
            .arg(clients_dir().join("idempotent_producer.py"))
            .arg("confluent"),
        20_000,
    );
}

#[test]
fn debian_confluent_kafka_with_enable_idempotence() {
    exactly_once_through_lost_answers(
        "confluent-debian",
        Command::new(python())
            .arg(clients_dir().join("idempotent_producer.py"))
            .arg("confluent"),
        20_000,
    );
}

#[test]
fn kafkajs_idempotent() {
    let node_dir = test_clients().join("node");
    exactly_once_through_lost_answers(
        "kafkajs",
        Command::new("node")
            .env("NODE_PATH", node_dir.join("node_modules"))
            .arg(clients_dir().join("kafkajs_idempotent.js")),
        3000,
    );
}

/// rill-client through the proxy: `count` records over `partitions`, keyed
/// by their number modulo the partitions; returns the stored values.
fn rill_client_through_lost_answers(idempotence: bool) -> (usize, HashMap<i32, Vec<String>>) {
    let rt = runtime();
    let lossy = Lossy::start(10);
    lossy.create(&rt, "idem-rill", 4);
    let count = 40_000usize;
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(&lossy.proxy.addr()))
            .await
            .unwrap();
        let producer = Producer::new(
            client,
            ProducerConfig {
                acks: Acks::All,
                batch_size: 8 << 10,
                retry_backoff: Duration::from_millis(20),
                idempotence,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut pending = Vec::with_capacity(count);
        for i in 0..count {
            let r = Record::new("idem-rill", i.to_string()).partition((i % 4) as i32);
            pending.push(producer.send(r).await.unwrap());
        }
        for d in pending {
            d.await.expect("every record is acknowledged");
        }
        if idempotence {
            assert!(producer.producer_id().is_some());
        }
        producer.close().await;
    });
    assert!(lossy.proxy.cuts() > 0, "the proxy cut no answer");
    println!(
        "rill-client idempotence={idempotence}: {} produce requests, {} answers lost",
        lossy.proxy.produce_requests(),
        lossy.proxy.cuts()
    );
    (count, stored(&rt, &lossy.broker.addr(), "idem-rill"))
}

#[test]
fn rill_client_stores_each_record_once_in_order_despite_lost_answers() {
    let (count, stored) = rill_client_through_lost_answers(true);
    for p in 0..4 {
        let expected: Vec<String> = (0..count)
            .filter(|i| i % 4 == p)
            .map(|i| i.to_string())
            .collect();
        let got = &stored[&(p as i32)];
        assert_eq!(got.len(), expected.len(), "partition {p}: each record once");
        assert!(got == &expected, "partition {p}: records out of order");
    }
}

#[test]
fn without_idempotence_the_same_lost_answers_store_duplicates() {
    let (count, stored) = rill_client_through_lost_answers(false);
    let total: usize = stored.values().map(Vec::len).sum();
    println!("without idempotence: {total} records stored for {count} sent");
    assert!(
        total > count,
        "a retried batch whose answer was lost is stored again"
    );
}

/// kill -9 of the broker while an idempotent producer sends with retries:
/// after the restart no record is missing, none is stored twice, and each
/// partition holds its records in send order (the producer state was
/// rebuilt from the log).
#[test]
fn kill_9_during_an_idempotent_produce_loop_leaves_no_duplicate_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let rt = runtime();
    let client = rt.block_on(async {
        let c = Client::connect(ClientConfig::new(&broker.addr()))
            .await
            .unwrap();
        Admin::new(c.clone())
            .create_topic(NewTopic::new("idem-kill", 3))
            .await
            .unwrap();
        c
    });
    let producing = rt.spawn({
        let client = client.clone();
        async move {
            let producer = Producer::new(
                client,
                ProducerConfig {
                    batch_size: 16 << 10,
                    retry_backoff: Duration::from_millis(50),
                    delivery_timeout: Duration::from_secs(60),
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut pending = Vec::new();
            let started = Instant::now();
            let mut i = 0usize;
            // Bounded by count and time.
            while i < 60_000 && started.elapsed() < Duration::from_secs(20) {
                let r = Record::new("idem-kill", i.to_string()).partition((i % 3) as i32);
                pending.push(producer.send(r).await.unwrap());
                i += 1;
                if i.is_multiple_of(1000) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let mut failed = 0;
            for d in pending {
                failed += d.await.is_err() as usize;
            }
            producer.close().await;
            (i, failed)
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    broker.kill9();
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    let (sent, failed) = rt.block_on(producing).unwrap();
    assert_eq!(failed, 0, "retries deliver every record across the restart");
    let stored = stored(&rt, &broker.addr(), "idem-kill");
    for p in 0..3 {
        let expected: Vec<String> = (0..sent)
            .filter(|i| i % 3 == p)
            .map(|i| i.to_string())
            .collect();
        let got = &stored[&(p as i32)];
        assert_eq!(
            got.len(),
            expected.len(),
            "partition {p}: no duplicate, no gap"
        );
        assert!(got == &expected, "partition {p}: send order");
    }
    println!("kill -9: {sent} records, each stored once in order");
}

/// InitProducerId over the wire at `version`: (error code, id, epoch).
fn init_producer_id(
    addr: &str,
    version: i16,
    transactional_id: Option<&str>,
    current: (i64, i16),
) -> (i16, i64, i16) {
    use rill_net::kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ResponseKind};
    use rill_net::kafka_protocol::protocol::StrBytes;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = transactional_id.map(|t| StrBytes::from_string(t.into()).into());
    req.transaction_timeout_ms = 60_000;
    req.producer_id = current.0.into();
    req.producer_epoch = current.1;
    match wire::Wire::connect(addr).call(ApiKey::InitProducerId, version, &req) {
        ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Producer ids are never handed out twice: not after a clean restart, not
/// after kill -9 (blocks are recorded in the cluster metadata before any id
/// of them is given); an id and epoch we issued get the next epoch.
#[test]
fn producer_ids_are_unique_across_restarts_and_epochs_bump() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut seen = Vec::new();
    for version in [0, 2, 4, 5] {
        let (code, id, epoch) = init_producer_id(&broker.addr(), version, None, (-1, -1));
        assert_eq!((code, epoch), (0, 0), "v{version}");
        seen.push(id);
    }
    let first = seen[0];
    assert_eq!(
        init_producer_id(&broker.addr(), 4, None, (first, 0)),
        (0, first, 1)
    );
    assert_eq!(
        init_producer_id(&broker.addr(), 4, None, (first, 1)),
        (0, first, 2)
    );
    // Not ours: a fresh id instead.
    let (_, other, epoch) = init_producer_id(&broker.addr(), 4, None, (1 << 40, 3));
    assert!(other != 1 << 40 && epoch == 0);
    seen.push(other);
    // Bad pairs and transactions are refused with the codes clients know.
    assert_eq!(init_producer_id(&broker.addr(), 4, None, (-1, 2)).0, 42); // INVALID_REQUEST
    assert_eq!(
        init_producer_id(&broker.addr(), 4, Some("tx"), (-1, -1)).0,
        53
    );
    broker.terminate();
    broker.restart();
    seen.push(init_producer_id(&broker.addr(), 4, None, (-1, -1)).1);
    broker.kill9();
    broker.restart();
    seen.push(init_producer_id(&broker.addr(), 4, None, (-1, -1)).1);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "ids handed out: {seen:?}");
    assert!(seen.iter().all(|&id| id >= 0));
}
