//! A shard's journal over a simulated disk that crashes: many partition
//! logs make their batches durable through one journal (small files, so
//! they fill, roll and retire); the process dies between steps or in the
//! middle of one (the disk refuses every change after a random count) and
//! the disk keeps what was synced, some pending writes and a torn one. At
//! each restart the journal is replayed into the reopened logs: every batch
//! acknowledged before any crash is read back at its offset, byte for
//! byte, and appends go on. A step covers every partition waiting on it:
//! far fewer journal syncs than acknowledgements.
//! Deterministic: `RILL_JOURNAL_SEED=<n>` replays one seed;
//! `RILL_JOURNAL_SEEDS=<n>` runs more (default 100).

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rill_storage::batch::{self, BatchHeader};
use rill_storage::journal::{self, Journal, JournalConfig, JournalName};
use rill_storage::sim_disk::{CrashPlan, SimDisk};
use rill_storage::{FlushPolicy, LogConfig, PartitionLog};
use support::{batch, run, small_config, split_batches};

const JOURNAL: &str = "/data/journal";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 48 << 10,
        // Segments sync only when a journal file retires (or a log closes):
        // the journal is what makes acknowledged batches durable.
        flush: FlushPolicy::Interval(Duration::from_secs(3600)),
        ..small_config()
    }
}

fn name(p: usize) -> JournalName {
    JournalName {
        name: format!("topics/t-{p}"),
        id: [p as u8; 16],
    }
}

fn dir(name: &str) -> String {
    format!("/data/{name}")
}

type Logs = Rc<RefCell<BTreeMap<String, PartitionLog<SimDisk>>>>;
type Acked = Rc<RefCell<BTreeMap<usize, Vec<(i64, Bytes)>>>>;

async fn stored_at(log: &PartitionLog<SimDisk>, offset: i64) -> Bytes {
    let data = match log.read(offset, 1).await {
        Ok(d) => d,
        Err(e) => panic!("reading {offset}: {e}"),
    };
    let first = split_batches(&data)[0];
    assert_eq!(BatchHeader::parse(first).unwrap().base_offset, offset);
    Bytes::copy_from_slice(first)
}

#[derive(Default)]
struct Totals {
    acks: u64,
    steps: u64,
    overlapped: u64,
    files_retired: u64,
    replayed: usize,
    crashes_mid_step: u64,
    direct_shared_syncs: u64,
}

/// A journal whose files hold 64 KiB, so a test's rounds retire several,
/// with up to `steps_in_flight` steps at once.
async fn small_files_journal(disk: &SimDisk, steps_in_flight: usize) -> Journal<SimDisk> {
    Journal::create(
        disk.clone(),
        Path::new(JOURNAL),
        JournalConfig {
            file_bytes: 64 << 10,
            max_file_bytes: 64 << 10,
            steps_in_flight,
        },
    )
    .await
    .unwrap()
}

/// `partitions` logs on `disk`, each attached to `j`.
async fn journaled_logs(
    disk: &SimDisk,
    j: &Journal<SimDisk>,
    partitions: usize,
    config: &LogConfig,
) -> Vec<PartitionLog<SimDisk>> {
    let mut logs = Vec::new();
    for p in 0..partitions {
        let n = name(p);
        let log = PartitionLog::open_on(disk.clone(), dir(&n.name), config.clone())
            .await
            .unwrap();
        log.attach_journal(j.clone(), n).await.unwrap();
        logs.push(log);
    }
    logs
}

/// One batch on every log, all waiting on the same journal steps; returns
/// each log's index and the batch's base offset once all are durable.
async fn one_batch_each(logs: &[PartitionLog<SimDisk>], round: u64) -> Vec<(usize, i64)> {
    let waits: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(p, log)| {
            let log = log.clone();
            glommio::spawn_local(async move {
                let b = batch(round * 100 + p as u64, 1, 200, 1_000);
                let header = batch::validate(&b, 1 << 20).unwrap();
                let info = log.append_validated_unsynced(b, header).await.unwrap();
                log.make_durable(info.last_offset + 1).await.unwrap();
                (p, info.base_offset)
            })
        })
        .collect();
    let mut done = Vec::new();
    for w in waits {
        done.push(w.await);
    }
    done
}

