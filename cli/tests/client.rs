//! The native client against a real broker (in this process, or a `rill
//! broker` process where the test kills or freezes it), and against the
//! clients nobody here wrote (kcat, confluent-kafka) in both directions.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use rill_client::protocol::partitioner::partition_for_key;
use rill_client::{
    Acks, Admin, Client, ClientConfig, Compression, ConfigChange, Consumer, ConsumerConfig,
    ConsumerRecord, NewTopic, Offset, OffsetSpec, Producer, ProducerConfig, Record, TopicPartition,
};
use support::{
    batches_in, clients_dir, consume_all, kcat_read, python, run, run_with_input, Broker, InProcess,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(addr: &str) -> Client {
    Client::connect(ClientConfig::new(addr)).await.unwrap()
}

async fn create(client: &Client, topic: &str, partitions: i32) {
    Admin::new(client.clone())
        .create_topic(NewTopic::new(topic, partitions))
        .await
        .unwrap();
}

fn text(b: &Option<bytes::Bytes>) -> String {
    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
}

#[test]
fn round_trip_of_100k_keyed_records_with_headers_across_8_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    runtime().block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "roundtrip", 8).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        const N: usize = 100_000;
        let mut deliveries = Vec::with_capacity(N);
        for i in 0..N {
            let key = format!("key-{}", i % 997);
            let record = Record::new("roundtrip", format!("value-{i}"))
                .key(key)
                .header("seq", i.to_string())
                .header("kind", "roundtrip");
            deliveries.push(producer.send(record).await.unwrap());
        }
        let mut written = Vec::with_capacity(N);
        for (i, d) in deliveries.into_iter().enumerate() {
            let m = d.await.unwrap();
            let key = format!("key-{}", i % 997);
            assert_eq!(
                m.partition,
                partition_for_key(key.as_bytes(), 8),
                "the Java client's partition"
            );
            written.push(m);
        }
        producer.close().await;

        let records = consume_all(&client, "roundtrip").await;
        assert_eq!(records.len(), N);
        let mut last_seq_per_partition: HashMap<i32, i64> = HashMap::new();
        for r in &records {
            let seq: usize = text(&r.headers[0].value).parse().unwrap();
            assert_eq!(r.headers[1].key, "kind");
            assert_eq!(text(&r.value), format!("value-{seq}"));
            assert_eq!(text(&r.key), format!("key-{}", seq % 997));
            assert_eq!(
                (written[seq].partition, written[seq].offset),
                (r.partition, r.offset),
                "where the delivery said"
            );
            // Order per partition is send order.
            let last = last_seq_per_partition.entry(r.partition).or_insert(-1);
            assert!(seq as i64 > *last, "partition {} out of order", r.partition);
            *last = seq as i64;
        }
        assert_eq!(last_seq_per_partition.len(), 8, "every partition used");
    });
}

