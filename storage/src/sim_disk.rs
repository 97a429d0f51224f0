//! A disk in memory for deterministic crash tests (the TigerBeetle and
//! FoundationDB habit): each file keeps what the process sees and what is
//! durable, plus the writes and truncations since its last `fdatasync`. A
//! simulated crash ([`SimDisk::crash`]) keeps the durable contents, replays a
//! chosen number of the pending operations in order (they reached the
//! device), and tears the one after them: only some of its 512-byte sectors
//! land. A new name (a created file or directory) is durable once its
//! parent directory is synced (or the whole filesystem is): a crash before
//! that loses the file, as a crash may on a real filesystem. Removals and
//! renames are durable at once (a rename keeps whether its file's name is
//! new). A file never synced comes back with whatever of its writes landed.
//! Preallocated space reads as zeros.
//! Its clock starts at 0 and moves only with [`SimDisk::advance_ms`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::io::{Clock, Disk, IoBuffer, SegmentFile};

const SECTOR: usize = 512;

#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, data: Vec<u8> },
    Truncate(u64),
    Extend(u64),
}

#[derive(Debug, Clone, Default)]
struct FileData {
    /// What reads see.
    live: Vec<u8>,
    /// What survived the last `fdatasync`.
    durable: Vec<u8>,
    /// Operations since then, in order.
    pending: Vec<Op>,
}

fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write {
            position,
            data: bytes,
        } => {
            let at = *position as usize;
            if data.len() < at + bytes.len() {
                data.resize(at + bytes.len(), 0);
            }
            data[at..at + bytes.len()].copy_from_slice(bytes);
        }
        Op::Truncate(len) => data.truncate(*len as usize),
        Op::Extend(len) => {
            if data.len() < *len as usize {
                data.resize(*len as usize, 0);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, FileData>,
    dirs: Vec<PathBuf>,
    /// Files and directories created since their parent was last synced.
    new_names: std::collections::BTreeSet<PathBuf>,
    syncs: u64,
    /// The simulated wall clock (ms); moves only when told to.
    now_ms: i64,
    /// Changes to files and names so far (writes, truncations, syncs,
    /// creations, removals, renames).
    mutations: u64,
    /// After this many more changes every change fails: the process died.
    mutations_left: Option<u64>,
    /// With [`SimDisk::with_latency`]: the state of the generator that
    /// picks how long each write and sync takes.
    latency: Option<u64>,
}

impl State {
    /// Counts one change, or refuses it once the process is "dead".
    fn check_alive(&mut self) -> io::Result<()> {
        match &mut self.mutations_left {
            Some(0) => return Err(io::Error::other("simulated process death")),
            Some(n) => *n -= 1,
            None => {}
        }
        self.mutations += 1;
        Ok(())
    }
}

/// An in-memory [`Disk`]; cheap to clone (all clones are the same disk).
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Rc<RefCell<State>>,
}

/// How much of a crash's pending writes land.
#[derive(Debug, Clone, Copy)]
pub struct CrashPlan {
    /// Pending operations of each file that reached the device whole.
    pub landed: usize,
    /// Sectors of the next write that landed (the torn write).
    pub torn_sectors: usize,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A disk whose writes and syncs take time: each yields to the other
    /// tasks 0–3 times (chosen from `seed`) before it happens, so
    /// operations started together finish in varying orders, as on a
    /// device (a step's sync may finish before an earlier step's write).
    pub fn with_latency(seed: u64) -> SimDisk {
        let disk = SimDisk::default();
        disk.state.borrow_mut().latency = Some(seed | 1);
        disk
    }

    /// Waits as long as this operation takes (nothing without latency).
    async fn delay(&self) {
        let turns = {
            let mut s = self.state.borrow_mut();
            match &mut s.latency {
                Some(x) => {
                    // xorshift64
                    *x ^= *x << 13;
                    *x ^= *x >> 7;
                    *x ^= *x << 17;
                    *x % 4
                }
                None => 0,
            }
        };
        for _ in 0..turns {
            futures_lite::future::yield_now().await;
        }
    }

