//! Cluster metadata: topics, their ids, partition placement on shards, and
//! config overrides. Persisted as one small JSON document, replaced
//! atomically (write, fsync, rename, fsync the directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
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
}

const FILE: &str = "cluster.json";

pub fn meta_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meta")
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
        }
    }

    /// Reads the metadata, or starts a new cluster id for an empty data dir.
    pub fn load_or_init(data_dir: &Path) -> anyhow::Result<ClusterMeta> {
        let path = meta_dir(data_dir).join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = ClusterMeta::empty(&Uuid::new_v4().simple().to_string()[..22]);
                meta.save(data_dir)?;
                Ok(meta)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Durably replaces the metadata file.
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let dir = meta_dir(data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
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

    /// Re-places partitions whose shard no longer exists (fewer cores than
    /// last run). Returns whether anything moved.
    pub fn fit_to_shards(&mut self, shards: usize) -> bool {
        let mut moved = false;
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            for i in 0..self.topics[&name].partitions.len() {
                if self.topics[&name].partitions[i].shard >= shards {
                    let p = self.place(1, shards).remove(0);
                    self.topics.get_mut(&name).expect("exists").partitions[i] = p;
                    moved = true;
                }
            }
        }
        if moved {
            self.version += 1;
        }
        moved
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
        assert!(meta.fit_to_shards(1));
        assert!(meta.topics["t"].partitions.iter().all(|p| p.shard == 0));
    }
}
