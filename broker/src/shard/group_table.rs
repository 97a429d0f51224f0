//! The groups one shard coordinates, in memory: the groups of the
//! `__consumer_offsets` partitions it owns, replayed from each partition's
//! log on first use (after a restart the groups and their offsets come
//! back), and the answers waiting on them, keyed by [`Token`]. The requests
//! that change them are in [`crate::groups::coordinator`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use rill_net::kafka_protocol::ResponseError;
use rill_storage::batch;

use crate::partition::Partition;
use rill_groups::group::{Group, GroupLimits, JoinReply, SyncReply, Token};
use rill_groups::records::OffsetsRecord;

pub(crate) fn now_ms() -> i64 {
    batch::now_ms()
}

/// An answer waiting for the group to decide.
pub(crate) enum Waiter {
    Join(async_channel::Sender<JoinReply>),
    Sync(async_channel::Sender<SyncReply>),
}

/// The groups of the offsets partitions one shard owns.
pub struct GroupTable {
    pub groups: RefCell<HashMap<String, Group>>,
    loaded: RefCell<HashSet<i32>>,
    loading: async_lock::Mutex<()>,
    pub(crate) waiters: RefCell<HashMap<Token, Waiter>>,
    next_token: Cell<Token>,
    pub limits: GroupLimits,
}

impl GroupTable {
    pub fn new(limits: GroupLimits) -> GroupTable {
        GroupTable {
            groups: RefCell::default(),
            loaded: RefCell::default(),
            loading: async_lock::Mutex::new(()),
            waiters: RefCell::default(),
            next_token: Cell::new(1),
            limits,
        }
    }

    pub(crate) fn token(&self) -> Token {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    /// Replays partition `partition` of the offsets topic into memory the
    /// first time it is needed.
    pub async fn ensure_loaded(
        &self,
        partition: i32,
        part: &Partition,
    ) -> Result<(), ResponseError> {
        if self.loaded.borrow().contains(&partition) {
            return Ok(());
        }
        let _loading = self.loading.lock().await;
        if self.loaded.borrow().contains(&partition) {
            return Ok(());
        }
        let now = now_ms();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let (mut at, end) = (part.log_start_offset(), part.high_watermark());
        let mut replayed = 0usize;
        while at < end {
            let data = part.read(at, 1 << 20).await.map_err(|e| {
                tracing::error!(partition, error = %e, "reading the offsets topic failed");
                ResponseError::CoordinatorNotAvailable
            })?;
            let mut records = Vec::new();
            let next = batch::decode_batches(&data, at, &mut records).map_err(|e| {
                tracing::error!(partition, error = %e, "the offsets topic holds a corrupt batch");
                ResponseError::CoordinatorNotAvailable
            })?;
            for r in records {
                let Some(key) = r.key else { continue };
                let Some(rec) = OffsetsRecord::decode(&key, r.value.as_deref()) else {
                    continue;
                };
                replayed += 1;
                match rec {
                    OffsetsRecord::Offset {
                        group,
                        topic,
                        partition,
                        value,
                    } => {
                        let g = groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group, now, self.limits));
                        match value {
                            Some(c) => {
                                g.offsets.insert((topic, partition), c);
                            }
                            None => {
                                g.offsets.remove(&(topic, partition));
                            }
                        }
                    }
                    OffsetsRecord::Group { group, value } => match value {
                        Some(snapshot) => {
                            // A classic group now: any consumer-protocol state is over.
                            let offsets =
                                groups.remove(&group).map(|g| g.offsets).unwrap_or_default();
                            let mut g = Group::restore(&group, snapshot, now, self.limits);
                            g.offsets = offsets;
                            groups.insert(group, g);
                        }
                        None => {
                            groups.remove(&group);
                        }
                    },
                    OffsetsRecord::ConsumerGroup { group, value } => match value {
                        Some(cg) => {
                            // A consumer-protocol group now: its classic part is empty.
                            let offsets =
                                groups.remove(&group).map(|g| g.offsets).unwrap_or_default();
                            let mut g = Group::new(&group, now, self.limits);
                            g.offsets = offsets;
                            g.consumer = Some(cg.restore(now, &self.limits.consumer));
                            groups.insert(group, g);
                        }
                        None => {
                            if let Some(g) = groups.get_mut(&group) {
                                g.consumer = None;
                            }
                        }
                    },
                }
            }
            match next {
                Some(n) if n > at => at = n,
                _ => break,
            }
        }
        if replayed > 0 {
            tracing::info!(
                partition,
                records = replayed,
                groups = groups.len(),
                "loaded consumer groups"
            );
        }
        self.groups.borrow_mut().extend(groups);
        self.loaded.borrow_mut().insert(partition);
        Ok(())
    }

    /// Drops a group that holds nothing (a failed first join, say).
    pub(crate) fn prune(&self, group: &str) {
        let mut groups = self.groups.borrow_mut();
        if groups.get(group).is_some_and(|g| {
            g.is_empty() && g.offsets.is_empty() && g.generation == 0 && g.consumer.is_none()
        }) {
            groups.remove(group);
        }
    }
}
