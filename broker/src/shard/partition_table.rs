//! The partitions a shard has open, by topic name then partition index, so
//! a lookup by `&str` allocates nothing: one fast hash of the name (not
//! SipHash: every produced and fetched partition is looked up here), then
//! an index.

use std::collections::HashMap;
use std::rc::Rc;

use crate::shard::Partition;

/// A topic's open partitions on this shard, by index (`None`: not open
/// here), and how many are open.
#[derive(Default)]
struct Slots {
    by_index: Vec<Option<Rc<Partition>>>,
    open: usize,
}

#[derive(Default)]
pub struct PartitionTable {
    by_topic: HashMap<String, Slots, foldhash::fast::RandomState>,
}

impl PartitionTable {
    pub fn len(&self) -> usize {
        self.by_topic.values().map(|s| s.open).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<Partition>> {
        let index = usize::try_from(partition).ok()?;
        self.by_topic.get(topic)?.by_index.get(index)?.as_ref()
    }

    pub fn insert(&mut self, topic: String, partition: i32, p: Rc<Partition>) {
        let index = usize::try_from(partition).expect("partition indexes are not negative");
        let slots = self.by_topic.entry(topic).or_default();
        if slots.by_index.len() <= index {
            slots.by_index.resize(index + 1, None);
        }
        if slots.by_index[index].replace(p).is_none() {
            slots.open += 1;
        }
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let index = usize::try_from(partition).ok()?;
        let slots = self.by_topic.get_mut(topic)?;
        let removed = slots.by_index.get_mut(index)?.take();
        if removed.is_some() {
            slots.open -= 1;
        }
        if slots.open == 0 {
            self.by_topic.remove(topic);
        }
        removed
    }

    fn iter(&self) -> impl Iterator<Item = (&String, i32, &Rc<Partition>)> {
        self.by_topic.iter().flat_map(|(t, slots)| {
            slots
                .by_index
                .iter()
                .enumerate()
                .filter_map(move |(i, p)| Some((t, i as i32, p.as_ref()?)))
        })
    }

    /// Every open partition with its key (a snapshot: callers await while
    /// iterating, and the table may change meanwhile).
    pub fn snapshot(&self) -> Vec<((String, i32), Rc<Partition>)> {
        self.iter()
            .map(|(t, i, p)| ((t.clone(), i), p.clone()))
            .collect()
    }

    /// Every open partition (without the keys: a sweep over 100,000
    /// partitions copies no names).
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.iter().map(|(_, _, p)| p.clone()).collect()
    }

    /// Removes and returns every partition.
    pub fn drain(&mut self) -> Vec<((String, i32), Rc<Partition>)> {
        let all = self.snapshot();
        self.by_topic.clear();
        all
    }
}