/// Crashes `disk` (nothing unsynced lands), reopens the `partitions` logs,
/// replays the journal into them and reads back every `acked` batch (its
/// partition, offset and bytes) at its offset.
async fn every_acknowledged_batch_after_a_crash(
    disk: &SimDisk,
    partitions: usize,
    acked: Vec<(usize, i64, Bytes)>,
) {
    let disk = disk.crash(CrashPlan {
        landed: 0,
        torn_sectors: 0,
    });
    let mut reopened = BTreeMap::new();
    for p in 0..partitions {
        let n = name(p);
        let log = PartitionLog::open_on(disk.clone(), dir(&n.name), config())
            .await
            .unwrap();
        reopened.insert(n.name, log);
    }
    let reopened = Rc::new(reopened);
    let r = reopened.clone();
    journal::replay(&disk, Path::new(JOURNAL), move |n| {
        let log = r.get(&n.name).cloned();
        async move { Ok(log) }
    })
    .await
    .unwrap();
    for (p, offset, bytes) in acked {
        let log = &reopened[&name(p).name];
        assert!(log.log_end_offset() > offset, "partition {p} lost {offset}");
        assert_eq!(
            stored_at(log, offset).await,
            bytes,
            "partition {p} at {offset}"
        );
    }
}

async fn one_seed(seed: u64, t: &mut Totals) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Writes and syncs take time, so steps overlap (two may be in flight).
    let mut disk = SimDisk::with_latency(seed);
    let partitions = rng.gen_range(2..24);
    let acked: Acked = Rc::default();
    let mut next_id = 0u64;
    for round in 0..4 {
        // Restart: open every log, replay the journal into them.
        let logs: Logs = Rc::default();
        for p in 0..partitions {
            let n = name(p);
            let log = PartitionLog::open_on(disk.clone(), dir(&n.name), config())
                .await
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: open failed: {e}"));
            logs.borrow_mut().insert(n.name, log);
        }
        let l = logs.clone();
        let report = journal::replay(&disk, Path::new(JOURNAL), move |n| {
            let log = l.borrow().get(&n.name).cloned();
            async move { Ok(log) }
        })
        .await
        .unwrap_or_else(|e| panic!("seed {seed} round {round}: replay failed: {e}"));
        t.replayed += report.appended;
        let all = acked.borrow().clone();
        for (p, batches) in &all {
            let log = logs.borrow()[&name(*p).name].clone();
            for (offset, bytes) in batches {
                if log.log_end_offset() <= *offset {
                    panic!("seed {seed} round {round}: partition {p} lost the acknowledged batch at {offset} (log end {}; replay {report:?})", log.log_end_offset());
                }
                assert_eq!(
                    &stored_at(&log, *offset).await,
                    bytes,
                    "seed {seed} round {round}: partition {p} changed the batch at {offset}"
                );
            }
        }
        // One step at a time (the default), or two or three in flight.
        let j = small_files_journal(&disk, 1 + seed as usize % 3).await;
        for p in 0..partitions {
            let log = logs.borrow()[&name(p).name].clone();
            log.attach_journal(j.clone(), name(p)).await.unwrap();
        }
        // Load: producers on random partitions, each waiting for its batch
        // to be durable before counting it acknowledged.
        if rng.gen_bool(0.3) {
            disk.die_after(rng.gen_range(0..400));
            t.crashes_mid_step += 1;
        }
        // Cleared at the crash: a task still running then is the dead
        // process, and what it sees afterwards is not acknowledged.
        let alive = Rc::new(std::cell::Cell::new(true));
        let acks = Rc::new(std::cell::Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..rng.gen_range(2..12) {
            let (logs, acked) = (logs.clone(), acked.clone());
            let (alive, acks) = (alive.clone(), acks.clone());
            let n = rng.gen_range(1..20);
            let first = next_id;
            next_id += n;
            let picks: Vec<(usize, usize, usize)> = (0..n)
                .map(|_| {
                    // Now and then a batch big enough to sync its own
                    // segment in the step (several share one filesystem
                    // sync).
                    let big = rng.gen_bool(0.03);
                    (
                        rng.gen_range(0..partitions),
                        if big { 5 } else { rng.gen_range(1..6) },
                        if big { 28_000 } else { rng.gen_range(10..3000) },
                    )
                })
                .collect();
            tasks.push(glommio::spawn_local(async move {
                for (i, (p, records, value_len)) in picks.into_iter().enumerate() {
                    let id = first + i as u64;
                    let b = batch(id, records, value_len, 1_000 + id as i64);
                    let log = logs.borrow()[&name(p).name].clone();
                    let header = batch::validate(&b, 1 << 20).unwrap();
                    let info = match log.append_validated_unsynced(b, header).await {
                        Ok(i) => i,
                        Err(_) => return,
                    };
                    if log.make_durable(info.last_offset + 1).await.is_err() {
                        return;
                    }
                    let stored = stored_at(&log, info.base_offset).await;
                    if !alive.get() {
                        return;
                    }
                    acks.set(acks.get() + 1);
                    acked
                        .borrow_mut()
                        .entry(p)
                        .or_default()
                        .push((info.base_offset, stored));
                }
            }));
        }
        for _ in 0..rng.gen_range(50..800) {
            futures_lite::future::yield_now().await;
        }
        for task in tasks {
            drop(task);
        }
        alive.set(false);
        t.acks += acks.get();
        let stats = j.stats();
        t.steps += stats.steps;
        t.overlapped += stats.overlapped;
        t.direct_shared_syncs += stats.direct_shared_syncs;
        t.files_retired += stats.files_retired;
        disk = disk.crash(CrashPlan {
            landed: rng.gen_range(0..4),
            torn_sectors: rng.gen_range(0..3),
        });
    }
}