#[test]
fn every_codec_is_read_back_by_rust_kcat_and_confluent_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    let rt = runtime();
    for codec in Compression::ALL {
        let topic = format!("codec-{codec}");
        rt.block_on(async {
            let client = client(&broker.addr()).await;
            create(&client, &topic, 2).await;
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    compression: codec,
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut ds = Vec::new();
            for i in 0..2000 {
                let r = Record::new(
                    topic.as_str(),
                    format!("{codec} record {i} {}", "z".repeat(i % 100)),
                )
                .key(format!("k{i}"))
                .header("codec", codec.to_string());
                ds.push(producer.send(r).await.unwrap());
            }
            for d in ds {
                d.await.unwrap();
            }
            producer.close().await;
            let records = consume_all(&client, &topic).await;
            assert_eq!(records.len(), 2000, "{codec}");
            for r in &records {
                let i: usize = text(&r.key)[1..].parse().unwrap();
                assert_eq!(
                    text(&r.value),
                    format!("{codec} record {i} {}", "z".repeat(i % 100))
                );
            }
        });
        // librdkafka reads what the Rust producer compressed.
        let out = kcat_read(&broker.addr(), &topic, "%k|%s|%h\n", &[]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2000, "kcat {codec}");
        for l in &lines {
            let mut f = l.split('|');
            let i: usize = f.next().unwrap()[1..].parse().unwrap();
            assert_eq!(
                f.next().unwrap(),
                format!("{codec} record {i} {}", "z".repeat(i % 100))
            );
            assert_eq!(f.next().unwrap(), format!("codec={codec}"));
        }
        // And so does confluent-kafka.
        let (ok, out, err) = run(
            Command::new(python())
                .arg(clients_dir().join("read_all.py"))
                .args([&broker.addr(), &topic, "2000"]),
            Duration::from_secs(90),
        );
        assert!(ok, "confluent-kafka {codec}: {err}");
        let mut n = 0;
        for l in out.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let i: usize = v["key"].as_str().unwrap()[1..].parse().unwrap();
            assert_eq!(
                v["value"].as_str().unwrap(),
                format!("{codec} record {i} {}", "z".repeat(i % 100))
            );
            assert_eq!(v["headers"][0][1].as_str().unwrap(), codec.to_string());
            n += 1;
        }
        assert_eq!(n, 2000, "confluent-kafka {codec}");
    }
}

#[test]
fn records_from_kcat_are_read_by_the_rust_consumer_on_the_java_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    let rt = runtime();
    rt.block_on(async {
        create(&client(&broker.addr()).await, "from-kcat", 6).await;
    });
    for (codec, count) in [("none", 500), ("lz4", 300), ("zstd", 300)] {
        let input: String = (0..count)
            .map(|i| format!("user-{i}:{codec} payload {i}\n"))
            .collect();
        // murmur2_random is librdkafka's Java-compatible partitioner.
        let (ok, _, err) = run_with_input(
            Command::new("kcat").args([
                "-b",
                &broker.addr(),
                "-P",
                "-t",
                "from-kcat",
                "-K:",
                "-z",
                codec,
                "-H",
                "via=kcat",
                "-X",
                "partitioner=murmur2_random",
            ]),
            input.as_bytes(),
            Duration::from_secs(60),
        );
        assert!(ok, "kcat produce {codec}: {err}");
    }
    rt.block_on(async {
        let client = client(&broker.addr()).await;
        let records = consume_all(&client, "from-kcat").await;
        assert_eq!(records.len(), 1100);
        let mut per_key: HashMap<String, usize> = HashMap::new();
        for r in &records {
            let key = text(&r.key);
            assert_eq!(
                r.partition,
                partition_for_key(key.as_bytes(), 6),
                "librdkafka's murmur2 and ours agree on {key}"
            );
            assert!(text(&r.value).ends_with(&format!("payload {}", &key[5..])));
            assert_eq!(r.headers[0].key, "via");
            assert_eq!(text(&r.headers[0].value), "kcat");
            *per_key.entry(key).or_default() += 1;
        }
        assert_eq!(per_key.len(), 500);
    });
}

#[test]
fn seek_by_offset_timestamp_beginning_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    runtime().block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "seek", 1).await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                // Small batches, so seeks land inside and between batches.
                batch_size: 2048,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let base = 1_700_000_000_000i64;
        let mut ds = Vec::new();
        for i in 0..1000i64 {
            let r = Record::new("seek", format!("v{i}")).timestamp(base + i * 10);
            ds.push(producer.send(r).await.unwrap());
        }
        for (i, d) in ds.into_iter().enumerate() {
            assert_eq!(d.await.unwrap().offset, i as i64);
        }
        producer.close().await;

        let tp = TopicPartition::new("seek", 0);
        let mut c = Consumer::new(client.clone(), ConsumerConfig::default());
        c.assign(std::slice::from_ref(&tp)).await.unwrap();
        let r = first(&mut c, &tp, Offset::At(537)).await.unwrap();
        assert_eq!((r.offset, text(&r.value)), (537, "v537".to_string()));
        let r = first(&mut c, &tp, Offset::Timestamp(base + 2501))
            .await
            .unwrap();
        assert_eq!(r.offset, 251, "first record at or after the timestamp");
        assert_eq!(r.timestamp, base + 2510);
        let r = first(&mut c, &tp, Offset::Beginning).await.unwrap();
        assert_eq!(r.offset, 0);
        c.seek(&tp, Offset::End).unwrap();
        assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        assert_eq!(c.position(&tp), Some(1000));
        // A timestamp after every record: the end.
        c.seek(&tp, Offset::Timestamp(base + 1_000_000)).unwrap();
        assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        assert_eq!(c.position(&tp), Some(1000));

        // The stream interface, and a fetch already in flight: a record
        // produced now arrives without another seek.
        c.seek(&tp, Offset::At(998)).unwrap();
        use futures_util_for_tests::take_n;
        let got = take_n(&mut c, 2).await;
        assert_eq!(got, vec![998, 999]);
        let p2 = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        p2.send(Record::new("seek", "late"))
            .await
            .unwrap()
            .await
            .unwrap();
        let got = take_n(&mut c, 1).await;
        assert_eq!(got, vec![1000]);
    });
}

