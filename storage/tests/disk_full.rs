//! A full disk: appends fail cleanly, nothing acknowledged is lost, and the
//! log takes appends again once space returns. Runs on a small loop-mounted
//! ext4 filesystem (needs root, as CI has).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use rill_storage::{LogConfig, PartitionLog, StorageError};
use support::{batch, batch_id, run};

struct LoopMount {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopMount {
    fn new(size_mib: u64) -> LoopMount {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        assert!(
            ok(Command::new("mkfs.ext4").arg("-q").arg("-F").arg(&image)),
            "mkfs.ext4 failed (e2fsprogs needed)"
        );
        assert!(
            ok(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mountpoint)),
            "mounting a loop filesystem failed: this test needs root and loop devices"
        );
        LoopMount {
            mountpoint,
            _dir: dir,
        }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopMount {
    /// Unmounts, retrying while the kernel still holds files of the test's
    /// io_uring (their release is deferred after the ring closes), and
    /// detaches lazily as a last resort so no mount outlives the test.
    fn drop(&mut self) {
        let quiet = |cmd: &mut Command| {
            cmd.stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..50 {
            if quiet(Command::new("umount").arg(&self.mountpoint)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = quiet(Command::new("umount").arg("-l").arg(&self.mountpoint));
    }
}

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
