//! Working around glommio's io_uring polling probe.
//!
//! glommio decides, per device and thread, whether polled I/O (IOPOLL) works
//! by reading offset 0 of the first `DmaFile` opened there. On an empty file
//! that read returns 0 bytes successfully before the kernel checks anything,
//! so glommio wrongly enables polling, and every later read on a device
//! without poll queues (virtio, most cloud disks) fails with EOPNOTSUPP.
//! Opening a file that holds data first makes the probe see the truth; the
//! answer is cached for the thread.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

thread_local! {
    static PRIMED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    /// Parents of directories found on a primed device: every partition's
    /// directory shares its parent with thousands of others, and an open of
    /// 100,000 partitions then asks the filesystem nothing here.
    static PRIMED_PARENTS: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// Makes sure glommio's polling probe for the device holding `dir` has run
/// against a non-empty file on this thread. Cheap after the first call.
pub async fn prime_for(dir: &Path) -> Result<()> {
    let parent = dir.parent();
    if parent.is_some_and(|p| PRIMED_PARENTS.with(|k| k.borrow().iter().any(|q| q == p))) {
        return Ok(());
    }
    let remember = || {
        if let Some(p) = parent {
            PRIMED_PARENTS.with(|k| k.borrow_mut().push(p.to_path_buf()));
        }
    };
    let dev = std::fs::metadata(dir)
        .map_err(|e| StorageError::io("inspecting the data directory", e))?
        .dev();
    if PRIMED.with(|p| p.borrow().contains(&dev)) {
        remember();
        return Ok(());
    }
    let path = dir.join(format!(".dma-probe-{}", std::process::id()));
    let result: Result<()> = async {
        let mut f = std::fs::File::create(&path)
            .map_err(|e| StorageError::io("writing the I/O probe file", e))?;
        f.write_all(&[0xA5u8; 4096])
            .map_err(|e| StorageError::io("writing the I/O probe file", e))?;
        drop(f);
        let file = glommio::io::DmaFile::open(&path)
            .await
            .map_err(|e| StorageError::io("opening the I/O probe file", e))?;
        let _ = file.close().await;
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&path);
    result?;
    PRIMED.with(|p| p.borrow_mut().insert(dev));
    remember();
    Ok(())
}
