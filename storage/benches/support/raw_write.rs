//! The disk's own sequential write bandwidth, for benches to report ratios
//! against: O_DIRECT writes of `buffer_bytes`, `in_flight` at a time, into a
//! preallocated file, one fdatasync at the end.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use glommio::io::OpenOptions;

/// MB/s of writing `total` bytes to a file in `dir` (removed afterwards).
pub async fn raw_write_mb_per_s(
    dir: &Path,
    total: u64,
    buffer_bytes: usize,
    in_flight: usize,
) -> f64 {
    let path = dir.join("raw.dat");
    let file = Rc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .unwrap(),
    );
    file.pre_allocate(total, true).await.unwrap();
    let start = Instant::now();
    let mut pending = Vec::new();
    let mut pos = 0u64;
    while pos < total {
        let mut buf = file.alloc_dma_buffer(buffer_bytes);
        buf.as_bytes_mut().fill((pos >> 20) as u8);
        let (f, at) = (file.clone(), pos);
        pending.push(glommio::spawn_local(async move {
            f.write_at(buf, at).await.unwrap()
        }));
        if pending.len() == in_flight {
            pending.remove(0).await;
        }
        pos += buffer_bytes as u64;
    }
    for t in pending {
        t.await;
    }
    file.fdatasync().await.unwrap();
    let rate = total as f64 / 1e6 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).unwrap();
    rate
}
