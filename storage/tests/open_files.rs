//! Many logs on few descriptors: with a budget of 12 open files, 40 logs of
//! several segments each append, sync, read back and reopen; descriptors of
//! idle files are closed and reopened on demand, never more than the budget
//! are open, and every batch reads back byte for byte. (Its own test binary:
//! the budget is process-wide.)

mod support;

use rill_storage::{descriptors, open_files, PartitionLog};
use support::{batch, run, small_config};

const BUDGET: usize = 12;
const LOGS: usize = 40;
const ROUNDS: u64 = 30;

#[test]
fn logs_outnumbering_descriptors_keep_working() {
    descriptors::set_budget(BUDGET);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let mut logs = Vec::new();
        for i in 0..LOGS {
            let log = PartitionLog::open(root.join(format!("p{i}")), small_config())
                .await
                .unwrap();
            assert!(descriptors::open() <= BUDGET);
            logs.push(log);
        }
        // Round-robin appends: every log's files are reopened over and over;
        // segments roll (64 KiB) so each log also holds closed segments.
        let mut peak = 0;
        for round in 0..ROUNDS {
            for (i, log) in logs.iter().enumerate() {
                let id = round * 1000 + i as u64;
                log.append(batch(id, 3, 900, id as i64)).await.unwrap();
                peak = peak.max(descriptors::open());
            }
        }
        assert!(peak <= BUDGET, "{peak} files open, budget {BUDGET}");
        let stats = open_files::stats();
        assert!(stats.reopened > 0 && stats.closed_idle > 0, "{stats:?}");
        for (i, log) in logs.iter().enumerate() {
            let mut offset = 0;
            for round in 0..ROUNDS {
                let id = round * 1000 + i as u64;
                let got = log.read(offset, 1).await.unwrap();
                let want = batch(id, 3, 900, id as i64);
                // From the attributes on: the log sets base offset and epoch.
                assert_eq!(&got[21..want.len()], &want[21..], "log {i} round {round}");
                offset += 3;
            }
            assert!(log.segment_count() > 1, "log {i} rolled");
        }
        for log in logs {
            log.close().await.unwrap();
        }
        // Closing leaves no descriptor cached (those of dropped handles are
        // closed, and their slots given back, by the next open).
        assert_eq!(
            open_files::stats().open,
            0,
            "closing gives every descriptor back"
        );
        // Reopened from disk: still all there.
        let log = PartitionLog::open(root.join("p7"), small_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), ROUNDS as i64 * 3);
        log.close().await.unwrap();
    });
}
