//! The file I/O the log needs, behind two small traits: a [`Disk`] opens,
//! lists and removes files in a directory; a [`SegmentFile`] does aligned
//! reads and writes, `fdatasync`, truncate and `fallocate`. [`DmaDisk`] is
//! the real one (glommio, `O_DIRECT` through io_uring);
//! [`SimDisk`](crate::sim_disk::SimDisk) keeps files in memory and, at a
//! simulated crash, loses what was not synced and tears the last write, so
//! the log's recovery runs against the faults it exists for.

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, OpenOptions, ReadResult};

use crate::open_files::{self, Mode};

/// A write buffer, aligned for direct I/O where the disk needs it.
pub trait IoBuffer: 'static {
    fn as_bytes(&self) -> &[u8];
    fn as_bytes_mut(&mut self) -> &mut [u8];
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shortens the buffer to `len` bytes (a multiple of the alignment).
    fn trim_to_size(&mut self, len: usize);
}

/// One open file of a log directory.
#[allow(async_fn_in_trait)] // single-threaded executors: futures need not be Send
pub trait SegmentFile: 'static {
    type Buffer: IoBuffer;
    type Read: Deref<Target = [u8]> + 'static;
    fn alloc_buffer(&self, len: usize) -> Self::Buffer;
    /// Reads `len` bytes at `position` (both aligned); fewer at the end of the file.
    async fn read_at_aligned(&self, position: u64, len: usize) -> io::Result<Self::Read>;
    /// Reads `len` bytes at `position` (any alignment); fewer at the end.
    async fn read_at(&self, position: u64, len: usize) -> io::Result<Self::Read>;
    /// Writes the whole buffer at `position` (aligned).
    async fn write_at(&self, buf: Self::Buffer, position: u64) -> io::Result<usize>;
    async fn fdatasync(&self) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves space up to `len`; the file size grows too unless `keep_size`.
    async fn pre_allocate(&self, len: u64, keep_size: bool) -> io::Result<()>;
    async fn file_size(&self) -> io::Result<u64>;
    /// Removes the file's directory entry.
    async fn remove(&self) -> io::Result<()>;
    async fn close(self) -> io::Result<()>;
}

/// Wall-clock time in milliseconds, as the log sees it (segment age for
/// `segment_ms`, checkpoint intervals). Retention takes its `now` as an
/// argument.
pub trait Clock {
    fn now_ms(&self) -> i64;
}

/// Where a log's files live, and the clock it reads.
#[allow(async_fn_in_trait)]
pub trait Disk: Clock + Clone + 'static {
    type File: SegmentFile;
    /// Creates `dir` and its parents.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Size of the file at `path`.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file within the directory, replacing `to` if it exists.
    /// Durable only once the directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Opens for reading and writing, creating the file if missing.
    async fn open_rw(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for reading.
    async fn open_read(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates the file, or empties it, for writing.
    async fn create_truncate(&self, path: &Path) -> io::Result<Self::File>;
    /// Makes the directory's entries (created and removed files) durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes everything written to the filesystem holding `dir` durable —
    /// every file's data and metadata, names, the device's cache — in one
    /// call (`syncfs`) instead of an `fdatasync` per file: what a shard does
    /// for many logs at once (a retiring journal file, a stop).
    async fn sync_filesystem(&self, dir: &Path) -> io::Result<()>;
}

/// The real disk: glommio's `DmaFile`, `O_DIRECT` through io_uring.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaDisk;

impl IoBuffer for DmaBuffer {
    fn as_bytes(&self) -> &[u8] {
        DmaBuffer::as_bytes(self)
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        DmaBuffer::as_bytes_mut(self)
    }
    fn len(&self) -> usize {
        DmaBuffer::len(self)
    }
    fn trim_to_size(&mut self, len: usize) {
        DmaBuffer::trim_to_size(self, len)
    }
}

/// A file of the real disk: a path and a mode, its descriptor kept in this
/// thread's cache of open files ([`open_files`](crate::open_files)),
/// closed when idle for long enough that the budget needs it back and
/// reopened by the next operation. Dropping or closing the handle closes
/// the descriptor.
pub struct DmaSegment {
    id: u64,
    path: PathBuf,
    mode: Mode,
}

impl DmaSegment {
    async fn open(path: &Path, options: &OpenOptions, mode: Mode) -> io::Result<DmaSegment> {
        if let Some(dir) = path.parent() {
            crate::device::prime_for(dir)
                .await
                .map_err(io::Error::other)?;
        }
        let id = open_files::next_id();
        drop(open_files::open(id, path, options, false).await?);
        Ok(DmaSegment {
            id,
            path: path.to_path_buf(),
            mode,
        })
    }

    /// The descriptor, reopened if it was closed.
    async fn file(&self) -> io::Result<open_files::Lease> {
        match open_files::get(self.id) {
            Some(f) => Ok(f),
            None => open_files::reopen(self.id, &self.path, self.mode).await,
        }
    }
}

impl Drop for DmaSegment {
    fn drop(&mut self) {
        if let Some(opened) = open_files::forget(self.id) {
            open_files::drop_later(opened);
        }
    }
}

impl SegmentFile for DmaSegment {
    type Buffer = DmaBuffer;
    type Read = ReadResult;
    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        glommio::allocate_dma_buffer(len)
    }
    async fn read_at_aligned(&self, position: u64, len: usize) -> io::Result<ReadResult> {
        Ok(self
            .file()
            .await?
            .file
            .read_at_aligned(position, len)
            .await?)
    }
    async fn read_at(&self, position: u64, len: usize) -> io::Result<ReadResult> {
        Ok(self.file().await?.file.read_at(position, len).await?)
    }
    async fn write_at(&self, buf: DmaBuffer, position: u64) -> io::Result<usize> {
        Ok(self.file().await?.file.write_at(buf, position).await?)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        Ok(self.file().await?.file.fdatasync().await?)
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        Ok(self.file().await?.file.truncate(len).await?)
    }
    async fn pre_allocate(&self, len: u64, keep_size: bool) -> io::Result<()> {
        Ok(self.file().await?.file.pre_allocate(len, keep_size).await?)
    }
    async fn file_size(&self) -> io::Result<u64> {
        Ok(self.file().await?.file.file_size().await?)
    }
    async fn remove(&self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
    async fn close(self) -> io::Result<()> {
        match open_files::forget(self.id) {
            Some(f) => f.close().await,
            None => Ok(()),
        }
    }
}

impl Clock for DmaDisk {
    fn now_ms(&self) -> i64 {
        rill_record::now_ms()
    }
}

impl Disk for DmaDisk {
    type File = DmaSegment;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir(dir)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn open_rw(&self, path: &Path) -> io::Result<DmaSegment> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        DmaSegment::open(path, &options, Mode::ReadWrite).await
    }
    async fn open_read(&self, path: &Path) -> io::Result<DmaSegment> {
        DmaSegment::open(path, OpenOptions::new().read(true), Mode::Read).await
    }
    async fn create_truncate(&self, path: &Path) -> io::Result<DmaSegment> {
        // Reopened without truncating (and readable, as ReadWrite is).
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        DmaSegment::open(path, &options, Mode::ReadWrite).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // glommio's `Directory::open` hands a relative path to openat(-1, …),
        // which fails with EBADF; its file opens resolve relative paths, this
        // does not. An absolute path works for both.
        let dir = std::path::absolute(dir)?;
        let d = glommio::io::Directory::open(&dir).await?;
        Ok(d.sync().await?)
    }
    async fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        // No io_uring operation syncs a filesystem: glommio's blocking pool
        // runs it, so the shard goes on serving meanwhile.
        let dir = std::fs::File::open(dir)?;
        let started = std::time::Instant::now();
        let synced = glommio::executor()
            .spawn_blocking(move || syncfs(&dir))
            .await;
        crate::sync_stats::record(crate::sync_stats::SyncKind::Filesystem, started);
        synced
    }
}

