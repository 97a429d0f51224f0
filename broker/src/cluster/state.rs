//! The cluster state: topics, their ids, partition placement on shards, and
//! config overrides. Changed only by [`apply`](super::command::apply)ing
//! commands; persisted by [`store`](super::store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::command::{apply, MetadataCommand};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionMeta {
    /// The shard (core) that owns the partition on this broker.
    pub shard: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionMeta>,
    /// Config overrides; everything else takes the broker defaults.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterMeta {
    pub cluster_id: String,
    /// Bumped on every change.
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Dynamic broker configs by resource name: `""` for the cluster-wide
    /// default, a node id for one broker (see `broker_config`).
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The first producer id not yet handed out (see `AllocateProducerIds`).
    #[serde(default)]
    pub next_producer_id: i64,
}

/// Directory of one partition's log.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join("topics").join(format!("{topic}-{partition}"))
}

impl ClusterMeta {
    /// A cluster with no topics and no dynamic configs.
    pub fn empty(cluster_id: &str) -> ClusterMeta {
        ClusterMeta {
            cluster_id: cluster_id.to_string(),
            version: 0,
            topics: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    /// Partitions owned by each shard.
    fn load_per_shard(&self, shards: usize) -> Vec<usize> {
        let mut load = vec![0; shards];
        for t in self.topics.values() {
            for p in &t.partitions {
                if p.shard < shards {
                    load[p.shard] += 1;
                }
            }
        }
        load
    }

    /// Shards for `n` new partitions: each goes to the least-loaded shard.
    pub fn place(&self, n: usize, shards: usize) -> Vec<PartitionMeta> {
        let mut load = self.load_per_shard(shards);
        (0..n)
            .map(|_| {
                let shard = (0..shards)
                    .min_by_key(|&s| (load[s], s))
                    .expect("at least one shard");
                load[shard] += 1;
                PartitionMeta { shard }
            })
            .collect()
    }

    /// Commands that re-place partitions whose shard no longer exists (fewer
    /// cores than last run), each on the least-loaded shard.
    pub fn fit_to_shards(&self, shards: usize) -> Vec<MetadataCommand> {
        let mut state = self.clone();
        let mut moves = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.shard >= shards {
                    let to = state.place(1, shards).remove(0);
                    let command = MetadataCommand::MovePartition {
                        topic: t.id,
                        partition: i as i32,
                        to,
                    };
                    apply(&mut state, &command).expect("the partition exists");
                    moves.push(command);
                }
            }
        }
        moves
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }
}

/// Kafka's topic name rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be `{name}`"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters, the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains `{c}`; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_placement() {
        assert!(validate_topic_name("orders.v1_eu-2").is_ok());
        for bad in ["", ".", "..", "a/b", "sp ace", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        let mut meta = ClusterMeta::empty("c");
        let parts = meta.place(5, 2);
        assert_eq!(
            parts.iter().map(|p| p.shard).collect::<Vec<_>>(),
            vec![0, 1, 0, 1, 0]
        );
        meta.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: parts,
                configs: BTreeMap::new(),
            },
        );
        assert_eq!(meta.place(1, 2)[0].shard, 1);
        let moves = meta.fit_to_shards(1);
        assert_eq!(moves.len(), 2, "{moves:?}");
        for m in &moves {
            apply(&mut meta, m).unwrap();
        }
        assert!(meta.topics["t"].partitions.iter().all(|p| p.shard == 0));
        assert!(meta.fit_to_shards(1).is_empty());
    }
}
