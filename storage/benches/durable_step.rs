//! What one durable step of a shard costs, two ways, in one run: the
//! question of issue 30 ("the syncs they need, or a shard journal written
//! once and synced once — measure both and choose").
//!
//! A step makes one 4 KiB block durable in each of `dirty` partition files
//! (the tail block a small batch dirties):
//! - **segments**: write each partition's block, then fdatasync each file,
//!   all concurrently through io_uring; files preallocated as the log does
//!   (fallocate: unwritten extents, so a sync also commits their conversion);
//! - **journal**: write each partition's block unsynced, and the same bytes
//!   once more into one journal file (pre-zeroed, so its extents are written
//!   and a sync is a device flush), then one fdatasync of the journal.
//!
//! Steps run back to back for `RILL_BENCH_SECS` (default 3) per case; the
//! median and p99 step time and the bytes made durable per second are
//! printed, with the ratio journal ÷ segments.
//!
//! `cargo bench -p rill-storage --bench durable_step`
//! (`RILL_BENCH_DIR` picks the directory; default `target/bench-data`).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};

const BLOCK: usize = 4096;
/// Per partition file (a step rewrites its blocks round and round).
const FILE_BYTES: u64 = 1 << 20;
const JOURNAL_BYTES: u64 = 64 << 20;

async fn open(path: &Path) -> Rc<DmaFile> {
    Rc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .unwrap(),
    )
}

async fn zero_fill(file: &DmaFile, bytes: u64) {
    let chunk = 1 << 20;
    let mut at = 0;
    while at < bytes {
        let buf = file.alloc_dma_buffer(chunk);
        file.write_at(buf, at).await.unwrap();
        at += chunk as u64;
    }
    file.fdatasync().await.unwrap();
}

struct Case {
    steps: Vec<Duration>,
    bytes: u64,
    elapsed: Duration,
}

impl Case {
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.steps.clone();
        s.sort();
        s[((s.len() as f64 - 1.0) * p) as usize]
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

async fn run(dir: &Path, dirty: usize, journal: bool, secs: u64) -> Case {
    let mut files = Vec::new();
    for p in 0..dirty {
        let f = open(&dir.join(format!("p{p}.log"))).await;
        f.pre_allocate(FILE_BYTES, false).await.unwrap();
        files.push(f);
    }
    let wal = if journal {
        let f = open(&dir.join("journal.wal")).await;
        zero_fill(&f, JOURNAL_BYTES).await;
        Some(f)
    } else {
        None
    };
    let mut steps = Vec::new();
    let start = Instant::now();
    let mut step = 0u64;
    let (mut wal_at, mut bytes) = (0u64, 0u64);
    while start.elapsed() < Duration::from_secs(secs) && step < 1_000_000 {
        let t = Instant::now();
        let at = (step * BLOCK as u64) % FILE_BYTES;
        let mut tasks = Vec::with_capacity(dirty + 1);
        for f in &files {
            let (f, sync) = (f.clone(), !journal);
            tasks.push(glommio::spawn_local(async move {
                let mut buf = f.alloc_dma_buffer(BLOCK);
                buf.as_bytes_mut().fill(step as u8);
                f.write_at(buf, at).await.unwrap();
                if sync {
                    f.fdatasync().await.unwrap();
                }
            }));
        }
        if let Some(w) = &wal {
            let len = BLOCK * dirty;
            if wal_at + len as u64 > JOURNAL_BYTES {
                wal_at = 0;
            }
            let (w, pos) = (w.clone(), wal_at);
            tasks.push(glommio::spawn_local(async move {
                let mut buf = w.alloc_dma_buffer(len);
                buf.as_bytes_mut().fill(step as u8);
                w.write_at(buf, pos).await.unwrap();
                w.fdatasync().await.unwrap();
            }));
            wal_at += len as u64;
        }
        for task in tasks {
            task.await;
        }
        steps.push(t.elapsed());
        bytes += (BLOCK * dirty) as u64;
        step += 1;
    }
    let elapsed = start.elapsed();
    drop(files);
    drop(wal);
    for p in 0..dirty {
        std::fs::remove_file(dir.join(format!("p{p}.log"))).unwrap();
    }
    if journal {
        std::fs::remove_file(dir.join("journal.wal")).unwrap();
    }
    Case {
        steps,
        bytes,
        elapsed,
    }
}

fn main() {
    let dir: PathBuf = std::env::var("RILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench-data/durable-step"));
    let secs: u64 = std::env::var("RILL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            println!("dirty partitions per step | segments: steps/s p50 p99 MB/s | journal: steps/s p50 p99 MB/s | journal ÷ segments (MB/s)");
            for dirty in [1usize, 16, 256, 1000] {
                let s = run(&d, dirty, false, secs).await;
                let j = run(&d, dirty, true, secs).await;
                let line = |c: &Case| {
                    format!(
                        "{:7.0} {:>9.2?} {:>9.2?} {:7.1}",
                        c.steps.len() as f64 / c.elapsed.as_secs_f64(),
                        c.pct(0.5),
                        c.pct(0.99),
                        c.mb_per_s()
                    )
                };
                println!(
                    "{dirty:5} | {} | {} | {:.2}",
                    line(&s),
                    line(&j),
                    j.mb_per_s() / s.mb_per_s()
                );
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let _ = std::fs::remove_dir(&dir);
}
