//! Measuring the device under a data directory: sequential `O_DIRECT`
//! write and read bandwidth by block size and queue depth through io_uring
//! (glommio), fdatasync latency, and the CPU topology.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};

use crate::io_properties::{DiskProperties, IoProperties, Measurement};
use crate::{topology, TuneError};

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub dir: PathBuf,
    /// Bytes written (and read) for each block size × queue depth.
    pub bytes_per_test: u64,
    pub block_sizes: Vec<u64>,
    pub queue_depths: Vec<u32>,
    /// fdatasync calls timed for the latency figures.
    pub sync_samples: usize,
}

impl ProbeOptions {
    pub fn new(dir: impl Into<PathBuf>) -> ProbeOptions {
        ProbeOptions {
            dir: dir.into(),
            bytes_per_test: 64 << 20,
            block_sizes: vec![4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20],
            queue_depths: vec![1, 4, 16],
            sync_samples: 200,
        }
    }
}

fn mb_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Runs the probe on its own glommio executor and returns the properties.
pub fn run(options: ProbeOptions) -> Result<IoProperties, TuneError> {
    std::fs::create_dir_all(&options.dir)
        .map_err(|e| TuneError::io(format!("creating {}", options.dir.display()), e))?;
    glommio::LocalExecutorBuilder::default()
        .name("rill-probe")
        .spawn(move || async move { probe_disk(&options).await })
        .map_err(|e| {
            TuneError::io(
                "starting the probe executor",
                std::io::Error::other(e.to_string()),
            )
        })?
        .join()
        .map_err(|e| TuneError::io("running the probe", std::io::Error::other(e.to_string())))?
        .map(|disk| IoProperties {
            disk,
            cpu: topology::read(),
        })
}

async fn probe_disk(o: &ProbeOptions) -> Result<DiskProperties, TuneError> {
    rill_storage::device::prime_for(&o.dir).await?;
    let path = o
        .dir
        .join(format!(".rill-probe-{}.dat", std::process::id()));
    let result = measure_all(o, &path).await;
    let _ = std::fs::remove_file(&path);
    result
}

/// The probe file at `path`, emptied.
async fn empty_probe_file(path: &Path) -> Result<DmaFile, TuneError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map_err(|e| TuneError::io("creating the probe file", e))
}

/// The probe file at `path`, emptied and `total` bytes allocated.
async fn fresh_probe_file(path: &Path, total: u64) -> Result<Rc<DmaFile>, TuneError> {
    let file = empty_probe_file(path).await?;
    file.pre_allocate(total, false)
        .await
        .map_err(|e| TuneError::io("allocating the probe file", e))?;
    Ok(Rc::new(file))
}

async fn measure_all(o: &ProbeOptions, path: &Path) -> Result<DiskProperties, TuneError> {
    let mut measurements = Vec::new();
    for &block in &o.block_sizes {
        for &qd in &o.queue_depths {
            let total = (o.bytes_per_test / block).max(1) * block;
            let file = fresh_probe_file(path, total).await?;
            let write_mb_s = write_test(&file, total, block, qd).await?;
            let read_mb_s = read_test(&file, total, block, qd).await?;
            measurements.push(Measurement {
                block_bytes: block,
                queue_depth: qd,
                write_mb_s,
                read_mb_s,
            });
        }
    }
    let write_synced_mb_s = match o.block_sizes.iter().max() {
        Some(&block) => {
            let total = (o.bytes_per_test / block).max(1) * block;
            let file = fresh_probe_file(path, total).await?;
            Some(write_synced_test(&file, total, block).await?)
        }
        None => None,
    };
    let (fdatasync_p50_us, fdatasync_p99_us) = fdatasync_latency(path, o.sync_samples).await?;
    let (best_write_block_bytes, best_write_queue_depth) = best(&measurements);
    Ok(DiskProperties {
        path: o.dir.display().to_string(),
        write_mb_s: measurements
            .iter()
            .map(|m| m.write_mb_s)
            .fold(0.0, f64::max),
        read_mb_s: measurements.iter().map(|m| m.read_mb_s).fold(0.0, f64::max),
        best_write_block_bytes,
        best_write_queue_depth,
        fdatasync_p50_us,
        fdatasync_p99_us,
        write_synced_mb_s,
        measurements,
    })
}

/// Smallest block size within 95 % of the best write bandwidth, then the
/// smallest queue depth within 95 % of the best at that block size: the
/// cheapest setting that reaches the device's limit.
pub fn best(ms: &[Measurement]) -> (u64, u32) {
    let top = ms.iter().map(|m| m.write_mb_s).fold(0.0, f64::max);
    let mut blocks: Vec<u64> = ms
        .iter()
        .filter(|m| m.write_mb_s >= 0.95 * top)
        .map(|m| m.block_bytes)
        .collect();
    blocks.sort_unstable();
    let Some(&block) = blocks.first() else {
        return (1 << 20, 4);
    };
    let at_block: Vec<&Measurement> = ms.iter().filter(|m| m.block_bytes == block).collect();
    let top_at_block = at_block.iter().map(|m| m.write_mb_s).fold(0.0, f64::max);
    let qd = at_block
        .iter()
        .filter(|m| m.write_mb_s >= 0.95 * top_at_block)
        .map(|m| m.queue_depth)
        .min()
        .unwrap_or(4);
    (block, qd)
}

