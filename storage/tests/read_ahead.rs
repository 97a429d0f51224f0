//! Reads prepared ahead: a reader going through a log from disk in order
//! gets every batch once and in order while its next reads are started
//! before it asks (as many as its stream's depth, each read ready when asked
//! for); two readers interleaved each keep their own stream; a request
//! smaller than what was prepared gets no more than it asked for; large reads
//! (read in pieces all in flight) return the same batches as small ones; a
//! truncated log is never answered from what was read before the cut;
//! closing gives back what the shard held ahead.

mod support;

use std::path::Path;
use std::time::Duration;

use rill_storage::batch::BatchHeader;
use rill_storage::read_ahead::{depth, held_bytes, outcomes, Outcomes};
use rill_storage::{FlushPolicy, LogConfig, PartitionLog};
use support::{batch, batch_id, run};

fn config() -> LogConfig {
    LogConfig {
        write_buffer_bytes: 64 << 10,
        // Reads come from the files, not from the cache of recent batches.
        cache_bytes_max: 16 << 10,
        flush: FlushPolicy::Always,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

/// The ids of the whole batches in `data`.
fn ids(data: &[u8]) -> Vec<u64> {
    let mut at = 0;
    let mut ids = Vec::new();
    while at < data.len() {
        let h = BatchHeader::parse(&data[at..]).unwrap();
        ids.push(batch_id(&data[at..at + h.total_len()]));
        at += h.total_len();
    }
    assert_eq!(at, data.len(), "whole batches only");
    ids
}

async fn fill(log: &PartitionLog, ids: std::ops::Range<u64>) {
    for id in ids {
        log.append(batch(id, 4, 1000, id as i64)).await.unwrap();
    }
}

/// Reads from `offset` to the log end in reads of `max_bytes`; the ids seen
/// and whether any read was prepared ahead meanwhile.
async fn read_all(log: &PartitionLog, offset: i64, max_bytes: usize) -> (Vec<u64>, bool) {
    read_all_on(log, offset, max_bytes, Duration::ZERO).await
}

/// Reads from `offset` to the log end in reads of `max_bytes`, slower than
/// the disk (the stream fills up between reads); the ids seen.
async fn read_slowly(log: &PartitionLog, offset: i64, max_bytes: usize) -> Vec<u64> {
    read_all_on(log, offset, max_bytes, Duration::from_millis(10))
        .await
        .0
}

/// [`read_all`] on any disk, with `pause` between reads.
async fn read_all_on<D: rill_storage::io::Disk>(
    log: &PartitionLog<D>,
    mut offset: i64,
    max_bytes: usize,
    pause: Duration,
) -> (Vec<u64>, bool) {
    let mut seen = Vec::new();
    let mut ahead = false;
    while offset < log.log_end_offset() {
        let data = log.read(offset, max_bytes).await.unwrap();
        ahead |= held_bytes() > 0;
        let got = ids(&data);
        assert!(
            data.len() <= max_bytes || got.len() == 1,
            "at most max_bytes, or one batch"
        );
        seen.extend(got);
        offset = rill_record::header::next_offset_after(&data).unwrap();
        if !pause.is_zero() {
            glommio::timer::sleep(pause).await;
        }
    }
    (seen, ahead)
}

/// Closes `log` and checks that the shard holds nothing read ahead after.
async fn close_giving_back(log: PartitionLog) {
    log.close().await.unwrap();
    // A dropped read's task is dropped when the executor next runs it.
    glommio::timer::sleep(Duration::from_millis(5)).await;
    assert_eq!(held_bytes(), 0, "closing gave back what was read ahead");
}

async fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config()).await.unwrap()
}

/// Runs `test` on a new log holding batches `0..batches`, then closes the
/// log it gives back and checks nothing is left read ahead.
fn with_log<F, Fut>(batches: u64, test: F)
where
    F: FnOnce(PartitionLog) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = PartitionLog> + 'static,
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    run(move || async move {
        let log = open(&dir).await;
        fill(&log, 0..batches).await;
        close_giving_back(test(log).await).await;
    });
}

#[test]
fn a_reader_in_order_gets_every_batch_once_while_reads_are_prepared_ahead() {
    with_log(300, |log| async move {
        let (seen, ahead) = read_all(&log, 0, 64 << 10).await;
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        assert!(ahead, "reads were prepared ahead");
        // Again, as a second consumer group would: the same batches.
        let (seen, _) = read_all(&log, 0, 64 << 10).await;
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        log
    });
}

#[test]
fn a_stream_keeps_its_depth_of_reads_ahead_and_each_is_ready_when_asked_for() {
    with_log(300, |log| async move {
        let max = 32 << 10;
        let before = outcomes();
        let first = log.read(0, max).await.unwrap();
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(held_bytes(), depth(max) * max, "{} reads ahead", depth(max));
        let mut seen = ids(&first);
        let next = rill_record::header::next_offset_after(&first).unwrap();
        seen.extend(read_slowly(&log, next, max).await);
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        let after = only_the_first_read_was_not_prepared(before, 10);
        assert_eq!(after.waited, before.waited, "every prepared read was ready");
        log
    });
}

/// Since `before`, one read was not prepared (the first), and at least
/// `ready` were ready when asked for.
fn only_the_first_read_was_not_prepared(before: Outcomes, ready: u64) -> Outcomes {
    let after = outcomes();
    assert_eq!(after.missed - before.missed, 1, "{after:?}");
    assert!(after.ready - before.ready >= ready, "{after:?}");
    after
}

