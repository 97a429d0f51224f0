//! Producer and consumer throughput of the Rust client against a real Rill
//! broker, next to librdkafka (kcat) doing the same work in the same run:
//! 1 KiB and 100 B records, 1 and 16 partitions, acks=all, linger 5 ms,
//! ~1 MB batches on both sides. Rounds alternate Rust / librdkafka and the
//! medians are reported, with the ratio Rust ÷ librdkafka.
//!
//! `cargo bench -p rill-broker --bench client_throughput`
//! (`RILL_BENCH_MB` sets the bytes per run, default 200; `RILL_BENCH_ROUNDS`
//! the rounds, default 3.)

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_bench_harness::embedded::EmbeddedBroker;
use rill_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer,
    ProducerConfig, Record, TopicPartition,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn rust_produce(client: &Client, topic: &str, count: usize, size: usize) -> Duration {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 1_000_000,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..count {
        pending.push_back(
            producer
                .send(Record::new(topic, payload.clone()))
                .await
                .unwrap(),
        );
        if pending.len() >= 200_000 {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for d in pending {
        d.await.unwrap();
    }
    producer.close().await;
    started.elapsed()
}

async fn rust_consume(client: &Client, topic: &str, partitions: i32, count: usize) -> Duration {
    let started = Instant::now();
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            start: Offset::Beginning,
            fetch_max_bytes: std::env::var("RILL_BENCH_FETCH_MAX")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(ConsumerConfig::default().fetch_max_bytes),
            max_partition_fetch_bytes: std::env::var("RILL_BENCH_PARTITION_FETCH_MAX")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(ConsumerConfig::default().max_partition_fetch_bytes),
            ..ConsumerConfig::default()
        },
    );
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps).await.unwrap();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < count {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(!records.is_empty(), "consumer stalled at {seen}/{count}");
        seen += records.len();
        bytes += records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>();
    }
    assert!(bytes > 0);
    started.elapsed()
}

fn kcat_produce(addr: &str, topic: &str, file: &std::path::Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("kcat")
        .args(["-b", addr, "-P", "-t", topic, "-l"])
        .arg(file)
        .args([
            "-X",
            "acks=all",
            "-X",
            "linger.ms=5",
            "-X",
            "batch.size=1000000",
            "-X",
            "batch.num.messages=1000000",
            "-X",
            "queue.buffering.max.messages=1000000",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

fn kcat_consume(addr: &str, topic: &str, count: usize) -> Duration {
    let started = Instant::now();
    let out = Command::new("kcat")
        .args([
            "-b",
            addr,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "\n",
        ])
        .args(["-c", &count.to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), count, "kcat read every record");
    started.elapsed()
}

fn main() {
    let mb: usize = std::env::var("RILL_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rounds: usize = std::env::var("RILL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let parent = std::env::var("RILL_BENCH_DIR").unwrap_or_else(|_| ".".into());
    let broker = EmbeddedBroker::start_binary(
        std::path::Path::new(env!("CARGO_BIN_EXE_rill")),
        std::path::Path::new(&parent),
    )
    .expect("start the broker");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(Client::connect(ClientConfig::new(&broker.addr)))
        .unwrap();
    let admin = Admin::new(client.clone());
    println!(
        "{:<22} {:>13} {:>13} {:>7}   {:>13} {:>13} {:>7}",
        "workload", "rust prod", "rdkafka prod", "ratio", "rust cons", "rdkafka cons", "ratio"
    );
    println!(
        "{:<22} {:>13} {:>13} {:>7}   {:>13} {:>13} {:>7}",
        "", "MB/s", "MB/s", "", "MB/s", "MB/s", ""
    );
    let mut topic_n = 0;
    for (size, partitions) in [(1024usize, 1i32), (1024, 16), (100, 1), (100, 16)] {
        let count = mb * 1_000_000 / size;
        let total_mb = (count * size) as f64 / 1e6;
        // kcat -l sends each line without its newline.
        let file = tempfile::NamedTempFile::new().unwrap();
        {
            let mut w = std::io::BufWriter::new(file.as_file());
            let line = vec![b'x'; size];
            for _ in 0..count {
                w.write_all(&line).unwrap();
                w.write_all(b"\n").unwrap();
            }
        }
        let (mut rp, mut kp, mut rc, mut kc) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            for rust in [true, false] {
                topic_n += 1;
                let topic = format!("bench-{topic_n}");
                rt.block_on(admin.create_topic(NewTopic::new(&topic, partitions)))
                    .unwrap();
                rt.block_on(client.ensure_topic(&topic)).unwrap();
                if rust {
                    let t = rt.block_on(rust_produce(&client, &topic, count, size));
                    rp.push(total_mb / t.as_secs_f64());
                    let t = rt.block_on(rust_consume(&client, &topic, partitions, count));
                    rc.push(total_mb / t.as_secs_f64());
                } else {
                    let t = kcat_produce(&broker.addr, &topic, file.path());
                    kp.push(total_mb / t.as_secs_f64());
                    let t = kcat_consume(&broker.addr, &topic, count);
                    kc.push(total_mb / t.as_secs_f64());
                }
                let _ = rt.block_on(admin.delete_topics(&[&topic]));
            }
        }
        let (rp, kp, rc, kc) = (median(rp), median(kp), median(rc), median(kc));
        println!(
            "{:<22} {:>13.1} {:>13.1} {:>7.2}   {:>13.1} {:>13.1} {:>7.2}",
            format!("{size} B x {partitions}p"),
            rp,
            kp,
            rp / kp,
            rc,
            kc,
            rc / kc
        );
    }
}
