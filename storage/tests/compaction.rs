//! Log compaction against a model, on the simulated disk: random keyed
//! appends with delete markers in every codec, cleaning passes with an offset
//! map too small for all keys (so a log is cleaned in several passes), clean
//! reopens, crashes, and kills at every step of a pass (`SimDisk::die_after`).
//! After each: every key's newest value is there (a newest delete marker may
//! be gone), nothing the log holds was never written, nothing at or after the
//! clean point is missing, below it each key appears at most once, offsets
//! only increase and a read at any offset returns the next batch.
//! Deterministic: a failing seed replays with `RILL_COMPACTION_SEED=<n>`.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rill_storage::batch::{decode_batches, BatchBuilder, BatchHeader, Compression};
use rill_storage::compaction::CleanerLimits;
use rill_storage::io::Disk;
use rill_storage::sim_disk::{CrashPlan, SimDisk};
use rill_storage::{CompactionConfig, LogConfig, PartitionLog};
use support::{run, small_config};

const DIR: &str = "/sim/compacted-0";
const DELETE_RETENTION_MS: u64 = 5_000;

fn config(dirty_ratio: f64) -> LogConfig {
    with_retention(dirty_ratio, None)
}

/// `cleanup.policy=compact,delete` when `retention_ms` is set.
fn with_retention(dirty_ratio: f64, retention_ms: Option<u64>) -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        retention_ms,
        compaction: Some(CompactionConfig {
            min_cleanable_dirty_ratio: dirty_ratio,
            delete_retention_ms: DELETE_RETENTION_MS,
            ..Default::default()
        }),
        ..small_config()
    }
}

/// One record as written: key, value (`None`: a delete marker).
type Record = (Vec<u8>, Option<Vec<u8>>);

/// Every record the log holds from its start, in offset order.
async fn contents<D: Disk>(log: &PartitionLog<D>) -> Vec<(i64, Record)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let data = log.read(at, 1 << 16).await.expect("readable");
        let mut records = Vec::new();
        let next = decode_batches(&data, at, &mut records).expect("decodes");
        for r in records {
            out.push((
                r.offset,
                (r.key.unwrap().to_vec(), r.value.map(|v| v.to_vec())),
            ));
        }
        at = next.expect("a batch");
    }
    out
}

struct Model {
    /// Every acknowledged record by offset (those below the log start
    /// removed when DeleteRecords or retention moved it).
    written: BTreeMap<i64, Record>,
    /// Each record's timestamp.
    timestamps: BTreeMap<i64, i64>,
    /// The clean point the log reached (a crash may lose the cleaner's
    /// record of it, never what it removed).
    cleaned_to: i64,
}

impl Model {
    fn forget_before(&mut self, start: i64) {
        self.written = self.written.split_off(&start);
    }

    fn newest(&self) -> BTreeMap<&[u8], (i64, &Option<Vec<u8>>)> {
        let mut out = BTreeMap::new();
        for (o, (k, v)) in &self.written {
            out.insert(k.as_slice(), (*o, v));
        }
        out
    }
}

