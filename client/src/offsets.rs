//! Partitions and their offsets: [`TopicPartition`], [`OffsetSpec`], and
//! ListOffsets sent to each partition's leader (used by the admin client and
//! by the consumer's seeks).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::cluster::Client;
use crate::error::{Error, Result};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Which offset [`Admin::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// First offset whose record timestamp is at or after this (ms).
    Timestamp(i64),
}

impl OffsetSpec {
    pub(crate) fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// ListOffsets sent to each partition's leader.
pub(crate) async fn list_offsets_at(
    client: &Client,
    partitions: &[(TopicPartition, OffsetSpec)],
) -> Result<Vec<(TopicPartition, Result<(i64, i64)>)>> {
    let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut answers: Vec<Option<Result<(i64, i64)>>> = vec![None; partitions.len()];
    for (i, (tp, _)) in partitions.iter().enumerate() {
        let n = client.ensure_topic(&tp.topic).await?;
        if !(0..n).contains(&tp.partition) {
            answers[i] = Some(Err(Error::UnknownTopicOrPartition(tp.to_string())));
            continue;
        }
        let leader = match client.leader(&tp.topic, tp.partition) {
            Some(l) => Some(l),
            None => {
                client.refresh(Some(&[&tp.topic])).await?;
                client.leader(&tp.topic, tp.partition)
            }
        };
        match leader {
            Some(l) => by_leader.entry(l).or_default().push(i),
            None => {
                answers[i] = Some(Err(Error::kafka(
                    ResponseError::LeaderNotAvailable.code(),
                    format!("{tp} has no leader"),
                    None,
                )))
            }
        }
    }
    // A request names each partition once: asking for two offsets of one
    // partition takes two requests.
    let mut rounds: Vec<(i32, Vec<usize>)> = Vec::new();
    for (leader, indexes) in by_leader {
        // The n-th ask for a partition goes into round n (a map, not a
        // scan: a hundred thousand partitions in one call).
        let mut mine: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<(&str, i32), usize> = HashMap::new();
        for i in indexes {
            let tp = &partitions[i].0;
            let round = seen.entry((tp.topic.as_str(), tp.partition)).or_insert(0);
            if *round == mine.len() {
                mine.push(Vec::new());
            }
            mine[*round].push(i);
            *round += 1;
        }
        rounds.extend(mine.into_iter().map(|r| (leader, r)));
    }
    for (leader, indexes) in rounds {
        let conn = client.connection(leader).await?;
        let version = conn.version(ApiKey::ListOffsets)?;
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        let mut topic_at: HashMap<&str, usize> = HashMap::new();
        for &i in &indexes {
            let (tp, spec) = &partitions[i];
            let mut p = ListOffsetsPartition::default();
            p.partition_index = tp.partition;
            p.timestamp = spec.wire();
            if version >= 4 {
                p.current_leader_epoch = -1;
            }
            let at = *topic_at.entry(tp.topic.as_str()).or_insert_with(|| {
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
                topics.push(t);
                topics.len() - 1
            });
            topics[at].partitions.push(p);
        }
        request.topics = topics;
        let response = conn.send_versioned(&request, version).await?;
        let asked: HashMap<(&str, i32), usize> = indexes
            .iter()
            .map(|&i| {
                (
                    (partitions[i].0.topic.as_str(), partitions[i].0.partition),
                    i,
                )
            })
            .collect();
        for t in response.topics {
            for p in t.partitions {
                let Some(&i) = asked.get(&(t.name.0.as_str(), p.partition_index)) else {
                    continue;
                };
                answers[i] = Some(
                    Error::check(p.error_code, || {
                        format!("listing offsets of {}", partitions[i].0)
                    })
                    .map(|_| (p.offset, p.timestamp)),
                );
            }
        }
    }
    Ok(partitions
        .iter()
        .zip(answers)
        .map(|((tp, _), a)| {
            (
                tp.clone(),
                a.unwrap_or_else(|| Err(Error::Protocol(format!("no answer for {tp}")))),
            )
        })
        .collect())
}