/// The first record after seeking `tp` to `to`.
async fn first(c: &mut Consumer, tp: &TopicPartition, to: Offset) -> Option<ConsumerRecord> {
    c.seek(tp, to).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rs = c.poll(Duration::from_millis(500)).await.unwrap();
        if let Some(r) = rs.into_iter().next() {
            return Some(r);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

mod futures_util_for_tests {
    use futures_lite::StreamExt;
    use rill_client::Consumer;
    use std::pin::pin;

    /// The offsets of the next `n` records of the consumer's stream.
    pub async fn take_n(c: &mut Consumer, n: usize) -> Vec<i64> {
        let mut s = pin!(c.stream());
        let mut out = Vec::new();
        while out.len() < n {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), s.next())
                .await
                .expect("stream stalled");
            out.push(next.unwrap().unwrap().offset);
        }
        out
    }
}

#[test]
fn admin_manages_topics_and_reports_kafka_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    runtime().block_on(async {
        let client = client(&broker.addr()).await;
        let admin = Admin::new(client.clone());
        admin
            .create_topic(NewTopic::new("admin-a", 2).config("retention.ms", "3600000"))
            .await
            .unwrap();
        let e = admin
            .create_topic(NewTopic::new("admin-a", 2))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(36), "TOPIC_ALREADY_EXISTS: {e}");
        assert!(!e.is_retriable());
        let e = admin
            .create_topic(NewTopic::new("bad/name", 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(17), "INVALID_TOPIC_EXCEPTION: {e}");

        let names: Vec<String> = admin
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(names.contains(&"admin-a".to_string()));
        admin.create_partitions("admin-a", 5).await.unwrap();
        assert_eq!(
            admin
                .describe_topic("admin-a")
                .await
                .unwrap()
                .partitions
                .len(),
            5
        );

        let configs = admin.describe_topic_configs("admin-a").await.unwrap();
        let get = |cs: &[rill_client::ConfigEntry], k: &str| {
            cs.iter().find(|c| c.name == k).cloned().unwrap()
        };
        let r = get(&configs, "retention.ms");
        assert_eq!((r.value.as_deref(), r.is_override), (Some("3600000"), true));
        admin
            .alter_topic_configs(
                "admin-a",
                &[
                    ConfigChange::Set("segment.bytes".into(), "1048576".into()),
                    ConfigChange::Delete("retention.ms".into()),
                ],
            )
            .await
            .unwrap();
        let configs = admin.describe_topic_configs("admin-a").await.unwrap();
        assert_eq!(
            get(&configs, "segment.bytes").value.as_deref(),
            Some("1048576")
        );
        assert!(!get(&configs, "retention.ms").is_override);
        let e = admin
            .alter_topic_configs(
                "admin-a",
                &[ConfigChange::Set("retention.ms".into(), "soon".into())],
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(40), "INVALID_CONFIG: {e}");

        let offsets = admin
            .list_offsets(&[
                (TopicPartition::new("admin-a", 0), OffsetSpec::Earliest),
                (TopicPartition::new("admin-a", 0), OffsetSpec::Latest),
                (TopicPartition::new("admin-a", 9), OffsetSpec::Latest),
            ])
            .await
            .unwrap();
        assert_eq!(offsets[0].1.as_ref().unwrap().0, 0);
        assert_eq!(offsets[1].1.as_ref().unwrap().0, 0);
        assert_eq!(offsets[2].1.as_ref().unwrap_err().code(), Some(3));

        let deleted = admin
            .delete_topics(&["admin-a", "never-was"])
            .await
            .unwrap();
        assert!(deleted[0].1.is_ok());
        assert_eq!(deleted[1].1.as_ref().unwrap_err().code(), Some(3));
        let e = admin.describe_topic("admin-a").await.unwrap_err();
        assert_eq!(e.code(), Some(3));

        // Producing to a topic that does not exist fails with the Kafka code.
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        let e = producer
            .send(Record::new("never-was", "x"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(3), "{e}");
        // A record larger than the topic allows: MESSAGE_TOO_LARGE, not a retry loop.
        admin
            .create_topic(NewTopic::new("small", 1).config("max.message.bytes", "1000"))
            .await
            .unwrap();
        let e = producer
            .send(Record::new("small", vec![7u8; 5000]))
            .await
            .unwrap()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(10), "{e}");
        assert!(!e.is_retriable());
        producer.close().await;
    });
}