#[test]
fn acknowledged_batches_survive_crashes_through_the_journal() {
    let seeds: Vec<u64> = match std::env::var("RILL_JOURNAL_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => {
            let n = std::env::var("RILL_JOURNAL_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100);
            (0..n).collect()
        }
    };
    let t = run(move || async move {
        let mut t = Totals::default();
        for seed in seeds {
            one_seed(seed, &mut t).await;
        }
        t
    });
    println!(
        "{} acknowledged batches in {} journal steps ({:.1} per step, {} started while another was in flight), {} journal files retired, {} batches given back by replay, {} crashes in the middle of a step, {} steps whose big writers shared a filesystem sync",
        t.acks,
        t.steps,
        t.acks as f64 / t.steps.max(1) as f64,
        t.overlapped,
        t.files_retired,
        t.replayed,
        t.crashes_mid_step,
        t.direct_shared_syncs
    );
    assert!(t.replayed > 0, "replay gave batches back");
    assert!(t.files_retired > 0, "journal files filled and retired");
    assert!(t.steps * 2 < t.acks, "a step covers many partitions");
    assert!(t.overlapped > 0, "steps overlapped");
    assert!(
        t.direct_shared_syncs > 0,
        "no step's big writers shared a filesystem sync"
    );
}

/// A step the journal cannot take (here a batch larger than a journal
/// file) falls back to the partition's own segment sync: the append is
/// still acknowledged only once durable, and survives a crash; the journal
/// keeps serving the batches that fit.
#[test]
fn a_step_the_journal_cannot_take_falls_back_to_the_segment_sync() {
    run(|| async {
        let disk = SimDisk::new();
        let log = PartitionLog::open_on(disk.clone(), dir("topics/big-0"), config())
            .await
            .unwrap();
        let j = Journal::create(
            disk.clone(),
            Path::new(JOURNAL),
            JournalConfig {
                file_bytes: 8192,
                ..JournalConfig::default()
            },
        )
        .await
        .unwrap();
        let n = JournalName {
            name: "topics/big-0".to_string(),
            id: [7; 16],
        };
        log.attach_journal(j.clone(), n).await.unwrap();
        let mut acked = Vec::new();
        // The crash comes right after the big one, so nothing later covers it.
        for (id, value_len) in [(0u64, 100usize), (1, 50), (2, 100), (3, 30_000)] {
            let b = batch(id, 1, value_len, 1_000);
            let header = batch::validate(&b, 1 << 20).unwrap();
            let info = log.append_validated_unsynced(b, header).await.unwrap();
            log.make_durable(info.last_offset + 1).await.unwrap();
            acked.push((info.base_offset, stored_at(&log, info.base_offset).await));
        }
        let records = j.stats().records;
        let disk = disk.crash(CrashPlan {
            landed: 0,
            torn_sectors: 0,
        });
        drop(log);
        let log = PartitionLog::open_on(disk.clone(), dir("topics/big-0"), config())
            .await
            .unwrap();
        let l = log.clone();
        journal::replay(&disk, Path::new(JOURNAL), move |_| {
            let l = l.clone();
            async move { Ok(Some(l)) }
        })
        .await
        .unwrap();
        for (offset, bytes) in acked {
            assert!(
                log.log_end_offset() > offset,
                "the acknowledged batch at {offset} was lost"
            );
            assert_eq!(stored_at(&log, offset).await, bytes, "batch at {offset}");
        }
        assert!(records >= 3, "the small batches went through the journal");
    });
}

