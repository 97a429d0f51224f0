//! Metadata commands: every change to the cluster state is one of these,
//! applied by one pure function. Whatever is not deterministic (topic ids,
//! placement) is decided before a command is made, so applying the same
//! commands to the same state always gives the same state: the log a
//! controller quorum will replicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::{ClusterMeta, PartitionMeta, TopicMeta};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: Vec<PartitionMeta>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        id: Uuid,
    },
    /// Appends partitions to a topic.
    AddPartitions {
        topic: Uuid,
        partitions: Vec<PartitionMeta>,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        topic: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the dynamic configs of one broker resource (`""` is the
    /// cluster-wide default); an empty map removes the resource.
    SetBrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
    },
    /// Moves a partition to another shard of this broker.
    MovePartition {
        topic: Uuid,
        partition: i32,
        to: PartitionMeta,
    },
    /// Hands `broker` the next `count` producer ids
    /// (`[next_producer_id, next_producer_id + count)`), so no id is ever
    /// given out twice, across restarts and (later) brokers.
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
}

impl MetadataCommand {
    /// The command creating topic `name` with id `id` and `partitions`
    /// partitions placed on the least-loaded shards of `state`.
    pub fn create_topic(
        state: &ClusterMeta,
        name: &str,
        id: uuid::Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        shards: usize,
    ) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.to_string(),
            id,
            partitions: state.place(partitions as usize, shards),
            configs,
        }
    }
}

/// A command that does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic id {0} already names a topic")]
    TopicIdTaken(Uuid),
    #[error("no topic has id {0}")]
    UnknownTopic(Uuid),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: Uuid, partition: i32 },
    #[error("no producer ids left (next {next}, asked for {count})")]
    ProducerIdsExhausted { next: i64, count: i64 },
}

/// Applies `command` to `state`; on error `state` is unchanged. Every applied
/// command advances `state.version` by one.
pub fn apply(state: &mut ClusterMeta, command: &MetadataCommand) -> Result<(), CommandError> {
    match command {
        MetadataCommand::CreateTopic {
            name,
            id,
            partitions,
            configs,
        } => {
            if state.topics.contains_key(name) {
                return Err(CommandError::TopicExists(name.clone()));
            }
            if state.topic_by_id(*id).is_some() {
                return Err(CommandError::TopicIdTaken(*id));
            }
            state.topics.insert(
                name.clone(),
                TopicMeta {
                    name: name.clone(),
                    id: *id,
                    partitions: partitions.clone(),
                    configs: configs.clone(),
                },
            );
        }
        MetadataCommand::DeleteTopic { id } => {
            let name = topic_name(state, *id)?;
            state.topics.remove(&name);
        }
        MetadataCommand::AddPartitions { topic, partitions } => {
            topic_mut(state, *topic)?
                .partitions
                .extend(partitions.iter().cloned());
        }
        MetadataCommand::SetTopicConfigs { topic, configs } => {
            topic_mut(state, *topic)?.configs = configs.clone();
        }
        MetadataCommand::SetBrokerConfigs { resource, configs } => {
            if configs.is_empty() {
                state.broker_configs.remove(resource);
            } else {
                state
                    .broker_configs
                    .insert(resource.clone(), configs.clone());
            }
        }
        MetadataCommand::MovePartition {
            topic,
            partition,
            to,
        } => {
            let unknown = CommandError::UnknownPartition {
                topic: *topic,
                partition: *partition,
            };
            let index = usize::try_from(*partition).map_err(|_| unknown.clone())?;
            *topic_mut(state, *topic)?
                .partitions
                .get_mut(index)
                .ok_or(unknown)? = to.clone();
        }
        MetadataCommand::AllocateProducerIds { count, .. } => {
            let next = state.next_producer_id;
            state.next_producer_id = next.checked_add(*count).filter(|_| *count > 0).ok_or(
                CommandError::ProducerIdsExhausted {
                    next,
                    count: *count,
                },
            )?;
        }
    }
    state.version += 1;
    Ok(())
}

fn topic_name(state: &ClusterMeta, id: Uuid) -> Result<String, CommandError> {
    state
        .topic_by_id(id)
        .map(|t| t.name.clone())
        .ok_or(CommandError::UnknownTopic(id))
}

