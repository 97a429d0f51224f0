//! The shards' snapshots summed into metric families and written in the
//! Prometheus text format (what `promtool check metrics` and every
//! Prometheus since 1.0 read), with the `prometheus` crate's encoder.

use std::collections::{BTreeMap, HashMap};

use prometheus::proto::{Bucket, Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Encoder;
use rill_net::kafka_protocol::messages::ApiKey;
use rill_net::kafka_protocol::ResponseError;
use rill_storage::sync_stats::{Histogram, SyncKind, LATENCY_BUCKETS_US};

use super::counters::{CleanerTotals, TopicTraffic};
use super::snapshot::ShardSnapshot;

/// What the broker says about itself beside its shards' snapshots.
#[derive(Debug, Clone)]
pub struct BrokerInfo {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    /// Whether each partition gets series of its own (off for brokers
    /// with very many partitions: the scrape then does not grow with them).
    pub partition_series: bool,
}

/// The text of a scrape. Families without samples (no errors yet, no
/// groups) are left out: the format has no empty family.
pub fn render(info: &BrokerInfo, shards: &[ShardSnapshot]) -> Result<String, String> {
    let families: Vec<MetricFamily> = families(info, shards)
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| format!("encoding the metrics: {e}"))?;
    String::from_utf8(out).map_err(|e| format!("encoding the metrics: {e}"))
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`).
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None | Some(ResponseError::Unknown(_)) => format!("UNKNOWN_{code}"),
        Some(e) => {
            let mut out = String::new();
            for (i, ch) in format!("{e:?}").chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

fn api_name(key: usize) -> Option<String> {
    ApiKey::try_from(key as i16).ok().map(|k| format!("{k:?}"))
}

struct Families(Vec<MetricFamily>);

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        self.0.push(f);
        self.0.last_mut().expect("just pushed")
    }

    fn counter(&mut self, name: &str, help: &str, samples: Vec<(Vec<(&str, String)>, f64)>) {
        let f = self.family(name, help, MetricType::COUNTER);
        for (labels, v) in samples {
            let mut m = metric(labels);
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
            f.mut_metric().push(m);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, samples: Vec<(Vec<(&str, String)>, f64)>) {
        let f = self.family(name, help, MetricType::GAUGE);
        for (labels, v) in samples {
            let mut m = metric(labels);
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
            f.mut_metric().push(m);
        }
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        samples: Vec<(Vec<(&str, String)>, Histogram)>,
    ) {
        let f = self.family(name, help, MetricType::HISTOGRAM);
        for (labels, h) in samples {
            let mut m = metric(labels);
            let mut ph = prometheus::proto::Histogram::default();
            ph.set_sample_count(h.count);
            ph.set_sample_sum(h.sum_us as f64 / 1e6);
            let mut cumulative = 0;
            let buckets = LATENCY_BUCKETS_US
                .iter()
                .zip(&h.buckets)
                .map(|(&bound, &n)| {
                    cumulative += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound as f64 / 1e6);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            ph.set_bucket(buckets);
            m.set_histogram(ph);
            f.mut_metric().push(m);
        }
    }
}

fn metric(labels: Vec<(&str, String)>) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .into_iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v);
                l
            })
            .collect(),
    );
    m
}

fn families(info: &BrokerInfo, shards: &[ShardSnapshot]) -> Vec<MetricFamily> {
    let mut f = Families(Vec::new());
    f.gauge(
        "rill_build_info",
        "The running broker's version (always 1).",
        vec![(vec![("version", info.version.to_string())], 1.0)],
    );
    f.gauge(
        "rill_uptime_seconds",
        "Seconds since the broker started.",
        vec![(vec![], info.uptime_seconds)],
    );
    f.gauge(
        "rill_ready",
        "1 once every shard serves its partitions, else 0.",
        vec![(vec![], if info.ready { 1.0 } else { 0.0 })],
    );

    // Requests, errors and latency by API.
    let mut apis: BTreeMap<String, (u64, Histogram)> = BTreeMap::new();
    for s in shards {
        for (key, a) in s.apis.iter().enumerate() {
            if a.requests == 0 {
                continue;
            }
            let Some(name) = api_name(key) else { continue };
            let e = apis.entry(name).or_default();
            e.0 += a.requests;
            e.1.merge(&a.latency);
        }
    }
    f.counter(
        "rill_requests_total",
        "Kafka requests answered, by API.",
        apis.iter()
            .map(|(api, (n, _))| (vec![("api", api.clone())], *n as f64))
            .collect(),
    );
    f.histogram(
        "rill_request_duration_seconds",
        "Time from a request's decoding to its answer being ready, by API (a produce with acks=all includes its durable step; a fetch includes its long poll).",
        apis.into_iter()
            .map(|(api, (_, h))| (vec![("api", api)], h))
            .collect(),
    );
    let mut errors: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in shards {
        for ((key, code), n) in &s.errors {
            let Some(api) = api_name(*key as usize) else {
                continue;
            };
            *errors.entry((api, error_name(*code))).or_default() += n;
        }
    }
    f.counter(
        "rill_request_errors_total",
        "Error codes in answers, by API and Kafka error name (one per partition, topic or group that has its own code).",
        errors
            .into_iter()
            .map(|((api, error), n)| (vec![("api", api), ("error", error)], n as f64))
            .collect(),
    );

    // Traffic by topic.
    let mut topics: BTreeMap<&str, TopicTraffic> = BTreeMap::new();
    for s in shards {
        for (t, traffic) in &s.topics {
            topics.entry(t.as_str()).or_default().merge(traffic);
        }
    }
    let by_topic = |pick: fn(&TopicTraffic) -> u64| -> Vec<(Vec<(&str, String)>, f64)> {
        topics
            .iter()
            .map(|(t, tr)| (vec![("topic", t.to_string())], pick(tr) as f64))
            .collect()
    };
    f.counter(
        "rill_topic_bytes_in_total",
        "Bytes of record batches produced to a topic.",
        by_topic(|t| t.bytes_in),
    );
    f.counter(
        "rill_topic_records_in_total",
        "Records produced to a topic.",
        by_topic(|t| t.records_in),
    );
    f.counter(
        "rill_topic_bytes_out_total",
        "Bytes of record batches fetched from a topic.",
        by_topic(|t| t.bytes_out),
    );
    f.counter(
        "rill_topic_records_out_total",
        "Records fetched from a topic (whole batches counted).",
        by_topic(|t| t.records_out),
    );

    // Partitions and their logs.
    let dormant: u64 = shards.iter().map(|s| s.partitions_dormant).sum();
    let open = shards
        .iter()
        .map(|s| s.partitions.len() as u64)
        .sum::<u64>()
        - dormant;
    let unopened: u64 = shards.iter().map(|s| s.partitions_unopened).sum();
    f.gauge(
        "rill_partitions",
        "Partitions this broker owns: open; dormant (serving from the last clean stop's record while the log opens behind); or unopened (failed to open; retried).",
        vec![
            (vec![("state", "open".to_string())], open as f64),
            (vec![("state", "dormant".to_string())], dormant as f64),
            (vec![("state", "unopened".to_string())], unopened as f64),
        ],
    );
    let segments: u64 = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.segments)
        .sum();
    let bytes: u64 = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.bytes)
        .sum();
    f.gauge(
        "rill_log_segments",
        "Segments of every open partition's log.",
        vec![(vec![], segments as f64)],
    );
    f.gauge(
        "rill_log_size_bytes",
        "Bytes of record batches in every open partition's log.",
        vec![(vec![], bytes as f64)],
    );
    let mut high_watermarks: HashMap<(&str, i32), i64> = HashMap::new();
    for p in shards.iter().flat_map(|s| &s.partitions) {
        high_watermarks.insert((p.topic.as_str(), p.partition), p.high_watermark);
    }
    if info.partition_series {
        let mut parts: Vec<_> = shards.iter().flat_map(|s| &s.partitions).collect();
        parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        // A partition's series of one gauge; `None` leaves the partition out.
        let per = |pick: fn(&super::snapshot::PartitionGauges) -> Option<f64>| {
            parts
                .iter()
                .filter_map(|p| {
                    let labels = vec![
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ];
                    Some((labels, pick(p)?))
                })
                .collect()
        };
        f.gauge(
            "rill_partition_log_start_offset",
            "A partition's first offset.",
            per(|p| Some(p.log_start as f64)),
        );
        f.gauge(
            "rill_partition_log_end_offset",
            "The offset after a partition's last record.",
            per(|p| Some(p.log_end as f64)),
        );
        f.gauge(
            "rill_partition_high_watermark",
            "The offset up to which a partition's records are visible to consumers.",
            per(|p| Some(p.high_watermark as f64)),
        );
        f.gauge(
            "rill_partition_segments",
            "Segments of a partition's log.",
            per(|p| Some(p.segments as f64)),
        );
        f.gauge(
            "rill_partition_size_bytes",
            "Bytes of record batches in a partition's log.",
            per(|p| Some(p.bytes as f64)),
        );
        f.gauge(
            "rill_partition_cleaned_offset",
            "A compacted partition's clean point: records before it were cleaned against every newer key.",
            per(|p| p.cleaned_to.map(|c| c as f64)),
        );
    }

    // The compaction cleaner.
    let mut cleaner = CleanerTotals::default();
    for s in shards {
        cleaner.merge(&s.cleaner);
    }
    let compacted: Vec<_> = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .filter_map(|p| Some((p, p.cleaned_to?)))
        .collect();
    f.gauge(
        "rill_cleaner_dirty_offsets",
        "Offsets of compacted partitions past their clean point, summed: what the cleaner has still to look at (falls after each pass).",
        vec![(
            vec![],
            compacted
                .iter()
                .map(|(p, cleaned)| (p.log_end - cleaned).max(0) as f64)
                .sum(),
        )],
    );
    for (name, help, value) in [
        (
            "rill_cleaner_passes_total",
            "Cleaner passes that rewrote segments.",
            cleaner.passes,
        ),
        (
            "rill_cleaner_segments_read_total",
            "Segments the cleaner rewrote.",
            cleaner.segments_read,
        ),
        (
            "rill_cleaner_segments_written_total",
            "Segments the cleaner's passes wrote in their place.",
            cleaner.segments_written,
        ),
        (
            "rill_cleaner_bytes_read_total",
            "Bytes of segments the cleaner rewrote.",
            cleaner.bytes_read,
        ),
        (
            "rill_cleaner_bytes_written_total",
            "Bytes of the segments the cleaner wrote.",
            cleaner.bytes_written,
        ),
        (
            "rill_cleaner_records_removed_total",
            "Records the cleaner removed (superseded values and expired tombstones).",
            cleaner.records_removed,
        ),
    ] {
        f.counter(name, help, vec![(vec![], value as f64)]);
    }

    // Consumer groups.
    let mut groups: Vec<_> = shards.iter().flat_map(|s| &s.groups).collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    f.gauge(
        "rill_consumer_group_members",
        "Members of a consumer group.",
        groups
            .iter()
            .map(|g| {
                (
                    vec![
                        ("group", g.group.clone()),
                        ("protocol", g.protocol.to_string()),
                    ],
                    g.members as f64,
                )
            })
            .collect(),
    );
    f.gauge(
        "rill_consumer_group_state",
        "A consumer group's state (the series of its current state is 1).",
        groups
            .iter()
            .map(|g| {
                (
                    vec![("group", g.group.clone()), ("state", g.state.to_string())],
                    1.0,
                )
            })
            .collect(),
    );
    let mut lag = Vec::new();
    let mut committed = Vec::new();
    for g in &groups {
        for (topic, partition, offset) in &g.committed {
            let labels = vec![
                ("group", g.group.clone()),
                ("topic", topic.clone()),
                ("partition", partition.to_string()),
            ];
            committed.push((labels.clone(), *offset as f64));
            // A partition this broker does not have open has no lag to say.
            if let Some(hw) = high_watermarks.get(&(topic.as_str(), *partition)) {
                lag.push((labels, (hw - offset).max(0) as f64));
            }
        }
    }
    f.gauge(
        "rill_consumer_group_committed_offset",
        "A group's committed offset for a partition.",
        committed,
    );
    f.gauge(
        "rill_consumer_group_lag",
        "Records of a partition a group has not committed yet: high watermark minus committed offset.",
        lag,
    );

    // Durability and the disk.
    let mut syncs = [
        Histogram::default(),
        Histogram::default(),
        Histogram::default(),
    ];
    for s in shards {
        for (total, h) in syncs.iter_mut().zip(&s.syncs) {
            total.merge(h);
        }
    }
    f.histogram(
        "rill_sync_duration_seconds",
        "Syncs that make data durable, by kind: journal (a shard's durable step: write, then fdatasync), segment (one log's fdatasync), filesystem (syncfs).",
        SyncKind::ALL
            .iter()
            .zip(syncs)
            .map(|(k, h)| (vec![("kind", k.name().to_string())], h))
            .collect(),
    );
    f.counter(
        "rill_journal_steps_total",
        "Durable steps of the shard journals (each one write and one sync for every partition waiting).",
        vec![(vec![], shards.iter().map(|s| s.journal_steps).sum::<u64>() as f64)],
    );
    f.counter(
        "rill_journal_bytes_total",
        "Bytes written to the shard journals.",
        vec![(
            vec![],
            shards.iter().map(|s| s.journal_bytes).sum::<u64>() as f64,
        )],
    );
    f.gauge(
        "rill_read_ahead_bytes",
        "Bytes read ahead for catch-up consumers and not yet taken.",
        vec![(
            vec![],
            shards.iter().map(|s| s.read_ahead_bytes).sum::<u64>() as f64,
        )],
    );
    let outcomes = |pick: fn(&rill_storage::read_ahead::Outcomes) -> u64| {
        shards.iter().map(|s| pick(&s.read_ahead)).sum::<u64>() as f64
    };
    f.counter(
        "rill_disk_reads_total",
        "Reads of log data past the cache, by how they were served: ready (read ahead, finished before it was asked for), waited (read ahead, still reading when asked for), missed (read when asked for).",
        vec![
            (vec![("served", "ready".to_string())], outcomes(|o| o.ready)),
            (vec![("served", "waited".to_string())], outcomes(|o| o.waited)),
            (vec![("served", "missed".to_string())], outcomes(|o| o.missed)),
        ],
    );
    let per_shard = |pick: fn(&ShardSnapshot) -> u64| {
        shards
            .iter()
            .map(|s| (vec![("shard", s.shard.to_string())], pick(s) as f64))
            .collect()
    };
    f.gauge(
        "rill_journal_file_bytes",
        "Size a shard's journal makes its files at now: it doubles while each file fills within a second, up to its largest, and halves when one takes over 30 s.",
        per_shard(|s| s.journal_file_bytes),
    );
    f.gauge(
        "rill_open_files",
        "Partition files a shard holds open (idle ones are closed to stay within its budget).",
        per_shard(|s| s.open_files),
    );
    f.gauge(
        "rill_open_files_budget",
        "Partition files a shard may hold open.",
        per_shard(|s| s.open_files_budget),
    );

    let total = |pick: fn(&ShardSnapshot) -> u64| -> Vec<(Vec<(&str, String)>, f64)> {
        vec![(vec![], shards.iter().map(pick).sum::<u64>() as f64)]
    };
    f.gauge(
        "rill_read_cache_bytes",
        "Memory holding recent batches for readers (within --memory-budget-bytes).",
        total(|s| s.read_cache_bytes),
    );
    f.gauge(
        "rill_write_buffer_bytes",
        "Memory of the write buffers partitions hold (not counting writes in flight).",
        total(|s| s.write_buffer_bytes),
    );
    f.gauge(
        "rill_producer_ids",
        "Idempotent producer ids the partitions remember (summed over partitions).",
        total(|s| s.producer_ids),
    );
    f.counter(
        "rill_shard_busy_seconds_total",
        "Time a shard's executor spent running tasks and polling for I/O, by glommio's statistics (not the kernel's work on the I/O while the shard waits: see rill_shard_cpu_seconds_total).",
        shards
            .iter()
            .map(|s| (vec![("shard", s.shard.to_string())], s.busy_seconds))
            .collect(),
    );
    f.counter(
        "rill_shard_cpu_seconds_total",
        "CPU time of a shard's thread, user and system (its rate is how much of a core the shard takes).",
        shards
            .iter()
            .map(|s| (vec![("shard", s.shard.to_string())], s.cpu_seconds))
            .collect(),
    );

    // Connections.
    f.gauge(
        "rill_connections_open",
        "Kafka client connections open now.",
        vec![(
            vec![],
            shards.iter().map(|s| s.connections_open).sum::<u64>() as f64,
        )],
    );
    f.counter(
        "rill_connections_accepted_total",
        "Kafka client connections accepted.",
        vec![(
            vec![],
            shards.iter().map(|s| s.connections_accepted).sum::<u64>() as f64,
        )],
    );
    f.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{GroupGauges, PartitionGauges};

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-12345), "UNKNOWN_-12345");
    }

    #[test]
    fn lag_is_the_high_watermark_minus_the_committed_offset() {
        let mut s = ShardSnapshot::default();
        s.partitions.push(PartitionGauges {
            topic: "t".into(),
            partition: 0,
            log_start: 0,
            log_end: 120,
            high_watermark: 100,
            segments: 1,
            bytes: 4096,
            cleaned_to: None,
        });
        s.groups.push(GroupGauges {
            group: "g".into(),
            state: "Empty",
            protocol: "classic",
            members: 0,
            committed: vec![("t".into(), 0, 40)],
        });
        let info = BrokerInfo {
            version: "test",
            uptime_seconds: 1.0,
            ready: true,
            partition_series: false,
        };
        let text = render(&info, &[s]).unwrap();
        assert!(
            text.contains("rill_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 60"),
            "{text}"
        );
        assert!(
            !text.contains("rill_partition_high_watermark{"),
            "series switched off"
        );
    }
}
