//! Append throughput of the partition log against the raw device, in one run.
//!
//! Writes `RILL_BENCH_GIB` GiB (default 1) per measurement on the same file
//! system, three rounds of: raw O_DIRECT sequential writes (same buffer size and writes in
//! flight as the engine, file preallocated, one fdatasync at the end); the
//! engine with flush = interval (1 s); and the engine with flush = always and
//! 32 concurrent appenders sharing syncs. Records are 1 KiB, 16 per batch.
//! The rounds interleave the three so a noisy neighbour hits all alike; the
//! medians and the ratios of medians are printed, with CPU seconds per GiB.
//!
//! `cargo bench -p rill-storage --bench append_throughput`
//! (`RILL_BENCH_DIR` picks the directory; default `target/bench-data`).

#[path = "support/raw_write.rs"]
mod raw_write;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_storage::batch::{encode_uncompressed, RecordSpec};
use rill_storage::{FlushPolicy, LogConfig, PartitionLog};

const BUFFER_BYTES: usize = 1 << 20;
const WRITES_IN_FLIGHT: usize = 4;
const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
const APPENDERS_ALWAYS: usize = 32;

fn batches() -> Vec<Bytes> {
    (0..64u8)
        .map(|i| {
            let values: Vec<Vec<u8>> = (0..RECORDS_PER_BATCH)
                .map(|r| vec![i ^ r as u8; RECORD_BYTES])
                .collect();
            let specs: Vec<RecordSpec> = values
                .iter()
                .enumerate()
                .map(|(r, v)| RecordSpec {
                    timestamp_delta: r as i64,
                    value: Some(v),
                    ..Default::default()
                })
                .collect();
            Bytes::from(encode_uncompressed(1_700_000_000_000, &specs))
        })
        .collect()
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

async fn raw(dir: &Path, total: u64) -> f64 {
    raw_write::raw_write_mb_per_s(dir, total, BUFFER_BYTES, WRITES_IN_FLIGHT).await
}

fn engine_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        write_buffer_bytes: BUFFER_BYTES,
        writes_in_flight_max: WRITES_IN_FLIGHT,
        cache_bytes_max: 16 << 20,
        preallocate_bytes: std::env::var("RILL_BENCH_PREALLOC_MIB")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(32)
            << 20,
        retention_ms: None,
        flush,
        ..LogConfig::default()
    }
}

async fn engine(dir: &Path, total: u64, flush: FlushPolicy, appenders: usize) -> f64 {
    let path = dir.join("log");
    let _ = std::fs::remove_dir_all(&path);
    let log = PartitionLog::open(&path, engine_config(flush))
        .await
        .unwrap();
    let batches = Rc::new(batches());
    let per_batch = batches[0].len() as u64;
    let count = total / per_batch;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let log = log.clone();
        let batches = batches.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut i = a as u64;
            while i < count {
                log.append(batches[(i % 64) as usize].clone())
                    .await
                    .unwrap();
                i += appenders as u64;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    log.sync().await.unwrap();
    let rate = mb_per_s(count * per_batch, start.elapsed());
    log.close().await.unwrap();
    drop(log);
    std::fs::remove_dir_all(&path).unwrap();
    rate
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Default)]
struct Samples {
    mb_per_s: Vec<f64>,
    cpu_s_per_gib: Vec<f64>,
}

impl Samples {
    async fn measure(&mut self, gib: f64, run: impl std::future::Future<Output = f64>) {
        let cpu = cpu_time();
        self.mb_per_s.push(run.await);
        self.cpu_s_per_gib
            .push((cpu_time() - cpu).as_secs_f64() / gib);
    }

    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
}

const ROUNDS: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let gib: f64 = std::env::var("RILL_BENCH_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let dir: PathBuf = std::env::var("RILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&dir).unwrap();
    let total = (gib * (1u64 << 30) as f64) as u64 / BUFFER_BYTES as u64 * BUFFER_BYTES as u64;
    let (raw_s, interval_s, always_s) =
        glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
            .spawn(move || async move {
                rill_storage::device::prime_for(&dir).await.unwrap();
                let (mut r, mut i, mut a) =
                    (Samples::default(), Samples::default(), Samples::default());
                for _ in 0..ROUNDS {
                    r.measure(gib, raw(&dir, total)).await;
                    i.measure(
                        gib,
                        engine(
                            &dir,
                            total,
                            FlushPolicy::Interval(Duration::from_secs(1)),
                            1,
                        ),
                    )
                    .await;
                    a.measure(
                        gib,
                        engine(&dir, total, FlushPolicy::Always, APPENDERS_ALWAYS),
                    )
                    .await;
                }
                (r, i, a)
            })
            .unwrap()
            .join()
            .unwrap();
    let raw_mb = Samples::median(&raw_s.mb_per_s);
    println!(
        "append_throughput: {gib} GiB per measurement, {ROUNDS} interleaved rounds, 1 KiB records in {RECORDS_PER_BATCH}-record batches, {} KiB buffers, {WRITES_IN_FLIGHT} writes in flight, executor on CPU 0",
        BUFFER_BYTES >> 10
    );
    let line = |name: &str, s: &Samples| {
        let mb = Samples::median(&s.mb_per_s);
        println!(
            "  {name:<38} {mb:8.1} MB/s  ratio {:.3}  cpu {:.2} s/GiB  (runs: {})",
            mb / raw_mb,
            Samples::median(&s.cpu_s_per_gib),
            s.mb_per_s
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    line("raw O_DIRECT sequential write", &raw_s);
    line("engine, flush = interval (1 s)", &interval_s);
    line(
        &format!("engine, flush = always ({APPENDERS_ALWAYS} appenders)"),
        &always_s,
    );
}