/// Makes everything written to the filesystem holding `file` durable
/// (blocking; [`Disk::sync_filesystem`] runs it off the shard).
pub fn syncfs(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a descriptor `file` owns. Since Linux 5.8 it
    // reports write-back errors of the filesystem.
    match unsafe { libc::syncfs(file.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// How often [`keep_reactor_awake`] wakes an executor.
pub const REACTOR_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(100);

/// A bound on any wakeup an executor misses. It was added for stalls seen in
/// `storage/tests/crash.rs` (a recovery asleep in `io_uring_enter` for
/// minutes, until a debugger's attach interrupted the wait); their likely
/// cause was glommio 0.9 parking with runnable tasks (the cause of a hung
/// broker start, shown there the same way), fixed in the vendored copy
/// (third_party/glommio, `storage/tests/executor_start.rs`). A timer always
/// pending makes the reactor sleep with a timeout, so a stall of that kind
/// lasts at most [`REACTOR_HEARTBEAT`], at the cost of one wakeup per
/// heartbeat. It cannot help before its task first runs, as at an
/// executor's start. Call once on every executor that does I/O; the task
/// ends with the executor.
pub fn keep_reactor_awake() {
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(REACTOR_HEARTBEAT).await;
        }
    })
    .detach();
}

/// The names in `dir` (without `.` and `..`) through `getdents64` into one
/// reused buffer: `readdir` allocates 32 KiB per directory opened, and a
/// start of 100,000 partitions lists 100,000 directories.
fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    use std::os::unix::ffi::OsStrExt;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 8192]);
    }
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let listed = BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut names = Vec::new();
        loop {
            // SAFETY: the buffer outlives the call and its length is passed.
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(names);
            }
            let mut at = 0usize;
            while at < n as usize {
                // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                let name = &buf[at + 19..at + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if name != b"." && name != b".." {
                    if let Ok(name) = std::str::from_utf8(name) {
                        names.push(name.to_string());
                    }
                }
                at += reclen;
            }
        }
    });
    // SAFETY: opened above, closed once.
    unsafe { libc::close(fd) };
    listed
}

#[cfg(test)]
mod tests {
    /// More names than one `getdents64` buffer holds, none of `.` and `..`,
    /// and a missing directory is NotFound (a new partition's open makes it).
    #[test]
    fn list_dir_reads_every_name() {
        let tmp = tempfile::tempdir().unwrap();
        let mut want: Vec<String> = (0..600)
            .map(|i| format!("{i:020}.a-fairly-long-file-name"))
            .collect();
        for name in &want {
            std::fs::write(tmp.path().join(name), b"").unwrap();
        }
        let mut got = super::list_dir(tmp.path()).unwrap();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let missing = super::list_dir(&tmp.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