/// A retiring journal file makes its partitions' segments durable with
/// one filesystem sync, not an `fdatasync` per partition (a thousand
/// partitions paid ~1 s of syncs per file): the disk's syncs stay about
/// one per step however many partitions each file holds, and after the
/// retirements and a crash every acknowledged batch is still there. A
/// retired file is reused as a next one rather than zero-filling another.
#[test]
fn a_retiring_file_syncs_the_filesystem_once_for_all_its_partitions() {
    run(|| async {
        const PARTITIONS: usize = 40;
        let disk = SimDisk::with_latency(7);
        let j = small_files_journal(&disk, 1).await;
        let logs = journaled_logs(&disk, &j, PARTITIONS, &config()).await;
        let syncs_before = disk.syncs();
        let mut acked = Vec::new();
        for round in 0..40u64 {
            for (p, offset) in one_batch_each(&logs, round).await {
                acked.push((p, offset, stored_at(&logs[p], offset).await));
            }
        }
        // Let the retirements started in the background finish.
        for _ in 0..200 {
            futures_lite::future::yield_now().await;
        }
        let stats = j.stats();
        let syncs = disk.syncs() - syncs_before;
        assert!(stats.files_retired >= 3, "files retired: {stats:?}");
        // Retired files come back as the next ones. With the disk's latency
        // a retirement outlasts a file's filling now and then, and a spare
        // is zero-filled then; before, every file written started the
        // zero-fill of another (14 for 12 retired), which doubled the
        // journal's device writes.
        assert!(
            stats.files_filled <= stats.files_retired / 2,
            "files zero-filled: {stats:?}"
        );
        // Per step its sync; per new file its zero-fill sync; per retired
        // file one filesystem sync. Per-partition syncs would add 40 each.
        assert!(
            syncs <= stats.steps + 3 * (stats.files_retired + 2),
            "{syncs} syncs for {stats:?}"
        );
        drop(logs);
        every_acknowledged_batch_after_a_crash(&disk, PARTITIONS, acked).await;
    });
}

/// A flush interval (`flush.ms`) on journaled logs: what the journal made
/// durable costs no segment sync when the interval comes round (a thousand
/// busy partitions each syncing every second flooded the device: 13,673
/// segment syncs in a 25 s run of `many-partitions-1000`), while a batch
/// the journal never saw (acks=0/1) is still synced within the interval.
#[test]
fn the_flush_interval_syncs_only_what_the_journal_did_not_take() {
    run(|| async {
        const PARTITIONS: usize = 20;
        let interval = Duration::from_millis(20);
        let disk = SimDisk::new();
        let j = Journal::create(disk.clone(), Path::new(JOURNAL), JournalConfig::default())
            .await
            .unwrap();
        let config = LogConfig {
            flush: FlushPolicy::Interval(interval),
            ..config()
        };
        let logs = journaled_logs(&disk, &j, PARTITIONS, &config).await;
        let syncs_before = disk.syncs();
        let steps_before = j.stats().steps;
        for round in 0..3u64 {
            one_batch_each(&logs, round).await;
        }
        // Several intervals pass with every partition's flusher due.
        glommio::timer::sleep(interval * 6).await;
        let steps = j.stats().steps - steps_before;
        let syncs = disk.syncs() - syncs_before;
        assert!(
            syncs <= steps + 2,
            "{syncs} syncs for {steps} journal steps: the segments synced on the interval"
        );
        let running = logs.iter().filter(|l| l.flusher_running()).count();
        assert_eq!(running, 0, "flush tasks left running for journaled batches");

        // A batch no one waits on (acks=1) is not journaled: the interval syncs it.
        let log = &logs[0];
        let b = batch(9_999, 1, 200, 1_000);
        let header = batch::validate(&b, 1 << 20).unwrap();
        let info = log.append_validated_lazy(b, header).await.unwrap();
        assert!(log.durable_offset() <= info.base_offset);
        let started = std::time::Instant::now();
        while log.durable_offset() <= info.last_offset {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "an acks=1 batch not synced within the flush interval"
            );
            glommio::timer::sleep(interval).await;
        }
    });
}