fn topic_mut(state: &mut ClusterMeta, id: Uuid) -> Result<&mut TopicMeta, CommandError> {
    let name = topic_name(state, id)?;
    Ok(state.topics.get_mut(&name).expect("found by id"))
}

/// The state a change is decided against, and the commands decided so far.
/// Each command is applied as it is pushed, so a request naming several
/// topics checks each against the ones before it.
#[derive(Debug, Clone)]
pub struct Draft {
    state: ClusterMeta,
    commands: Vec<MetadataCommand>,
}

impl Draft {
    pub fn new(state: ClusterMeta) -> Draft {
        Draft {
            state,
            commands: Vec::new(),
        }
    }

    /// The state with every pushed command applied.
    pub fn state(&self) -> &ClusterMeta {
        &self.state
    }

    pub fn push(&mut self, command: MetadataCommand) -> Result<(), CommandError> {
        apply(&mut self.state, &command)?;
        self.commands.push(command);
        Ok(())
    }

    pub fn into_parts(self) -> (ClusterMeta, Vec<MetadataCommand>) {
        (self.state, self.commands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: u128, n: usize) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(id),
            partitions: vec![PartitionMeta { shard: 0 }; n],
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn the_same_commands_give_the_same_state() {
        let commands = vec![
            create("a", 1, 2),
            create("b", 2, 1),
            MetadataCommand::AddPartitions {
                topic: Uuid::from_u128(1),
                partitions: vec![PartitionMeta { shard: 1 }],
            },
            MetadataCommand::SetTopicConfigs {
                topic: Uuid::from_u128(2),
                configs: [("retention.ms".to_string(), "5".to_string())].into(),
            },
            MetadataCommand::SetBrokerConfigs {
                resource: String::new(),
                configs: [("log.retention.ms".to_string(), "9".to_string())].into(),
            },
            MetadataCommand::MovePartition {
                topic: Uuid::from_u128(1),
                partition: 0,
                to: PartitionMeta { shard: 1 },
            },
            MetadataCommand::DeleteTopic {
                id: Uuid::from_u128(2),
            },
        ];
        let run = || {
            let mut s = ClusterMeta::empty("c");
            for c in &commands {
                apply(&mut s, c).unwrap();
            }
            s
        };
        let (x, y) = (run(), run());
        assert_eq!(x, y);
        assert_eq!(x.version, commands.len() as u64);
        assert_eq!(
            x.topics["a"]
                .partitions
                .iter()
                .map(|p| p.shard)
                .collect::<Vec<_>>(),
            [1, 0, 1]
        );
        assert!(!x.topics.contains_key("b"));
        assert_eq!(x.broker_configs[""]["log.retention.ms"], "9");
    }

    #[test]
    fn a_command_that_does_not_fit_changes_nothing() {
        let mut s = ClusterMeta::empty("c");
        apply(&mut s, &create("a", 1, 1)).unwrap();
        let before = s.clone();
        assert_eq!(
            apply(&mut s, &create("a", 3, 1)),
            Err(CommandError::TopicExists("a".into()))
        );
        assert_eq!(
            apply(&mut s, &create("z", 1, 1)),
            Err(CommandError::TopicIdTaken(Uuid::from_u128(1)))
        );
        let gone = Uuid::from_u128(7);
        assert_eq!(
            apply(&mut s, &MetadataCommand::DeleteTopic { id: gone }),
            Err(CommandError::UnknownTopic(gone))
        );
        assert!(apply(
            &mut s,
            &MetadataCommand::MovePartition {
                topic: Uuid::from_u128(1),
                partition: 4,
                to: PartitionMeta { shard: 0 }
            }
        )
        .is_err());
        assert_eq!(s, before);

        let mut draft = Draft::new(s);
        draft.push(create("b", 2, 1)).unwrap();
        assert!(
            draft.push(create("b", 4, 1)).is_err(),
            "checked against the pushed ones"
        );
        let (state, commands) = draft.into_parts();
        assert_eq!(commands.len(), 1);
        assert!(state.topics.contains_key("b"));
    }
}