async fn check(log: &PartitionLog<SimDisk>, model: &mut Model, what: &str) {
    model.cleaned_to = model.cleaned_to.max(log.cleaned_to());
    let held = contents(log).await;
    let mut last = -1;
    for (o, rec) in &held {
        assert!(*o > last, "{what}: offsets go back at {o}");
        last = *o;
        assert_eq!(
            model.written.get(o),
            Some(rec),
            "{what}: offset {o} holds something never written"
        );
    }
    let held_at: BTreeMap<i64, &Record> = held.iter().map(|(o, r)| (*o, r)).collect();
    let mut newest_held: BTreeMap<&[u8], i64> = BTreeMap::new();
    for (o, (k, _)) in &held {
        newest_held.insert(k.as_slice(), *o);
    }
    for (key, (offset, value)) in model.newest() {
        match newest_held.get(key) {
            Some(o) => assert_eq!(
                *o, offset,
                "{what}: key {key:?}'s newest record is not the newest"
            ),
            None => assert!(
                value.is_none(),
                "{what}: key {key:?} lost its newest value at {offset}"
            ),
        }
    }
    for (o, _) in model.written.range(model.cleaned_to..) {
        assert!(
            held_at.contains_key(o),
            "{what}: {o} is past the clean point {} and gone",
            model.cleaned_to
        );
    }
    let mut below: BTreeMap<&[u8], i64> = BTreeMap::new();
    for (o, (k, _)) in held.iter().filter(|(o, _)| *o < log.cleaned_to()) {
        if let Some(earlier) = below.insert(k.as_slice(), *o) {
            panic!(
                "{what}: key {k:?} at {earlier} and {o}, both below the clean point {}",
                log.cleaned_to()
            );
        }
    }
    for at in log.log_start_offset()..log.log_end_offset() {
        let data = log.read(at, 1).await.expect("readable");
        let h = BatchHeader::parse(&data).expect("a batch");
        assert!(
            h.next_offset() > at,
            "{what}: a read at {at} returned an earlier batch"
        );
    }
}

fn keyed_batch(rng: &mut StdRng, keys: u32, now: i64) -> (Bytes, Vec<Record>) {
    let mut b = BatchBuilder::new(4096);
    let mut records = Vec::new();
    for _ in 0..rng.gen_range(1..8) {
        let key = format!("key-{}", rng.gen_range(0..keys)).into_bytes();
        let value = (!rng.gen_bool(0.15)).then(|| {
            let mut v = format!("v{}-", rng.gen::<u32>()).into_bytes();
            v.resize(rng.gen_range(v.len()..300), b'x');
            v
        });
        b.push(now, Some(&key), value.as_deref(), &[]);
        records.push((key, value));
    }
    let codec = Compression::ALL[rng.gen_range(0..Compression::ALL.len())];
    (b.finish(codec).unwrap(), records)
}