/// Sequential O_DIRECT writes of `block` bytes with `qd` in flight, then one
/// fdatasync; MB/s including the sync.
pub async fn write_test(
    file: &Rc<DmaFile>,
    total: u64,
    block: u64,
    qd: u32,
) -> Result<f64, TuneError> {
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut pos = 0;
    while pos < total {
        let mut buf = file.alloc_dma_buffer(block as usize);
        buf.as_bytes_mut().fill((pos / block) as u8);
        let f = file.clone();
        let at = pos;
        in_flight.push_back(glommio::spawn_local(
            async move { f.write_at(buf, at).await },
        ));
        if in_flight.len() >= qd as usize {
            in_flight
                .pop_front()
                .expect("non-empty")
                .await
                .map_err(|e| TuneError::io("probe write", e))?;
        }
        pos += block;
    }
    for t in in_flight {
        t.await.map_err(|e| TuneError::io("probe write", e))?;
    }
    file.fdatasync()
        .await
        .map_err(|e| TuneError::io("probe fdatasync", e))?;
    Ok(mb_s(total, start.elapsed()))
}

/// Sequential O_DIRECT writes of `block` bytes, each followed by an
/// fdatasync before the next starts (what a durable log does with one
/// write per commit); MB/s.
pub async fn write_synced_test(
    file: &Rc<DmaFile>,
    total: u64,
    block: u64,
) -> Result<f64, TuneError> {
    let start = Instant::now();
    let mut pos = 0;
    while pos < total {
        let mut buf = file.alloc_dma_buffer(block as usize);
        buf.as_bytes_mut().fill((pos / block) as u8);
        file.write_at(buf, pos)
            .await
            .map_err(|e| TuneError::io("probe write", e))?;
        file.fdatasync()
            .await
            .map_err(|e| TuneError::io("probe fdatasync", e))?;
        pos += block;
    }
    Ok(mb_s(total, start.elapsed()))
}

/// Sequential O_DIRECT reads of `block` bytes with `qd` in flight; MB/s.
pub async fn read_test(
    file: &Rc<DmaFile>,
    total: u64,
    block: u64,
    qd: u32,
) -> Result<f64, TuneError> {
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut pos = 0;
    while pos < total {
        let f = file.clone();
        let at = pos;
        in_flight.push_back(glommio::spawn_local(async move {
            f.read_at_aligned(at, block as usize).await.map(|r| r.len())
        }));
        if in_flight.len() >= qd as usize {
            in_flight
                .pop_front()
                .expect("non-empty")
                .await
                .map_err(|e| TuneError::io("probe read", e))?;
        }
        pos += block;
    }
    for t in in_flight {
        t.await.map_err(|e| TuneError::io("probe read", e))?;
    }
    Ok(mb_s(total, start.elapsed()))
}

/// p50 and p99 of a 4 KiB write followed by fdatasync, in microseconds.
async fn fdatasync_latency(path: &Path, samples: usize) -> Result<(u64, u64), TuneError> {
    let file = empty_probe_file(path).await?;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples.max(1) {
        let buf = file.alloc_dma_buffer(4096);
        let start = Instant::now();
        file.write_at(buf, (i as u64) * 4096)
            .await
            .map_err(|e| TuneError::io("probe write", e))?;
        file.fdatasync()
            .await
            .map_err(|e| TuneError::io("probe fdatasync", e))?;
        lat.push(start.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(block_bytes: u64, queue_depth: u32, write_mb_s: f64) -> Measurement {
        Measurement {
            block_bytes,
            queue_depth,
            write_mb_s,
            read_mb_s: 0.0,
        }
    }

    #[test]
    fn best_is_the_cheapest_setting_near_the_top() {
        let ms = [
            m(4096, 1, 50.0),
            m(4096, 16, 300.0),
            m(65536, 1, 400.0),
            m(65536, 4, 500.0),
            m(1 << 20, 4, 510.0),
        ];
        assert_eq!(best(&ms), (65536, 4));
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn probe_on_a_temp_dir_writes_a_valid_properties_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = ProbeOptions::new(dir.path());
        o.bytes_per_test = 2 << 20;
        o.block_sizes = vec![4096, 64 << 10];
        o.queue_depths = vec![1, 4];
        o.sync_samples = 20;
        let props = run(o).unwrap();
        assert_eq!(props.disk.measurements.len(), 4);
        assert!(props
            .disk
            .measurements
            .iter()
            .all(|m| m.write_mb_s > 0.0 && m.read_mb_s > 0.0));
        assert!(props.disk.fdatasync_p99_us >= props.disk.fdatasync_p50_us);
        let file = dir.path().join("io-properties.toml");
        props.write(&file).unwrap();
        let back = IoProperties::read(&file).unwrap();
        assert_eq!(
            back.disk.best_write_block_bytes,
            props.disk.best_write_block_bytes
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("probe")));
    }
}
