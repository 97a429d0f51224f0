//! A full disk: appends fail cleanly, nothing acknowledged is lost, and the
//! log takes appends again once space returns. Runs on a small loop-mounted
//! ext4 filesystem (needs root, as CI has).

mod support;

// The same loop mount as the broker's disk-full test.
#[path = "../../cli/tests/support/loop_mount.rs"]
mod loop_mount;

use loop_mount::LoopMount;
use rill_storage::{LogConfig, PartitionLog, StorageError};
use support::{batch, batch_id, run};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        write_buffer_bytes: 64 << 10,
        preallocate_bytes: 256 << 10,
        cache_bytes_max: 0,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

#[test]
fn appends_fail_cleanly_when_the_disk_is_full_and_resume_when_space_returns() {
    let mount = LoopMount::new(16);
    let data = mount.path().join("p0");
    let filler = mount.path().join("filler");
    run(move || async move {
        // Take some space that will be given back later.
        std::fs::write(&filler, vec![1u8; 3 << 20]).unwrap();
        let log = PartitionLog::open(&data, config()).await.unwrap();
        let mut acked = Vec::new();
        let mut full_error = None;
        for id in 0..100_000u64 {
            match log.append(batch(id, 8, 1000, 0)).await {
                Ok(info) => acked.push((id, info.base_offset)),
                Err(e) => {
                    full_error = Some(e);
                    break;
                }
            }
        }
        let err = full_error.expect("a 16 MiB filesystem must fill up");
        assert!(
            matches!(err, StorageError::DiskFull { .. }),
            "expected DiskFull, got {err}"
        );
        assert!(
            acked.len() > 100,
            "only {} appends before the disk filled",
            acked.len()
        );
        let end = log.log_end_offset();
        // A second attempt fails the same way and changes nothing.
        let again = log.append(batch(1, 8, 1000, 0)).await;
        assert!(
            matches!(again, Err(StorageError::DiskFull { .. })),
            "second attempt: {again:?}"
        );
        assert_eq!(log.log_end_offset(), end);
        for (id, offset) in acked.iter().step_by(7) {
            assert_eq!(batch_id(&log.read(*offset, 1).await.unwrap()), *id);
        }

        // Space returns: appends work again and continue the offsets.
        std::fs::remove_file(&filler).unwrap();
        let info = log.append(batch(777_777, 2, 100, 0)).await.unwrap();
        assert_eq!(info.base_offset, end);
        log.close().await.unwrap();

        let log = PartitionLog::open(&data, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), info.last_offset + 1);
        for (id, offset) in &acked {
            assert_eq!(batch_id(&log.read(*offset, 1).await.unwrap()), *id);
        }
        assert_eq!(
            batch_id(&log.read(info.base_offset, 1).await.unwrap()),
            777_777
        );
    });
}
