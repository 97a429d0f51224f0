//! Cleaner throughput against the raw device, and what a running cleaner
//! costs appends, in one run.
//!
//! A log of `RILL_BENCH_MIB` MiB (default 512) of keyed 1 KiB records (values
//! incompressible), 16 per batch, uncompressed, over 100,000 keys (each key
//! about five times in 512 MiB, so about a fifth is kept), in 64 MiB
//! segments. Measured, interleaved over three rounds:
//! - raw O_DIRECT sequential writes of the same bytes (1 MiB, 4 in flight);
//! - one cleaning pass over the whole log (map large enough for every key):
//!   bytes read ÷ time, CPU seconds per GiB;
//! - appends (flush = interval) of 128 MiB alone, and again while a pass
//!   runs in a task queue with 50 shares (the broker's cleaner queue; the
//!   appender's queue has glommio's default 1000), paced to
//!   `RILL_BENCH_CLEANER_MBPS` MB/s if set.
//!
//! `cargo bench -p rill-storage --bench compaction_throughput`
//! (`RILL_BENCH_DIR` picks the directory; default `target/bench-data`).

#[path = "support/raw_write.rs"]
mod raw_write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_storage::batch::{BatchBuilder, Compression};
use rill_storage::compaction::CleanerLimits;
use rill_storage::{CompactionConfig, FlushPolicy, LogConfig, PartitionLog};

const KEYS: u64 = 100_000;
const RECORD_BYTES: usize = 1024;
const PER_BATCH: u64 = 16;

fn batch(first: u64) -> Bytes {
    let mut b = BatchBuilder::new(PER_BATCH as usize * (RECORD_BYTES + 64));
    let mut x = first.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in first..first + PER_BATCH {
        let key = format!("key-{}", (i * 7919) % KEYS);
        let mut value = format!("{i}:").into_bytes();
        while value.len() < RECORD_BYTES {
            // xorshift: bytes no codec shrinks.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            value.extend_from_slice(&x.to_le_bytes());
        }
        value.truncate(RECORD_BYTES);
        b.push(1_700_000_000_000, Some(key.as_bytes()), Some(&value), &[]);
    }
    b.finish(Compression::None).unwrap()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: None,
        flush: FlushPolicy::Interval(Duration::from_secs(1)),
        compaction: Some(CompactionConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..Default::default()
        }),
        ..LogConfig::default()
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

async fn raw(dir: &Path, total: u64) -> f64 {
    raw_write::raw_write_mb_per_s(dir, total, 1 << 20, 4).await
}

/// Appends `bytes` of keyed batches starting at record `first` (built
/// before the clock starts).
async fn fill(log: &PartitionLog, first: u64, bytes: u64) -> (u64, f64) {
    let (mut i, mut built, mut batches) = (first, 0, Vec::new());
    while built < bytes {
        let b = batch(i);
        built += b.len() as u64;
        batches.push(b);
        i += PER_BATCH;
    }
    let start = Instant::now();
    let mut written = 0;
    for b in batches {
        written += b.len() as u64;
        log.append(b).await.unwrap();
    }
    log.sync().await.unwrap();
    (i, mb_per_s(written, start.elapsed()))
}

fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Round {
    raw: f64,
    clean: f64,
    clean_cpu_s_per_gib: f64,
    kept: f64,
    append_alone: f64,
    append_beside_cleaner: f64,
}

async fn round(dir: &Path, total: u64, throttle: Option<u64>) -> Round {
    let raw = raw(dir, total).await;
    let path = dir.join("compacted");
    let _ = std::fs::remove_dir_all(&path);
    let log = PartitionLog::open(&path, config()).await.unwrap();
    let (next, _) = fill(&log, 0, total).await;
    // Close the last segment so all of it is cleanable.
    let (next, append_alone) = fill(&log, next, 128 << 20).await;
    let before = log.size_bytes();
    let cpu = cpu_time();
    let start = Instant::now();
    let outcome = log
        .clean(CleanerLimits::map_only(256 << 20))
        .await
        .unwrap()
        .expect("a pass");
    let elapsed = start.elapsed();
    let clean = mb_per_s(outcome.bytes_read, elapsed);
    let clean_cpu_s_per_gib =
        (cpu_time() - cpu).as_secs_f64() / (outcome.bytes_read as f64 / (1u64 << 30) as f64);
    let kept = outcome.bytes_written as f64 / outcome.bytes_read as f64;
    assert!(log.size_bytes() < before);

    // Dirty it again, then append while a pass runs in a low-share queue.
    let (next, _) = fill(&log, next, total / 2).await;
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(50),
        glommio::Latency::NotImportant,
        "cleaner",
    );
    let cleaner = {
        let log = log.clone();
        let limits = CleanerLimits {
            map_bytes: 256 << 20,
            io_bytes_per_second: throttle,
        };
        glommio::spawn_local_into(async move { log.clean(limits).await.unwrap() }, queue).unwrap()
    };
    let (_, append_beside_cleaner) = fill(&log, next, 128 << 20).await;
    cleaner.await;
    log.close().await.unwrap();
    drop(log);
    std::fs::remove_dir_all(&path).unwrap();
    Round {
        raw,
        clean,
        clean_cpu_s_per_gib,
        kept,
        append_alone,
        append_beside_cleaner,
    }
}

fn main() {
    // `RILL_BENCH_CLEANER_MBPS` paces the pass beside appends (the broker's
    // --log-cleaner-io-max-bytes-per-second); unpaced by default.
    let throttle: Option<u64> = std::env::var("RILL_BENCH_CLEANER_MBPS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|m| m * 1_000_000);
    let mib: u64 = std::env::var("RILL_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let dir: PathBuf = std::env::var("RILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&dir).unwrap();
    let rounds = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .spawn(move || async move {
            rill_storage::device::prime_for(&dir).await.unwrap();
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(round(&dir, mib << 20, throttle).await);
            }
            out
        })
        .unwrap()
        .join()
        .unwrap();
    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let raw = m(|r| r.raw);
    let clean = m(|r| r.clean);
    println!("raw O_DIRECT write          {raw:8.0} MB/s");
    println!(
        "cleaning pass (read)        {clean:8.0} MB/s  = {:.2} x raw write, {:.2} CPU s/GiB, {:.0}% of bytes kept",
        clean / raw,
        m(|r| r.clean_cpu_s_per_gib),
        100.0 * m(|r| r.kept)
    );
    let alone = m(|r| r.append_alone);
    let beside = m(|r| r.append_beside_cleaner);
    println!("appends alone               {alone:8.0} MB/s");
    println!(
        "appends beside a pass       {beside:8.0} MB/s  = {:.2} x alone",
        beside / alone
    );
}