#[test]
fn broker_restart_during_a_produce_loop_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let rt = runtime();
    let client = rt.block_on(async {
        let c = client(&broker.addr()).await;
        create(&c, "restart", 3).await;
        c
    });
    let producing = rt.spawn({
        let client = client.clone();
        async move {
            let producer = Producer::new(
                client,
                ProducerConfig {
                    acks: Acks::All,
                    batch_size: 16 << 10,
                    delivery_timeout: Duration::from_secs(60),
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut pending = Vec::new();
            let started = Instant::now();
            let mut i = 0u64;
            // Bounded by count and time.
            while i < 60_000 && started.elapsed() < Duration::from_secs(20) {
                let r = Record::new("restart", format!("r{i}")).key(format!("k{}", i % 50));
                pending.push((i, producer.send(r).await.unwrap()));
                i += 1;
                if i.is_multiple_of(1000) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let mut outcomes = Vec::new();
            for (i, d) in pending {
                outcomes.push((i, d.await));
            }
            producer.close().await;
            outcomes
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    broker.kill9();
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    let outcomes = rt.block_on(producing).unwrap();
    let acked: BTreeMap<(i32, i64), u64> = outcomes
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|m| ((m.partition, m.offset), *i)))
        .collect();
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    assert!(
        acked.len() == outcomes.len(),
        "retries should deliver every record across a restart: {failed} failed, e.g. {:?}",
        outcomes.iter().find(|(_, r)| r.is_err())
    );
    let stored = rt.block_on(consume_all(&client, "restart"));
    let by_position: HashMap<(i32, i64), String> = stored
        .iter()
        .map(|r| ((r.partition, r.offset), text(&r.value)))
        .collect();
    for ((p, o), i) in &acked {
        assert_eq!(
            by_position.get(&(*p, *o)).map(String::as_str),
            Some(format!("r{i}").as_str()),
            "acknowledged record {i} at {p}/{o}"
        );
    }
}

/// The crate's documented example (`client/examples/round_trip.rs`) runs
/// against a real broker.
#[test]
fn the_client_example_runs() {
    let rill = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rill"));
    let example = rill.parent().unwrap().join("examples/round_trip");
    if !example.exists() {
        // `cargo test --workspace` builds it; a narrower run may not have.
        // Built in the profile of the binaries under test, where it is
        // looked for (`debug` is the `dev` profile's directory).
        let profile = match rill
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
        {
            "debug" => "dev",
            other => other,
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "--profile",
                profile,
                "-p",
                "rill-client",
                "--example",
                "round_trip",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    let (ok, out, err) = run(
        Command::new(&example).env("RILL_BROKERS", broker.addr()),
        Duration::from_secs(60),
    );
    assert!(ok, "example failed: {err}");
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(out.contains("value=hello 9"), "{out}");
}

/// `buffer_memory` bounds what the producer holds: with the broker frozen,
/// `send` stops returning once the buffer is full, and resumes when the
/// broker answers again; nothing is lost.
#[test]
fn a_full_buffer_makes_send_wait_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "pressure", 1).await;
        client.ensure_topic("pressure").await.unwrap(); // metadata cached before the freeze
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                buffer_memory: 1 << 20,
                batch_size: 64 << 10,
                linger: Duration::from_millis(1),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        broker.pause();
        let value = vec![b'p'; 10 << 10];
        let mut deliveries = Vec::new();
        let mut blocked = None;
        for i in 0..1000 {
            let record = Record::new("pressure", value.clone()).key(format!("{i}"));
            match tokio::time::timeout(Duration::from_millis(500), producer.send(record)).await {
                Ok(d) => deliveries.push(d.unwrap()),
                Err(_) => {
                    blocked = Some(i);
                    break;
                }
            }
        }
        let accepted = blocked.expect("send never waited: the buffer is unbounded");
        assert!(
            (90..=110).contains(&accepted),
            "about 1 MiB of 10 KiB records buffered, not {accepted}"
        );
        broker.resume();
        // The record that waited goes through now, and so does everything before it.
        let last = tokio::time::timeout(
            Duration::from_secs(30),
            producer.send(Record::new("pressure", value.clone()).key("last")),
        )
        .await
        .expect("send resumes once the broker answers")
        .unwrap();
        deliveries.push(last);
        let mut offsets = Vec::new();
        for d in deliveries {
            offsets.push(d.await.unwrap().offset);
        }
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(
            offsets.len(),
            accepted + 1,
            "every accepted record stored once"
        );
        producer.close().await;
    });
}

/// A consumer long-polling an idle partition must not hold up a producer
/// sharing its `Client`: a broker answers one connection's requests in
/// order, so fetches get a connection of their own. Before that, every
/// acknowledgement waited behind a held fetch (`fetch_max_wait`, here 3 s):
/// the harness's ~100 ms publish p99 was its consumer's 100 ms long poll.
#[test]
fn a_long_polling_consumer_does_not_hold_up_a_producer_on_the_same_client() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    let rt = runtime();
    rt.block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "idle", 1).await;
        create(&client, "busy", 1).await;
        let mut consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                fetch_max_wait: Duration::from_secs(3),
                start: Offset::End,
                ..ConsumerConfig::default()
            },
        );
        consumer
            .assign(&[TopicPartition::new("idle", 0)])
            .await
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let polling = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut polls = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && polls < 20 {
                    assert!(consumer
                        .poll(Duration::from_secs(5))
                        .await
                        .unwrap()
                        .is_empty());
                    polls += 1;
                }
            })
        };
        // Let the first long poll reach the broker.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger: Duration::from_millis(0),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        for i in 0..10 {
            producer
                .send(Record::new("busy", format!("m{i}")))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        producer.close().await;
        polling.await.unwrap();
        // Ten acks=all round trips take milliseconds; one held fetch in
        // front of them would take the 3 s long poll.
        assert!(
            took < Duration::from_secs(3),
            "10 acknowledgements took {took:?}: they queued behind the consumer's long poll"
        );
    });
}