async fn one_seed(seed: u64) -> (u64, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ratio = [0.0, 0.3, 0.5][rng.gen_range(0..3)];
    let retention = rng.gen_bool(0.3).then_some(60_000);
    let config = move |_: f64| with_retention(ratio, retention);
    let keys = rng.gen_range(3..40);
    let mut disk = SimDisk::new();
    disk.advance_ms(1_000_000);
    let mut log = PartitionLog::open_on(disk.clone(), DIR, config(ratio))
        .await
        .unwrap();
    let mut model = Model {
        written: BTreeMap::new(),
        timestamps: BTreeMap::new(),
        cleaned_to: 0,
    };
    let mut removed = 0;
    let mut kills = 0;
    for step in 0..120 {
        let what = format!("seed {seed} step {step}");
        let op = rng.gen_range(0..100);
        if std::env::var("RILL_COMPACTION_TRACE").is_ok() {
            eprintln!(
                "{what}: op {op} cleaned_to {} bases {:?} end {}",
                log.cleaned_to(),
                log.segment_bases(),
                log.log_end_offset()
            );
        }
        match op {
            0..60 => {
                let now = disk.now_ms_for_test();
                let (batch, records) = keyed_batch(&mut rng, keys, now);
                let info = log.append(batch).await.unwrap();
                for (i, r) in records.into_iter().enumerate() {
                    model.written.insert(info.base_offset + i as i64, r);
                    model.timestamps.insert(info.base_offset + i as i64, now);
                }
            }
            60..67 => disk.advance_ms(rng.gen_range(0..3_000)),
            67..68 => {
                let (start, end) = (log.log_start_offset(), log.log_end_offset());
                let to = rng.gen_range(start..=end.min(start + 30));
                log.delete_records_before(to).await.unwrap();
                model.forget_before(log.log_start_offset());
                check(&log, &mut model, &format!("{what} DeleteRecords({to})")).await;
            }
            68..70 => {
                log.enforce_retention(disk.now_ms_for_test()).await.unwrap();
                model.forget_before(log.log_start_offset());
                check(&log, &mut model, &format!("{what} retention")).await;
            }
            70..85 => {
                let map_bytes = [40 * 8, 40 * 64, 1 << 20][rng.gen_range(0..3)];
                if let Some(o) = log.clean(CleanerLimits::map_only(map_bytes)).await.unwrap() {
                    removed += o.records_removed;
                }
                check(&log, &mut model, &what).await;
            }
            85..90 => {
                log.close().await.unwrap();
                log = PartitionLog::open_on(disk.clone(), DIR, config(ratio))
                    .await
                    .unwrap();
                check(&log, &mut model, &what).await;
            }
            90..97 => {
                // Killed at a random step of a pass, then restarted.
                disk.die_after(rng.gen_range(0..16));
                let killed = log.clean(CleanerLimits::map_only(1 << 20)).await.is_err();
                model.cleaned_to = model.cleaned_to.max(log.cleaned_to());
                if killed {
                    kills += 1;
                    // How far the killed pass got is unknown; it cleaned
                    // closed segments only, so the active one is untouched.
                    let active = *log.segment_bases().last().unwrap();
                    model.cleaned_to = model.cleaned_to.max(active);
                }
                let plan = CrashPlan {
                    landed: rng.gen_range(0..4),
                    torn_sectors: rng.gen_range(0..8),
                };
                disk = disk.crash(plan);
                drop(log);
                log = PartitionLog::open_on(disk.clone(), DIR, config(ratio))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: open after a kill failed: {e}"));
                check(&log, &mut model, &what).await;
            }
            _ => {
                disk = disk.crash(CrashPlan {
                    landed: 0,
                    torn_sectors: 0,
                });
                drop(log);
                log = PartitionLog::open_on(disk.clone(), DIR, config(ratio))
                    .await
                    .unwrap();
                check(&log, &mut model, &what).await;
            }
        }
    }
    (removed, kills)
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}

impl NowForTest for SimDisk {
    fn now_ms_for_test(&self) -> i64 {
        use rill_storage::io::Clock;
        self.now_ms()
    }
}

#[test]
fn compaction_keeps_every_keys_newest_value_through_passes_reopens_and_kills() {
    let (seeds, replay): (Vec<u64>, bool) = match std::env::var("RILL_COMPACTION_SEED") {
        Ok(s) => (vec![s.parse().expect("a seed")], true),
        Err(_) => ((0..60).collect(), false),
    };
    let (removed, kills) = run(move || async move {
        let (mut removed, mut kills) = (0, 0);
        for seed in seeds {
            let (r, k) = one_seed(seed).await;
            removed += r;
            kills += k;
        }
        (removed, kills)
    });
    println!("{removed} records removed, {kills} passes killed");
    assert!(
        replay || removed > 1000,
        "compaction removed only {removed} records"
    );
    assert!(
        replay || kills > 20,
        "only {kills} passes were killed mid-way"
    );
}

fn records(recs: &[(&str, Option<&str>)], now: i64, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(4096);
    for (k, v) in recs {
        b.push(now, Some(k.as_bytes()), v.map(str::as_bytes), &[]);
    }
    b.finish(codec).unwrap()
}

