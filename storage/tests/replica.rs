//! A partition log as a Raft replica's storage: a leader's batches copied
//! to a follower keep their offsets, epochs and bytes; the leader-epoch
//! index answers "which epoch wrote offset O" and "where does epoch E end"
//! through appends, truncation of a divergent suffix, log-start moves,
//! reopen, a lost index file and crashes.

mod support;

use rill_storage::batch::BatchHeader;
use rill_storage::sim_disk::{CrashPlan, SimDisk};
use rill_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};
use support::{batch, run, small_config, split_batches};

const LEADER: &str = "/sim/leader-0";
const FOLLOWER: &str = "/sim/follower-0";

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::Always,
        ..small_config()
    }
}

/// Every batch of `log` as stored, from its start.
async fn all_batches(log: &PartitionLog<SimDisk>) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let data = log.read(at, 1 << 20).await.unwrap();
        for b in split_batches(&data) {
            let h = BatchHeader::parse(b).unwrap();
            if h.next_offset() > at {
                at = h.next_offset();
                out.push(bytes::Bytes::copy_from_slice(b));
            }
        }
    }
    out
}

#[test]
fn a_follower_copies_its_leader_byte_for_byte_with_the_same_epochs() {
    run(|| async {
        let disk = SimDisk::new();
        let leader = PartitionLog::open_on(disk.clone(), LEADER, config())
            .await
            .unwrap();
        let follower = PartitionLog::open_on(disk.clone(), FOLLOWER, config())
            .await
            .unwrap();
        for (i, epoch) in [(0u64, 0), (1, 0), (2, 3), (3, 3), (4, 7)] {
            leader.set_leader_epoch(epoch);
            leader.append(batch(i, 4, 100, 1000)).await.unwrap();
        }
        assert_eq!(leader.leader_epochs(), vec![(0, 0), (3, 8), (7, 16)]);
        assert_eq!(leader.epoch_at(9), Some(3));
        assert_eq!(leader.epoch_at(20), None, "past the log end");
        assert_eq!(leader.end_of_epoch(5), Some((3, 16)));
        assert_eq!(leader.end_of_epoch(7), Some((7, 20)));

        let copied = all_batches(&leader).await;
        for b in &copied {
            follower.append_replica(b.clone()).await.unwrap();
        }
        follower.sync().await.unwrap();
        assert_eq!(all_batches(&follower).await, copied, "the same bytes");
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());

        // Out of order, or from an epoch older than one held: refused.
        let again = follower.append_replica(copied[1].clone()).await;
        assert!(
            matches!(again, Err(StorageError::NotContiguous { .. })),
            "{again:?}"
        );
        let mut stale = copied[0].to_vec();
        rill_storage::batch::header::set_base_offset(&mut stale, 20);
        rill_storage::batch::header::set_leader_epoch(&mut stale, 5);
        let stale = follower.append_replica(stale.into()).await;
        assert!(
            matches!(stale, Err(StorageError::EpochRegression(_))),
            "{stale:?}"
        );
    });
}

#[test]
fn the_index_follows_truncation_log_start_and_reopen_and_is_rebuilt_when_lost() {
    run(|| async {
        let disk = SimDisk::new();
        let log = PartitionLog::open_on(disk.clone(), LEADER, config())
            .await
            .unwrap();
        for (i, epoch) in [(0u64, 1), (1, 1), (2, 2), (3, 4), (4, 4)] {
            log.set_leader_epoch(epoch);
            log.append(batch(i, 4, 100, 1000)).await.unwrap();
        }
        // A divergent suffix goes: epoch 4 began at 12.
        log.truncate_to(12).await.unwrap();
        assert_eq!(log.leader_epochs(), vec![(1, 0), (2, 8)]);
        assert_eq!(
            log.end_of_epoch(2),
            Some((2, 12)),
            "the latest ends at the log end"
        );
        assert_eq!(log.end_of_epoch(4), None, "newer than every epoch held");
        // The log start moves into epoch 1: it now starts there.
        log.delete_records_before(4).await.unwrap();
        assert_eq!(log.leader_epochs(), vec![(1, 4), (2, 8)]);
        log.close().await.unwrap();

        let log = PartitionLog::open_on(disk.clone(), LEADER, config())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), vec![(1, 4), (2, 8)]);
        log.close().await.unwrap();

        // The index is derived data: lost, it is rebuilt from the batches.
        use rill_storage::io::Disk;
        disk.remove_file(std::path::Path::new(&format!("{LEADER}/leader-epochs")))
            .unwrap();
        let log = PartitionLog::open_on(disk.clone(), LEADER, config())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), vec![(1, 4), (2, 8)]);
    });
}

/// A crash after a new epoch was recorded but before its first batch was
/// synced: the reopened log has neither, and appends continue in order.
#[test]
fn a_crash_never_leaves_an_epoch_without_its_batches() {
    run(|| async {
        for landed in 0..3 {
            let disk = SimDisk::new();
            let log = PartitionLog::open_on(disk.clone(), LEADER, config())
                .await
                .unwrap();
            log.set_leader_epoch(1);
            log.append(batch(0, 4, 100, 1000)).await.unwrap();
            log.set_leader_epoch(2);
            let (b, h) = {
                let b = batch(1, 4, 100, 1000);
                let h = rill_storage::batch::validate(&b, 1 << 20).unwrap();
                (b, h)
            };
            log.append_validated_unsynced(b, h).await.unwrap();
            let disk = disk.crash(CrashPlan {
                landed,
                torn_sectors: 0,
            });
            drop(log);
            let log = PartitionLog::open_on(disk.clone(), LEADER, config())
                .await
                .unwrap();
            let end = log.log_end_offset();
            let epochs = log.leader_epochs();
            assert!(
                epochs.iter().all(|&(_, start)| start < end),
                "landed {landed}: {epochs:?} beyond the end {end}"
            );
            assert_eq!(epochs[0], (1, 0));
            log.set_leader_epoch(3);
            let info = log.append(batch(2, 4, 100, 1000)).await.unwrap();
            assert_eq!(log.epoch_at(info.base_offset), Some(3));
        }
    });
}