/// Record counts of the batches in a partition's first segment (read
/// after the broker stopped, which wrote them all out).
fn batch_sizes(data_dir: &std::path::Path, topic: &str) -> Vec<i32> {
    let log = std::fs::read(data_dir.join(format!("topics/{topic}-0/00000000000000000000.log")))
        .expect("segment file");
    batches_in(&log)
        .iter()
        .map(|b| i32::from_be_bytes(b[57..61].try_into().unwrap()))
        .collect()
}

/// A partition's batch that has lingered but cannot go yet (its request
/// slots are taken) stays open and takes the records that follow, as the
/// Java client's does: records that wait behind a slow broker go out as
/// one full batch, not as a queue of lingered one-record batches sent one
/// per request. Before, 40 records sent 5 ms apart behind a frozen broker
/// were stored as 40 batches.
#[test]
fn records_waiting_for_a_request_slot_join_one_open_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "waiting", 1).await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger: Duration::from_millis(1),
                max_in_flight_per_partition: 1,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        // Connection and producer id in place before the freeze.
        producer
            .send(Record::new("waiting", "warm"))
            .await
            .unwrap()
            .await
            .unwrap();
        broker.pause();
        let mut deliveries = Vec::new();
        // The first takes the partition's one request slot and hangs there.
        deliveries.push(producer.send(Record::new("waiting", "r0")).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 1..=40 {
            deliveries.push(
                producer
                    .send(Record::new("waiting", format!("r{i}")))
                    .await
                    .unwrap(),
            );
            // Longer than the linger: each record finds its batch lingered.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        broker.resume();
        let mut offsets = Vec::new();
        for d in deliveries {
            let m = tokio::time::timeout(Duration::from_secs(30), d)
                .await
                .expect("delivered once the broker runs again")
                .unwrap();
            offsets.push(m.offset);
        }
        assert_eq!(
            offsets,
            (1..=41).collect::<Vec<i64>>(),
            "in order, once each"
        );
        producer.close().await;
    });
    broker.terminate();
    let sizes = batch_sizes(dir.path(), "waiting");
    assert_eq!(sizes.iter().sum::<i32>(), 42);
    assert_eq!(
        sizes,
        vec![1, 1, 40],
        "the warm-up record, the one in flight at the freeze, then one batch of the 40 that waited"
    );
}

