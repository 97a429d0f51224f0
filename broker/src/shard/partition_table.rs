//! The partitions a shard has open, by topic name then partition index, so
//! a lookup by `&str` allocates nothing.

use std::collections::HashMap;
use std::rc::Rc;

use crate::shard::Partition;

#[derive(Default)]
pub struct PartitionTable {
    by_topic: HashMap<String, HashMap<i32, Rc<Partition>>>,
}

impl PartitionTable {
    pub fn len(&self) -> usize {
        self.by_topic.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<Partition>> {
        self.by_topic.get(topic)?.get(&partition)
    }

    pub fn insert(&mut self, topic: String, partition: i32, p: Rc<Partition>) {
        self.by_topic.entry(topic).or_default().insert(partition, p);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let parts = self.by_topic.get_mut(topic)?;
        let removed = parts.remove(&partition);
        if parts.is_empty() {
            self.by_topic.remove(topic);
        }
        removed
    }

    /// Every open partition with its key (a snapshot: callers await while
    /// iterating, and the table may change meanwhile).
    pub fn snapshot(&self) -> Vec<((String, i32), Rc<Partition>)> {
        self.by_topic
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(&i, p)| ((t.clone(), i), p.clone())))
            .collect()
    }

    /// Every open partition (without the keys: a sweep over 100,000
    /// partitions copies no names).
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.by_topic
            .values()
            .flat_map(|p| p.values().cloned())
            .collect()
    }

    /// Removes and returns every partition.
    pub fn drain(&mut self) -> Vec<((String, i32), Rc<Partition>)> {
        let all = self.snapshot();
        self.by_topic.clear();
        all
    }
}