#[test]
fn delete_markers_stay_for_delete_retention_then_go_and_small_segments_merge() {
    run(|| async {
        let disk = SimDisk::new();
        disk.advance_ms(1_000_000);
        let log = PartitionLog::open_on(disk.clone(), DIR, config(0.5))
            .await
            .unwrap();
        let now = disk.now_ms_for_test();
        log.append(records(
            &[("a", Some("1")), ("a", None), ("b", Some("1"))],
            now,
            Compression::Lz4,
        ))
        .await
        .unwrap();
        let filler = "x".repeat(1000);
        for i in 0..40 {
            log.append(records(
                &[("c", Some(&format!("{i}{filler}")))],
                now,
                Compression::None,
            ))
            .await
            .unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 4, "{segments} segments");
        let first = log
            .clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .expect("a pass was due");
        assert!(first.records_removed >= 30, "{first:?}");
        // A group grows by what its cleaned output holds: the segments this
        // pass all but emptied merge into one at once (the active stays).
        assert_eq!(log.segment_count(), 2, "{first:?}");
        let keys = |c: &[(i64, Record)]| {
            c.iter()
                .map(|(_, (k, v))| (String::from_utf8(k.clone()).unwrap(), v.is_none()))
                .collect::<Vec<_>>()
        };
        let after = keys(&contents(&log).await);
        assert_eq!(
            &after[..2],
            &[("a".to_string(), true), ("b".to_string(), false)],
            "the marker is a's newest record"
        );

        // Before delete.retention.ms has passed since the first cleaning, it stays.
        disk.advance_ms(DELETE_RETENTION_MS as i64 - 1);
        assert_eq!(
            log.clean(CleanerLimits::map_only(1 << 20)).await.unwrap(),
            None,
            "nothing dirty, no marker due"
        );
        assert_eq!(keys(&contents(&log).await)[0], ("a".to_string(), true));
        // Then it goes, in a pass with nothing dirty.
        disk.advance_ms(1);
        let pass = log
            .clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .expect("expired markers make a pass due");
        assert_eq!(pass.records_removed, 1, "{pass:?}");
        assert_eq!(
            log.segment_count(),
            2,
            "the shrunk segments merged into one"
        );
        let held = keys(&contents(&log).await);
        assert!(held.iter().all(|(k, _)| k != "a"), "{held:?}");
        assert_eq!(held[0], ("b".to_string(), false));
        assert_eq!(
            log.clean(CleanerLimits::map_only(1 << 20)).await.unwrap(),
            None,
            "a segment without markers is not visited again"
        );
        // Reads from the start still work and offsets go on.
        let end = log.log_end_offset();
        log.close().await.unwrap();
        let log = PartitionLog::open_on(disk.clone(), DIR, config(0.5))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(keys(&contents(&log).await), held);
        assert_eq!(
            log.clean(CleanerLimits::map_only(1 << 20)).await.unwrap(),
            None,
            "the cleaner state survived the reopen"
        );
    });
}