/// The Raft hard state is durable when `save_hard_state` returns: a crash
/// right after keeps it, and a checkpoint written later (an append, a
/// close) carries it on.
#[test]
fn the_hard_state_survives_crashes_and_later_checkpoints() {
    run(|| async {
        use rill_storage::HardState;
        let disk = SimDisk::new();
        let log = PartitionLog::open_on(disk.clone(), FOLLOWER, config())
            .await
            .unwrap();
        assert_eq!(log.hard_state(), HardState::default());
        let voted = HardState {
            term: 5,
            vote: Some(2),
            commit: 0,
            abstain_through: None,
        };
        log.save_hard_state(voted).await.unwrap();
        let disk = disk.crash(CrashPlan {
            landed: 0,
            torn_sectors: 0,
        });
        drop(log);
        let log = PartitionLog::open_on(disk.clone(), FOLLOWER, config())
            .await
            .unwrap();
        assert_eq!(log.hard_state(), voted);
        log.append(batch(0, 4, 100, 1000)).await.unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open_on(disk.clone(), FOLLOWER, config())
            .await
            .unwrap();
        assert_eq!(log.hard_state(), voted);
    });
}

/// A lost index over many segments and epochs (changes mid-segment, at a
/// segment's start, epochs skipped) is rebuilt exactly.
#[test]
fn a_rebuilt_index_finds_every_epoch_change() {
    run(|| async {
        use rill_storage::io::Disk;
        for seed in 0..8u64 {
            let disk = SimDisk::new();
            let log = PartitionLog::open_on(disk.clone(), LEADER, config())
                .await
                .unwrap();
            let mut epoch = 0;
            for i in 0..300u64 {
                // Deterministic, irregular: runs of 1 to 60 batches, jumps of 1 to 3.
                if (i * 7919 + seed * 104_729) % 61 < 2 + seed % 3 {
                    epoch += 1 + ((i + seed) % 3) as i32;
                }
                log.set_leader_epoch(epoch);
                log.append(batch(i, 3, 300, 1000)).await.unwrap();
            }
            let written = log.leader_epochs();
            assert!(written.len() > 5 && log.segment_count() > 3, "{written:?}");
            log.close().await.unwrap();
            disk.remove_file(std::path::Path::new(&format!("{LEADER}/leader-epochs")))
                .unwrap();
            let log = PartitionLog::open_on(disk.clone(), LEADER, config())
                .await
                .unwrap();
            assert_eq!(log.leader_epochs(), written, "seed {seed}");
        }
    });
}

/// A bit flipped in synced data of the active segment (below the recovery
/// point): recovery finds it; a plain open refuses the log, a replica's open
/// cuts it at the damaged batch and says where, keeping what precedes.
/// (Closed segments are not rescanned at open — their index files are
/// trusted, as Kafka does — so damage there is found when read.)
#[test]
fn damaged_synced_data_is_refused_or_cut_for_a_replica() {
    run(|| async {
        use std::path::Path;
        {
            let disk = SimDisk::new();
            let log = PartitionLog::open_on(disk.clone(), FOLLOWER, config())
                .await
                .unwrap();
            let mut starts = Vec::new();
            for i in 0..120u64 {
                starts.push(
                    log.append(batch(i, 2, 500, 1000))
                        .await
                        .unwrap()
                        .base_offset,
                );
            }
            let bases = log.segment_bases();
            assert!(bases.len() >= 3, "{bases:?}");
            let before = all_batches(&log).await;
            drop(log);
            let disk = disk.crash(CrashPlan {
                landed: 0,
                torn_sectors: 0,
            });
            // The segment to damage, and a batch inside it (not its first).
            let base = *bases.last().unwrap();
            let inside: Vec<i64> = starts.iter().copied().filter(|&s| s >= base).collect();
            let target = inside[inside.len().min(4) - 1].max(inside[1]);
            let position: usize = before
                .iter()
                .filter(|b| {
                    let at = BatchHeader::parse(b).unwrap().base_offset;
                    at >= base && at < target
                })
                .map(|b| b.len())
                .sum();
            let position = position as u64;
            let file = format!("{FOLLOWER}/{base:020}.log");
            // A byte inside the damaged batch's CRC-covered part.
            assert!(disk.flip_bit(Path::new(&file), position + 40, 3));
            let plain = PartitionLog::open_on(disk.clone(), FOLLOWER, config()).await;
            assert!(matches!(
                plain,
                Err(StorageError::CorruptFlushedData { .. })
            ));
            let (log, cut) = PartitionLog::open_replica_on(disk.clone(), FOLLOWER, config())
                .await
                .unwrap();
            assert_eq!(cut, Some(target));
            assert_eq!(log.log_end_offset(), target);
            let kept = all_batches(&log).await;
            assert_eq!(kept[..], before[..kept.len()]);
            // The log takes appends at the cut.
            log.append_replica(before[kept.len()].clone())
                .await
                .unwrap();
            assert_eq!(log.log_end_offset(), target + 2);
        }
    });
}