#[test]
fn a_disk_that_answers_at_once_keeps_no_more_than_the_depth_ahead() {
    // glommio may run a new task inside `spawn_local`, and the simulated
    // disk answers reads at once: a prepared read must not start the next
    // inside itself (it once did, to the log's end, overflowing the stack).
    run(|| async {
        let disk = rill_storage::sim_disk::SimDisk::new();
        let log = PartitionLog::open_on(disk, std::path::PathBuf::from("p"), config())
            .await
            .unwrap();
        for id in 0..3000 {
            log.append(batch(id, 1, 10, id as i64)).await.unwrap();
        }
        let data = log.read(0, 1).await.unwrap();
        assert_eq!(ids(&data), [0]);
        for _ in 0..10 {
            futures_lite::future::yield_now().await;
        }
        // One byte asked per read: at least the next read, at most the depth.
        assert!((1..=depth(1)).contains(&held_bytes()), "{}", held_bytes());
        let (seen, _) = read_all_on(&log, 1, 1, Duration::ZERO).await;
        assert_eq!(seen, (1..3000).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
}

#[test]
fn a_reader_of_1_mib_is_served_from_larger_reads_and_what_each_leaves() {
    // About 5 MiB: reads ahead are 4 MiB (`read_ahead::READ_MIN`), each
    // serving several requests of 1 MiB.
    with_log(1200, |log| async move {
        let max = 1 << 20;
        assert!(rill_storage::read_ahead::read_bytes(max) > max);
        let before = outcomes();
        assert_eq!(
            read_slowly(&log, 0, max).await,
            (0..1200).collect::<Vec<_>>()
        );
        // Five reads of about 1 MiB: the first from disk, the others from
        // reads of 4 MiB (ready unless the disk took over 10 ms for one).
        only_the_first_read_was_not_prepared(before, 1);
        log
    });
}

#[test]
fn two_readers_interleaved_each_keep_their_stream() {
    with_log(300, |log| async move {
        let max = 32 << 10;
        let before = outcomes();
        let (mut a, mut b) = (0, 0);
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        let mut turn = 0;
        while a < log.log_end_offset() || b < log.log_end_offset() {
            // The second reader starts five reads behind the first.
            let (offset, seen) = if (turn < 5 || turn % 2 == 0) && a < log.log_end_offset()
                || b >= log.log_end_offset()
            {
                (&mut a, &mut seen_a)
            } else {
                (&mut b, &mut seen_b)
            };
            turn += 1;
            let data = log.read(*offset, max).await.unwrap();
            seen.extend(ids(&data));
            *offset = rill_record::header::next_offset_after(&data).unwrap();
        }
        assert_eq!(seen_a, (0..300).collect::<Vec<_>>());
        assert_eq!(seen_b, (0..300).collect::<Vec<_>>());
        let after = outcomes();
        assert_eq!(after.missed - before.missed, 2, "one first read each");
        log
    });
}

#[test]
fn large_reads_in_pieces_return_what_small_reads_return() {
    // About 5 MiB: reads of 2 and 3 MiB go in pieces of 1 MiB.
    with_log(1200, |log| async move {
        let (small, _) = read_all(&log, 0, 64 << 10).await;
        assert_eq!(small, (0..1200).collect::<Vec<_>>());
        for max in [2 << 20, (3 << 20) + 4321] {
            let (seen, _) = read_all(&log, 0, max).await;
            assert_eq!(seen, small, "reads of {max} bytes");
            // From inside a batch's offsets, and an offset the index does not hold.
            for id in [1u64, 517, 1199] {
                let data = log.read(id as i64 * 4 + 2, max).await.unwrap();
                assert!(data.len() <= max);
                assert_eq!(
                    ids(&data)[0],
                    id,
                    "the batch that holds the offset comes first"
                );
            }
        }
        log
    });
}

#[test]
fn a_smaller_request_gets_no_more_than_it_asked_for() {
    with_log(100, |log| async move {
        let first = log.read(0, 64 << 10).await.unwrap();
        let next = rill_record::header::next_offset_after(&first).unwrap();
        assert!(held_bytes() > 0, "the next read was started");
        // What was prepared is 64 KiB; this request takes 10 KiB.
        let small = log.read(next, 10 << 10).await.unwrap();
        assert!(small.len() <= 10 << 10, "{} bytes", small.len());
        let want_first = ids(&first).last().unwrap() + 1;
        assert_eq!(ids(&small)[0], want_first);
        // One batch, however large, when even the first does not fit.
        let tiny = log.read(next, 1).await.unwrap();
        assert_eq!(ids(&tiny), [want_first]);
        let (rest, _) = read_all(&log, next, 64 << 10).await;
        assert_eq!(rest, (want_first..100).collect::<Vec<_>>());
        log
    });
}

#[test]
fn a_truncated_log_is_not_answered_from_what_was_read_before_the_cut() {
    with_log(100, |log| async move {
        let first = log.read(0, 32 << 10).await.unwrap();
        let cut = rill_record::header::next_offset_after(&first).unwrap();
        assert!(held_bytes() > 0, "the read at {cut} was started");
        // Give the prepared read time to finish: it holds the old batches.
        glommio::timer::sleep(Duration::from_millis(20)).await;
        log.truncate_to(cut).await.unwrap();
        fill(&log, 1000..1040).await;
        let (seen, _) = read_all(&log, cut, 32 << 10).await;
        assert_eq!(seen, (1000..1040).collect::<Vec<_>>());
        log
    });
}