    /// Moves the simulated clock forward.
    pub fn advance_ms(&self, ms: i64) {
        self.state.borrow_mut().now_ms += ms;
    }

    /// Changes made to files and names so far.
    pub fn mutations(&self) -> u64 {
        self.state.borrow().mutations
    }

    /// Lets `n` more changes through, then fails every change after them,
    /// as if the process were killed there: with [`SimDisk::crash`]
    /// afterwards, a test stops an operation at any of its steps.
    pub fn die_after(&self, n: u64) {
        self.state.borrow_mut().mutations_left = Some(n);
    }

    /// `fdatasync` and filesystem sync calls so far.
    pub fn syncs(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// The disk a restart finds: per file, the durable contents, then the
    /// first `plan.landed` pending operations, then `plan.torn_sectors`
    /// sectors of the next one if it is a write. Open files of the old disk
    /// keep writing to the old one, which is the point: the process is gone.
    pub fn crash(&self, plan: CrashPlan) -> SimDisk {
        let s = self.state.borrow();
        // A name is lost with its directory's: `a/b/c` needs `a/b` and `a`.
        let lost = |path: &Path| path.ancestors().any(|p| s.new_names.contains(p));
        let mut files = BTreeMap::new();
        for (path, f) in &s.files {
            if lost(path) {
                continue;
            }
            let mut data = f.durable.clone();
            for op in f.pending.iter().take(plan.landed) {
                apply(&mut data, op);
            }
            if let Some(Op::Write {
                position,
                data: bytes,
            }) = f.pending.get(plan.landed)
            {
                let n = (plan.torn_sectors * SECTOR).min(bytes.len());
                apply(
                    &mut data,
                    &Op::Write {
                        position: *position,
                        data: bytes[..n].to_vec(),
                    },
                );
            }
            files.insert(
                path.clone(),
                FileData {
                    live: data.clone(),
                    durable: data,
                    pending: Vec::new(),
                },
            );
        }
        SimDisk {
            state: Rc::new(RefCell::new(State {
                files,
                dirs: s.dirs.iter().filter(|d| !lost(d)).cloned().collect(),
                new_names: Default::default(),
                syncs: 0,
                now_ms: s.now_ms,
                mutations: 0,
                mutations_left: None,
                latency: s.latency,
            })),
        }
    }

    /// Flips one bit of a file's stored bytes (what the process sees and
    /// what is durable): the medium went bad under data already written.
    /// Returns false if the file does not hold that byte.
    pub fn flip_bit(&self, path: &Path, position: u64, bit: u8) -> bool {
        let mut s = self.state.borrow_mut();
        let Some(f) = s.files.get_mut(path) else {
            return false;
        };
        let at = position as usize;
        if at >= f.durable.len() || at >= f.live.len() {
            return false;
        }
        f.durable[at] ^= 1 << (bit % 8);
        f.live[at] ^= 1 << (bit % 8);
        true
    }

    /// The files under `dir` (names only), durable or not.
    pub fn files_under(&self, dir: &Path) -> Vec<PathBuf> {
        let s = self.state.borrow();
        s.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }

    /// The bytes a file holds now, as the process sees them.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(|f| f.live.clone())
    }

    fn open(&self, path: &Path, create: bool, truncate: bool) -> io::Result<SimFile> {
        let mut s = self.state.borrow_mut();
        if !s.files.contains_key(path) {
            if !create {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            s.check_alive()?;
            s.files.insert(path.to_path_buf(), FileData::default());
            s.new_names.insert(path.to_path_buf());
        }
        let file = SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
        };
        drop(s);
        if truncate {
            file.op(Op::Truncate(0))?;
        }
        Ok(file)
    }
}

/// A file of a [`SimDisk`].
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    path: PathBuf,
}

