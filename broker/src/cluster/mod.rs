//! Cluster metadata: the state ([`state`]), the commands that change it
//! ([`command`]), where it is kept ([`store`]), and the controller that
//! decides, persists and publishes changes ([`controller`]).

pub mod command;
pub mod controller;
pub mod state;
pub mod store;

pub use command::{apply, CommandError, Draft, MetadataCommand};
pub use controller::{summary, ChangeError, Controller, OpenFailure, Placement};
pub use state::{partition_dir, validate_topic_name, ClusterMeta, PartitionMeta, TopicMeta};