/// The producer's metrics say what its requests did: written, answered,
/// batches and bytes carried, and the round trip as the client saw it (a
/// request held by a frozen broker shows in it).
#[test]
fn producer_metrics_count_requests_and_their_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&broker.addr()).await;
        create(&client, "metered", 2).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        assert_eq!(producer.metrics(), rill_client::ProducerMetrics::default());
        // Connection and producer id in place before the freeze.
        producer
            .send(Record::new("metered", "warm").partition(0))
            .await
            .unwrap()
            .await
            .unwrap();
        let warm = producer.metrics();
        assert_eq!((warm.requests, warm.answered, warm.batches), (1, 1, 1));
        assert!(warm.bytes > 4, "{warm:?}");
        assert!(warm.round_trip_total > Duration::ZERO);
        assert_eq!(warm.in_flight(), 0);

        broker.pause();
        let value = vec![b'v'; 1000];
        let deliveries = [
            producer
                .send(Record::new("metered", value.clone()).partition(0))
                .await
                .unwrap(),
            producer
                .send(Record::new("metered", value).partition(1))
                .await
                .unwrap(),
        ];
        let frozen = Duration::from_millis(300);
        tokio::time::sleep(frozen).await;
        let held = producer.metrics().since(&warm);
        assert!(held.in_flight() >= 1, "held by the frozen broker: {held:?}");
        assert_eq!(held.answered, 0, "{held:?}");
        broker.resume();
        for d in deliveries {
            tokio::time::timeout(Duration::from_secs(30), d)
                .await
                .expect("delivered once the broker runs again")
                .unwrap();
        }
        let after = producer.metrics().since(&warm);
        assert_eq!(after.answered, after.requests, "{after:?}");
        assert_eq!(after.in_flight(), 0);
        assert_eq!(after.batches, 2, "one batch per partition: {after:?}");
        assert!(after.bytes >= 2000, "{after:?}");
        // Written a linger after the freeze began, answered after it ended.
        let held_for = frozen - Duration::from_millis(50);
        assert!(after.round_trip_max >= held_for, "{after:?}");
        assert!(
            after.round_trip_mean().unwrap() >= held_for / 2,
            "{after:?}"
        );
        producer.close().await;
    });
    broker.terminate();
}
