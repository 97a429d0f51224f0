//! Rill's partition log engine.
//!
//! A [`PartitionLog`] is one partition's ordered, offset-addressed log of Kafka
//! RecordBatch v2 batches, stored as segments in a directory and written with
//! `O_DIRECT` through io_uring (glommio). Principal pieces:
//!
//! - [`batch`]: the RecordBatch v2 format, re-exported from `rill-record`
//!   (validating and patching batches without re-encoding them).
//! - [`io`]: the file operations the log needs, as traits: the real disk
//!   ([`io::DmaDisk`]) and a simulated one that crashes ([`sim_disk::SimDisk`]);
//!   [`descriptors`]: the open-file budget the real disk's files draw on.
//! - [`appender`]: aligned direct-I/O writes with several in flight.
//! - [`segment`], [`offset_index`], [`time_index`], [`index_file`]: segments and their sparse indexes.
//! - [`checkpoint`], [`scan`], and [`log`]'s recovery: torn tails are cut, synced data is never;
//!   the checkpoint also keeps a replica's Raft [`HardState`] (term, vote, commit).
//! - [`leader_epochs`]: leader epoch → first offset (Kafka's leader-epoch checkpoint), for
//!   log matching and OffsetsForLeaderEpoch; a replica appends a leader's batches unchanged
//!   with [`PartitionLog::append_replica`].
//! - [`read_cache`]: recent batches served from memory to tailing readers.
//! - [`retention`]: which closed segments time and size limits delete.
//! - [`compaction`]: log compaction (`cleanup.policy=compact`): the newest
//!   record per key stays; the pass itself is [`PartitionLog::clean`].
//!
//! ```no_run
//! use bytes::Bytes;
//! use rill_storage::{batch, LogConfig, PartitionLog};
//!
//! glommio::LocalExecutor::default().run(async {
//!     let log = PartitionLog::open("/tmp/rill-doc/p0", LogConfig::default()).await.unwrap();
//!     let records = [batch::RecordSpec { value: Some(b"hello"), ..Default::default() }];
//!     let info = log.append(Bytes::from(batch::encode_uncompressed(0, &records))).await.unwrap();
//!     let bytes = log.read(info.base_offset, 1 << 20).await.unwrap();
//!     assert_eq!(batch::BatchHeader::parse(&bytes).unwrap().base_offset, info.base_offset);
//!     log.close().await.unwrap();
//! });
//! ```

pub mod appender;
/// The RecordBatch v2 format (the `rill-record` crate).
pub use rill_record as batch;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod descriptors;
pub mod device;
pub mod error;
pub mod index_file;
pub mod io;
pub mod journal;
pub mod leader_epochs;
pub mod log;
pub mod log_store;
pub mod offset_index;
pub mod open_files;
pub mod producer_state;
pub mod read_ahead;
pub mod read_cache;
pub mod retention;
pub mod scan;
pub mod segment;
pub mod signal;
pub mod sim_disk;
pub mod sync_stats;
pub mod time_index;

pub use checkpoint::HardState;
pub use config::{CompactionConfig, FlushPolicy, LogConfig};
pub use error::StorageError;
pub use log::{AppendInfo, PartitionLog, TimestampOffset};
pub use log::{CleanOutcome, RetentionOutcome};
pub use log_store::{LogStore, MemLog};