impl SimFile {
    fn op(&self, op: Op) -> io::Result<()> {
        let mut s = self.disk.state.borrow_mut();
        s.check_alive()?;
        if let Some(f) = s.files.get_mut(&self.path) {
            apply(&mut f.live, &op);
            f.pending.push(op);
        }
        Ok(())
    }

    fn read(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.disk.state.borrow();
        let f = s
            .files
            .get(&self.path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let start = (position as usize).min(f.live.len());
        let end = (start + len).min(f.live.len());
        Ok(f.live[start..end].to_vec())
    }
}

/// A write buffer of a [`SimDisk`].
#[derive(Debug)]
pub struct SimBuffer(Vec<u8>);

impl IoBuffer for SimBuffer {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn trim_to_size(&mut self, len: usize) {
        self.0.truncate(len)
    }
}

impl SegmentFile for SimFile {
    type Buffer = SimBuffer;
    type Read = Vec<u8>;
    fn alloc_buffer(&self, len: usize) -> SimBuffer {
        SimBuffer(vec![0; len])
    }
    async fn read_at_aligned(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        self.read(position, len)
    }
    async fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        self.read(position, len)
    }
    async fn write_at(&self, buf: SimBuffer, position: u64) -> io::Result<usize> {
        self.disk.delay().await;
        let n = buf.0.len();
        self.op(Op::Write {
            position,
            data: buf.0,
        })?;
        Ok(n)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.disk.delay().await;
        let mut s = self.disk.state.borrow_mut();
        s.check_alive()?;
        s.syncs += 1;
        if let Some(f) = s.files.get_mut(&self.path) {
            f.durable = f.live.clone();
            f.pending.clear();
        }
        Ok(())
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.op(Op::Truncate(len))
    }
    async fn pre_allocate(&self, len: u64, keep_size: bool) -> io::Result<()> {
        if !keep_size {
            self.op(Op::Extend(len))?;
        }
        Ok(())
    }
    async fn file_size(&self) -> io::Result<u64> {
        let s = self.disk.state.borrow();
        s.files
            .get(&self.path)
            .map(|f| f.live.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    async fn remove(&self) -> io::Result<()> {
        self.disk.remove_file(&self.path)
    }
    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Clock for SimDisk {
    fn now_ms(&self) -> i64 {
        self.state.borrow().now_ms
    }
}

impl Disk for SimDisk {
    type File = SimFile;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if !s.dirs.iter().any(|d| d == dir) {
            s.dirs.push(dir.to_path_buf());
            s.new_names.insert(dir.to_path_buf());
        }
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.borrow();
        let names: Vec<String> = s
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        if names.is_empty() && !s.dirs.iter().any(|d| d == dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(names)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let s = self.state.borrow();
        s.files
            .get(path)
            .map(|f| f.live.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.check_alive()?;
        s.new_names.remove(path);
        match s.files.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.check_alive()?;
        let data = s
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.files.insert(to.to_path_buf(), data);
        if s.new_names.remove(from) {
            s.new_names.insert(to.to_path_buf());
        } else {
            s.new_names.remove(to);
        }
        Ok(())
    }
    async fn open_rw(&self, path: &Path) -> io::Result<SimFile> {
        self.open(path, true, false)
    }
    async fn open_read(&self, path: &Path) -> io::Result<SimFile> {
        self.open(path, false, false)
    }
    async fn create_truncate(&self, path: &Path) -> io::Result<SimFile> {
        self.open(path, true, true)
    }
    /// The names created in `dir` become durable (not `dir`'s own: that
    /// takes a sync of its parent).
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.check_alive()?;
        s.new_names.retain(|p| p.parent() != Some(dir));
        Ok(())
    }
    /// Every file of the disk becomes durable (one filesystem), counted as
    /// one sync.
    async fn sync_filesystem(&self, _dir: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.check_alive()?;
        s.syncs += 1;
        for f in s.files.values_mut() {
            f.durable = f.live.clone();
            f.pending.clear();
        }
        s.new_names.clear();
        Ok(())
    }
}
