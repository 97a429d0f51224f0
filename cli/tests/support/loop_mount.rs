//! A small ext4 filesystem on a loop device, for disk-full tests (needs
//! root and loop devices, as CI has). Unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopMount {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopMount {
    pub fn new(size_mib: u64) -> LoopMount {
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

    pub fn path(&self) -> &Path {
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
