//! A shard's journal in the broker (see [`rill_storage::journal`]): one
//! per shard under `<data>/journal/shard-<n>`, through which every
//! partition the shard opens makes its batches durable — one write and one
//! sync per step for all of them. Before the shards start, what the last
//! run's journals hold is given back to the partitions that lack it
//! ([`replay_all`]), whichever shard they are on now.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rill_storage::io::DmaDisk;
use rill_storage::journal::{self, Journal, JournalConfig, JournalName, ReplayReport};
use rill_storage::{PartitionLog, StorageError};
use uuid::Uuid;

use super::Shard;
use crate::cluster::{partition_dir, ClusterMeta};
use crate::config::{broker_config, topic_config, BrokerConfig};

/// Size of a shard journal's first files: filled with zeros when made, so
/// a step's sync changes no file-system metadata. Files grow to
/// [`JOURNAL_FILE_BYTES_MAX`] while each fills within a second (see
/// `JournalConfig::max_file_bytes`), so a broker that writes little never
/// zero-fills large ones. On a small file system a journal file takes at
/// most 1/64 of the free space (at least 4 MiB): a step that does not fit
/// makes its partitions sync their own segments.
pub const JOURNAL_FILE_BYTES_START: u64 = 32 << 20;
/// Largest size a journal file grows to (many-partitions-1000, pinned, on
/// a direct-I/O scratch disk: 19–34 % more throughput with 128 MiB files
/// than with 32 MiB ones, in six alternated pairs).
pub const JOURNAL_FILE_BYTES_MAX: u64 = 128 << 20;
const JOURNAL_FILE_BYTES_MIN: u64 = 4 << 20;

/// Bytes free for an unprivileged writer on the file system of `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs with a valid C string and a zeroed out-struct.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0)
        .then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

/// The first and the largest size of the journal's files in `data_dir`.
fn journal_file_bytes(data_dir: &Path) -> (u64, u64) {
    let by_space = free_bytes(data_dir).map_or(JOURNAL_FILE_BYTES_MAX, |f| f / 64);
    let fit = |most: u64| by_space.clamp(JOURNAL_FILE_BYTES_MIN, most) & !((1 << 20) - 1);
    (fit(JOURNAL_FILE_BYTES_START), fit(JOURNAL_FILE_BYTES_MAX))
}

fn journals_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

pub fn journal_dir(data_dir: &Path, shard: usize) -> PathBuf {
    journals_dir(data_dir).join(format!("shard-{shard}"))
}

/// Whether the last run left journal files (an unclean stop).
pub fn any_to_replay(data_dir: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(journals_dir(data_dir)) else {
        return false;
    };
    dirs.flatten().any(|d| {
        std::fs::read_dir(d.path()).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".wal"))
        })
    })
}

/// A partition's name in a journal: its directory under the data directory
/// and its topic's id (a topic deleted and made again is another one).
pub fn journal_name(topic: &str, partition: i32, topic_id: Uuid) -> JournalName {
    JournalName {
        name: format!("topics/{topic}-{partition}"),
        id: *topic_id.as_bytes(),
    }
}

/// The (topic, partition) a journal name stands for, if `meta` still has it
/// in the same incarnation.
fn resolve(meta: &ClusterMeta, name: &JournalName) -> Option<(String, i32)> {
    let rest = name.name.strip_prefix("topics/")?;
    let (topic, partition) = rest.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    let t = meta.topics.get(topic)?;
    (t.id == Uuid::from_bytes(name.id) && (partition as usize) < t.partitions.len())
        .then(|| (topic.to_string(), partition))
}

/// Replays every shard journal of the last run into the partitions that
/// lack their batches, then removes the journals. Runs on a glommio
/// executor before the shards start.
pub async fn replay_all(
    config: &BrokerConfig,
    meta: &ClusterMeta,
) -> Result<ReplayReport, StorageError> {
    let mut total = ReplayReport::default();
    let Ok(entries) = std::fs::read_dir(journals_dir(&config.data_dir)) else {
        return Ok(total);
    };
    let defaults = broker_config::effective_defaults(&config.topic_defaults, meta, config.node_id);
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let opened: Rc<RefCell<Vec<PartitionLog>>> = Rc::default();
        let o = opened.clone();
        let report = journal::replay(&DmaDisk, &dir, |name| {
            let target = resolve(meta, &name).map(|(topic, partition)| {
                let t = &meta.topics[&topic];
                let log_config = topic_config::log_config(&t.configs, &defaults, 1 << 20, None);
                (
                    partition_dir(&config.data_dir, &topic, partition),
                    log_config,
                )
            });
            let o = o.clone();
            async move {
                let Some((path, log_config)) = target else {
                    return Ok(None);
                };
                let log = PartitionLog::open(&path, log_config).await?;
                o.borrow_mut().push(log.clone());
                Ok(Some(log))
            }
        })
        .await?;
        let opened: Vec<PartitionLog> = std::mem::take(&mut *opened.borrow_mut());
        for log in opened {
            log.close().await?;
        }
        if report.records > 0 {
            tracing::info!(journal = %dir.display(), files = report.files, records = report.records,
                given_back = report.appended, orphaned = report.orphaned, "replayed a shard journal");
        }
        total.files += report.files;
        total.records += report.records;
        total.appended += report.appended;
        total.orphaned += report.orphaned;
    }
    Ok(total)
}

impl Shard {
    /// Starts this shard's journal; without one (it could not be made)
    /// each partition syncs its own segment, as durable, only slower.
    pub async fn start_journal(&self) {
        let dir = journal_dir(&self.config.data_dir, self.id);
        let (file_bytes, max_file_bytes) = journal_file_bytes(&self.config.data_dir);
        let config = JournalConfig {
            file_bytes,
            max_file_bytes,
            ..JournalConfig::default()
        };
        match Journal::create(DmaDisk, &dir, config).await {
            Ok(j) => *self.journal.borrow_mut() = Some(j),
            Err(e) => tracing::error!(shard = self.id, journal = %dir.display(), error = %e,
                "cannot start the shard journal; partitions sync their own segments"),
        }
    }

    pub fn journal(&self) -> Option<Journal<DmaDisk>> {
        self.journal.borrow().clone()
    }
}
