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
    fn loopback_moves_bytes() {
        let v = super::loopback_tcp_mb_s(std::time::Duration::from_millis(200)).unwrap();
        assert!(v > 10.0, "{v} MB/s");
    }
}