/// The real disk (O_DIRECT, io_uring): appends go on while passes run, and
/// an idempotent producer's duplicate is still recognised after its batches
/// were compacted away and its state rebuilt from the log alone.
#[test]
fn cleaning_on_the_real_disk_beside_appends_and_producer_state() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p0");
        let config = || LogConfig {
            preallocate_bytes: 16 << 10,
            ..config(0.0)
        };
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let writer = {
            let (log, done) = (log.clone(), done.clone());
            glommio::spawn_local(async move {
                for i in 0..400u32 {
                    let key = format!("k{}", i % 37);
                    let value = format!("{i}-{}", "v".repeat(200));
                    log.append(records(
                        &[(&key, Some(&value))],
                        i as i64,
                        Compression::Zstd,
                    ))
                    .await
                    .unwrap();
                }
                done.set(true);
            })
        };
        let mut passes = 0;
        while !done.get() {
            if log
                .clean(CleanerLimits::map_only(40 * 16))
                .await
                .unwrap()
                .is_some()
            {
                passes += 1;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        writer.await;
        while log
            .clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .is_some()
        {}
        assert!(passes > 0, "no pass ran beside the appends");

        // An idempotent producer writing one key over and over.
        let mut last = Bytes::new();
        for seq in 0..20 {
            let mut b = BatchBuilder::new(4096);
            let now = rill_storage::batch::now_ms();
            b.push(
                now,
                Some(b"p"),
                Some(format!("{seq}-{}", "w".repeat(100)).as_bytes()),
                &[],
            );
            b.producer(rill_storage::batch::ProducerFields {
                id: 9,
                epoch: 0,
                base_sequence: seq,
                transactional: false,
            });
            last = b.finish(Compression::None).unwrap();
            assert!(!log.append(last.clone()).await.unwrap().duplicate);
        }
        // A later write supersedes all of them: the producer's last batches
        // stay as empty batches (not only as the last batch of a segment).
        log.append(records(&[("q", Some("x"))], 0, Compression::None))
            .await
            .unwrap();
        log.append(records(
            &[("p", Some("later")), ("z", Some(&"z".repeat(9000)))],
            0,
            Compression::None,
        ))
        .await
        .unwrap();
        log.append(records(
            &[("z", Some(&"z".repeat(9000)))],
            0,
            Compression::None,
        ))
        .await
        .unwrap();
        while log
            .clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .is_some()
        {}

        let check = |held: Vec<(i64, Record)>| {
            let mut newest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (_, (k, v)) in &held {
                newest.insert(k.clone(), v.clone().unwrap());
            }
            for k in 0..37u32 {
                let i = (0..400u32).filter(|i| i % 37 == k).max().unwrap();
                assert!(newest[format!("k{k}").as_bytes()].starts_with(format!("{i}-").as_bytes()));
            }
            assert_eq!(newest[&b"p"[..]], b"later");
            assert!(held.len() < 150, "{} records left of 421", held.len());
        };
        check(contents(&log).await);
        let end = log.log_end_offset();
        log.close().await.unwrap();
        // Forget the producer snapshots: the state comes from the log only.
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "producers") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        check(contents(&log).await);
        let again = log.append(last).await.unwrap();
        assert!(
            again.duplicate,
            "the retry of the producer's last batch is recognised"
        );
        log.close().await.unwrap();
    });
}

/// A cleaned segment whose last record was a delete marker that expired
/// keeps one empty batch (so the segment still ends where it ended). A
/// consumer's fetch steps over it to the next batch with records; a plain
/// read returns the empty batch.
#[test]
fn a_fetch_steps_over_a_segment_of_empty_batches() {
    run(|| async {
        let disk = SimDisk::new();
        disk.advance_ms(1_000_000);
        let log = PartitionLog::open_on(disk.clone(), DIR, config(0.01))
            .await
            .unwrap();
        let now = disk.now_ms_for_test();
        let big = "x".repeat(6 << 10);
        for i in 0..3 {
            let value = format!("{i}{big}");
            log.append(records(&[("a", Some(&value))], now, Compression::None))
                .await
                .unwrap();
        }
        log.append(records(&[("a", None)], now, Compression::None))
            .await
            .unwrap();
        log.append(records(&[("b", Some(&big))], now, Compression::None))
            .await
            .unwrap();
        assert_eq!(log.segment_bases(), vec![0, 1, 2, 4]);
        log.clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .expect("a pass was due");
        disk.advance_ms(DELETE_RETENTION_MS as i64 + 1);
        log.clean(CleanerLimits::map_only(1 << 20))
            .await
            .unwrap()
            .expect("the expired marker makes a pass due");
        assert_eq!(log.segment_bases(), vec![0, 4]);
        let plain = log.read(0, 1 << 20).await.unwrap();
        let first = BatchHeader::parse(&plain).unwrap();
        assert_eq!((first.base_offset, first.record_count), (3, 0));
        assert_eq!(plain.len(), first.total_len());
        let fetched = log.fetch(0, 1 << 20).await.unwrap();
        let mut got = Vec::new();
        decode_batches(&fetched, 0, &mut got).unwrap();
        let got: Vec<_> = got.iter().map(|r| (r.offset, r.key.clone())).collect();
        assert_eq!(got, vec![(4, Some(Bytes::from_static(b"b")))]);
    });
}
