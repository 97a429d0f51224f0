//! kill -9 at random moments: a child process appends with flush = always
//! and reports every acknowledged batch through a pipe; after each kill the
//! log is reopened and every acknowledged batch must be there, byte-identical,
//! with contiguous offsets and nothing but whole, valid batches served.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rill_storage::batch::BatchHeader;
use rill_storage::{FlushPolicy, LogConfig, PartitionLog};
use support::{batch, batch_id, run, split_batches};

const CHILD_ENV: &str = "RILL_CRASH_CHILD_DIR";
const KILLS_MIN: usize = 30;
const TIME_MAX: Duration = Duration::from_secs(120);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        write_buffer_bytes: 32 << 10,
        writes_in_flight_max: 4,
        preallocate_bytes: 128 << 10,
        flush: FlushPolicy::Always,
        checkpoint_interval_ms: 20,
        ..LogConfig::default()
    }
}

/// Shape of batch `id`: sizes vary so writes straddle blocks and buffers.
fn child_batch(id: u64) -> bytes::Bytes {
    batch(
        id,
        1 + (id % 7) as usize,
        50 + ((id * 7919) % 3000) as usize,
        id as i64,
    )
}

/// The child process: appends from several tasks until killed. Does nothing
/// unless started by the crash test with the data directory in the environment.
#[test]
fn crash_child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run_no: u64 = std::env::var("RILL_CRASH_RUN").unwrap().parse().unwrap();
    run(move || async move {
        let log = PartitionLog::open(&dir, config())
            .await
            .expect("child open");
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for seq in 0..1_000_000u64 {
                    let id = run_no * 10_000_000 + task * 1_000_000 + seq;
                    let info = log.append(child_batch(id)).await.expect("child append");
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {id} {}", info.base_offset).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

#[test]
fn acknowledged_batches_survive_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("RILL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed: {seed} (replay with RILL_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let mut kills = 0;
    let mut runs = 0u64;
    while kills < KILLS_MIN && started.elapsed() < TIME_MAX {
        runs += 1;
        let mut child = Command::new(&exe)
            .args(["crash_child_process_entry", "--exact", "--nocapture"])
            .env(CHILD_ENV, dir.path())
            .env("RILL_CRASH_RUN", runs.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ack ") {
                    let mut it = rest.split(' ');
                    let id: u64 = it.next().unwrap().parse().unwrap();
                    let offset: i64 = it.next().unwrap().parse().unwrap();
                    acks.push((id, offset));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        if child.try_wait().unwrap().is_some() {
            panic!("child exited on its own (seed {seed}); it should only stop when killed");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let new_acks = reader.join().unwrap();
        acked.extend(new_acks);
        verify(dir.path(), &acked, seed);
    }
    assert!(kills >= KILLS_MIN, "only {kills} kills in {TIME_MAX:?}");
    assert!(
        acked.len() > 100,
        "only {} acknowledged batches over {kills} runs",
        acked.len()
    );
    println!(
        "{kills} kills, {} acknowledged batches verified",
        acked.len()
    );
}

/// Reopens the log (recovering it) and checks the promise.
fn verify(dir: &std::path::Path, acked: &[(u64, i64)], seed: u64) {
    let dir = dir.to_path_buf();
    let acked = acked.to_vec();
    run(move || async move {
        let log = PartitionLog::open(&dir, config())
            .await
            .unwrap_or_else(|e| panic!("reopen failed (seed {seed}): {e}"));
        // The whole log: contiguous offsets, only whole valid batches, each
        // byte-identical (apart from the broker-assigned header fields) to a
        // batch the child built.
        let mut offset = log.log_start_offset();
        let mut ids = std::collections::HashMap::new();
        while offset < log.log_end_offset() {
            let data = log
                .read(offset, 1 << 20)
                .await
                .unwrap_or_else(|e| panic!("read at {offset} (seed {seed}): {e}"));
            for b in split_batches(&data) {
                let h = BatchHeader::parse(b).unwrap();
                assert_eq!(
                    h.base_offset, offset,
                    "offsets not contiguous (seed {seed})"
                );
                let id = batch_id(b);
                let original = child_batch(id);
                assert_eq!(
                    &b[16..],
                    &original[16..],
                    "batch {id} differs from what was appended (seed {seed})"
                );
                assert!(
                    ids.insert(id, offset).is_none(),
                    "batch {id} stored twice (seed {seed})"
                );
                offset = h.next_offset();
            }
        }
        for (id, at) in &acked {
            assert_eq!(
                ids.get(id),
                Some(at),
                "acknowledged batch {id} at offset {at} is missing (seed {seed})"
            );
        }
    });
}