/// Sizes of the journal's `.wal` files on `disk`, oldest first.
fn wal_sizes(disk: &SimDisk) -> Vec<u64> {
    use rill_storage::io::Disk;
    let dir = Path::new(JOURNAL);
    let mut names: Vec<String> = disk
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| disk.file_len(&dir.join(n)).unwrap())
        .collect()
}

/// Journal files grow while each fills within a second (up to the largest
/// size) and shrink once one takes longer than half a minute; what was
/// acknowledged through files of every size is replayed after a crash.
#[test]
fn journal_files_grow_with_the_write_rate_and_shrink_when_it_falls() {
    run(|| async {
        const PARTITIONS: usize = 8;
        const SMALL: u64 = 64 << 10;
        const LARGE: u64 = 256 << 10;
        let disk = SimDisk::with_latency(11);
        let j = Journal::create(
            disk.clone(),
            Path::new(JOURNAL),
            JournalConfig {
                file_bytes: SMALL,
                max_file_bytes: LARGE,
                steps_in_flight: 1,
            },
        )
        .await
        .unwrap();
        let logs = journaled_logs(&disk, &j, PARTITIONS, &config()).await;
        let mut acked = Vec::new();
        let mut sizes_seen = std::collections::BTreeSet::new();
        // The simulated clock stands still: every file fills "within a
        // second", so each next size doubles, up to the largest.
        let mut round = 0u64;
        while !(j.stats().file_bytes == LARGE && wal_sizes(&disk).last() == Some(&LARGE)) {
            round += 1;
            assert!(
                round < 600,
                "files never grew: {:?}, {:?}",
                j.stats(),
                wal_sizes(&disk)
            );
            for (p, offset) in one_batch_each(&logs, round).await {
                acked.push((p, offset, stored_at(&logs[p], offset).await));
            }
            sizes_seen.extend(wal_sizes(&disk));
        }
        assert!(
            sizes_seen.iter().all(|s| (SMALL..=LARGE).contains(s)),
            "{sizes_seen:?}"
        );
        assert!(
            sizes_seen.contains(&(128 << 10)),
            "grew by doubling: {sizes_seen:?}"
        );
        // Now each file takes over half a minute to fill: the sizes halve
        // back to the first one.
        let slow_from = round;
        while j.stats().file_bytes != SMALL {
            round += 1;
            assert!(
                round < slow_from + 2_000,
                "files never shrank: {:?}",
                j.stats()
            );
            disk.advance_ms(31_000);
            for (p, offset) in one_batch_each(&logs, round).await {
                acked.push((p, offset, stored_at(&logs[p], offset).await));
            }
        }
        // Let the retirements started in the background finish.
        for _ in 0..200 {
            futures_lite::future::yield_now().await;
        }
        // Spares made at the larger sizes are gone: the disk holds only
        // files of the size they are made at now.
        {
            use rill_storage::io::Disk;
            let dir = Path::new(JOURNAL);
            for n in disk.list_dir(dir).unwrap() {
                if n.ends_with(".spare") {
                    assert_eq!(disk.file_len(&dir.join(&n)).unwrap(), SMALL, "{n}");
                }
            }
        }
        drop(logs);
        every_acknowledged_batch_after_a_crash(&disk, PARTITIONS, acked).await;
    });
}
