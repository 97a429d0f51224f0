//! The hardware's limits, measured in the same run as the workload: O_DIRECT
//! sequential write bandwidth of the broker's disk (the tuner's probe) and
//! loopback TCP bandwidth.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Limits {
    /// Best O_DIRECT sequential write MB/s (1 MiB blocks, 4 in flight).
    pub disk_write_mb_s: Option<f64>,
    /// O_DIRECT sequential writes of 1 MiB, each followed by fdatasync: the
    /// ceiling of a durable log writing once per commit.
    pub disk_write_synced_mb_s: Option<f64>,
    /// O_DIRECT sequential reads, 1 MiB blocks, 4 in flight: the ceiling of
    /// a consumer reading a backlog that is no longer in memory.
    pub disk_read_mb_s: Option<f64>,
    pub disk_dir: Option<String>,
    pub loopback_tcp_mb_s: Option<f64>,
}

/// O_DIRECT sequential writes of 1 MiB blocks, 4 in flight, `mib` MiB, on
/// the device holding `dir`; the same with an fdatasync after each; and
/// reads of what was written.
pub fn disk_write_mb_s(dir: &Path, mib: u64) -> anyhow::Result<(f64, Option<f64>, f64)> {
    let mut o = rill_tuning::probe::ProbeOptions::new(dir);
    o.block_sizes = vec![1 << 20];
    o.queue_depths = vec![4];
    o.bytes_per_test = mib << 20;
    o.sync_samples = 10;
    let disk = rill_tuning::probe::run(o)?.disk;
    Ok((disk.write_mb_s, disk.write_synced_mb_s, disk.read_mb_s))
}

/// One TCP stream over 127.0.0.1 for `time`, 1 MiB writes.
pub fn loopback_tcp_mb_s(time: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < time {
        s.write_all(&buf)?;
    }
    drop(s);
    let total = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread"))??;
    Ok(total as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// A loop device that serves its reads and writes through the host's page
/// cache (`mount -o loop` makes one, and so does `../shared/tools/bounded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferedLoop {
    pub device: String,
    pub backing_file: String,
}

/// The loop device holding `dir` if it runs without direct I/O. Its
/// `O_DIRECT` writes become buffered writes to the backing file, and each
/// flush writes those back: a disk-bound workload then measures that layer
/// (on this project's machine `max-throughput-1kb-1p` ran at 75–185 MB/s on
/// such a device and at 650–850 MB/s once it used direct I/O, with the
/// same build in the same hour; the same-build spread of
/// `many-partitions-1000` went from 36–116 MB/s to 155–174 MB/s).
pub fn buffered_loop_device(dir: &Path) -> Option<BufferedLoop> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    // Loop devices have block major 7.
    if major != 7 {
        return None;
    }
    let sys = format!("/sys/dev/block/{major}:{minor}/loop");
    let dio = std::fs::read_to_string(format!("{sys}/dio")).ok()?;
    if dio.trim() != "0" {
        return None;
    }
    let backing_file = std::fs::read_to_string(format!("{sys}/backing_file"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Some(BufferedLoop {
        device: format!("/dev/loop{minor}"),
        backing_file,
    })
}

/// Warns (as `tool`) when `dir` is on a buffered loop device, with the
/// command that switches it to direct I/O.
pub fn warn_if_buffered_loop(tool: &str, dir: &Path) {
    if let Some(l) = buffered_loop_device(dir) {
        eprintln!(
            "{tool}: warning: {} is on {}, a loop device without direct I/O (backing file {}): \
             its writes go through the host's page cache and its syncs write that back, so a \
             disk-bound result measures the loop layer, not the disk; \
             `losetup --direct-io=on {}` passes them straight to the backing disk",
            dir.display(),
            l.device,
            l.backing_file,
            l.device
        );
    }
}

/// Both limits; a failed measurement is reported and left out.
pub fn measure(disk_dir: Option<&Path>) -> Limits {
    let mut limits = Limits::default();
    if let Some(dir) = disk_dir {
        limits.disk_dir = Some(dir.display().to_string());
        match disk_write_mb_s(dir, 256) {
            Ok((v, synced, read)) => {
                limits.disk_write_mb_s = Some(v);
                limits.disk_write_synced_mb_s = synced;
                limits.disk_read_mb_s = Some(read);
            }
            Err(e) => eprintln!("rill-bench: disk probe on {} failed: {e:#}", dir.display()),
        }
    }
    match loopback_tcp_mb_s(Duration::from_millis(1500)) {
        Ok(v) => limits.loopback_tcp_mb_s = Some(v),
        Err(e) => eprintln!("rill-bench: loopback measurement failed: {e:#}"),
    }
    limits
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_loop_device_without_direct_io_is_flagged() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            super::buffered_loop_device(std::path::Path::new("/nonexistent/x")),
            None
        );
        let dir = std::env::current_dir().unwrap();
        let major = libc::major(std::fs::metadata(&dir).unwrap().dev());
        match super::buffered_loop_device(&dir) {
            None => {}
            Some(l) => {
                // Only ever a loop device (block major 7) in buffered mode.
                assert_eq!(major, 7, "{l:?}");
                let minor = l.device.trim_start_matches("/dev/loop");
                let dio =
                    std::fs::read_to_string(format!("/sys/dev/block/7:{minor}/loop/dio")).unwrap();
                assert_eq!(dio.trim(), "0");
            }
        }
    }

    #[test]
    fn loopback_moves_bytes() {
        let v = super::loopback_tcp_mb_s(std::time::Duration::from_millis(200)).unwrap();
        assert!(v > 10.0, "{v} MB/s");
    }
}
