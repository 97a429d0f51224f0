//! Where a replica's Raft hard state should live at many partitions: in
//! each partition's checkpoint (what `PartitionLog::save_hard_state` does:
//! one 4 KiB slot write and one fdatasync of that partition's file), or in
//! one file per shard holding every partition's (one write and one
//! fdatasync for all of them). Measures the case that decides it: every
//! partition of a shard saving at once, as after a broker restart when all
//! its groups elect (a vote must be durable before it is sent).
//!
//! `cargo bench -p rill-storage --bench hard_state_cost`
//! (`RILL_BENCH_PARTITIONS`, default 1,000; `RILL_BENCH_DIR`, default
//! `target/bench-data`).

use std::path::PathBuf;
use std::time::Instant;

use rill_storage::io::{Disk, DmaDisk, SegmentFile};
use rill_storage::{FlushPolicy, HardState, LogConfig, PartitionLog};

fn main() {
    let partitions: usize = std::env::var("RILL_BENCH_PARTITIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let base: PathBuf = std::env::var("RILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench-data"));
    let dir = base.join("hard-state");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run_dir = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let config = LogConfig {
                preallocate_bytes: 8192,
                write_buffer_bytes: 8192,
                flush: FlushPolicy::Always,
                ..LogConfig::default()
            };
            let mut logs = Vec::with_capacity(partitions);
            for p in 0..partitions {
                let log = PartitionLog::open(run_dir.join(format!("p-{p}")), config.clone())
                    .await
                    .unwrap();
                logs.push(log);
            }
            let vote = |p: usize| HardState {
                term: 2,
                vote: Some(1),
                commit: p as i64,
                abstain_through: None,
            };

            // Per partition, all at once (each its own write and fdatasync).
            let started = Instant::now();
            for (p, log) in logs.iter().enumerate() {
                log.save_hard_state(vote(p)).await.unwrap();
            }
            let sequential = started.elapsed();

            let started = Instant::now();
            let tasks: Vec<_> = logs
                .iter()
                .cloned()
                .enumerate()
                .map(|(p, log)| {
                    glommio::spawn_local(async move { log.save_hard_state(vote(p)).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let concurrent = started.elapsed();

            // One shard file: 24 bytes a partition, one write and one sync.
            let started = Instant::now();
            let path = run_dir.join("shard-hard-state");
            let file = DmaDisk.create_truncate(&path).await.unwrap();
            let len = (partitions * 24).div_ceil(4096) * 4096;
            let mut buf = file.alloc_buffer(len);
            for (p, chunk) in buf.as_bytes_mut().chunks_mut(24).enumerate() {
                if p < partitions && chunk.len() == 24 {
                    let hs = vote(p);
                    chunk[..8].copy_from_slice(&hs.term.to_be_bytes());
                    chunk[8..16].copy_from_slice(&(hs.vote.unwrap() as i64).to_be_bytes());
                    chunk[16..].copy_from_slice(&hs.commit.to_be_bytes());
                }
            }
            file.write_at(buf, 0).await.unwrap();
            file.fdatasync().await.unwrap();
            file.close().await.unwrap();
            let shard_file = started.elapsed();

            for log in logs {
                log.close().await.unwrap();
            }
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / partitions as f64;
            println!(
                "{partitions} partitions saving their hard state at once:\n  per partition, one after another: {:.1} ms ({:.0} µs each)\n  per partition, all concurrently:   {:.1} ms ({:.0} µs each)\n  one shard file:                    {:.2} ms\n  per-partition (concurrent) ÷ shard file: {:.0}×",
                sequential.as_secs_f64() * 1e3,
                per(sequential),
                concurrent.as_secs_f64() * 1e3,
                per(concurrent),
                shard_file.as_secs_f64() * 1e3,
                concurrent.as_secs_f64() / shard_file.as_secs_f64().max(1e-9),
            );
        })
        .unwrap()
        .join()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
