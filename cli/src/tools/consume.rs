//! `rill consume <topic>`: print records, from a chosen start, until the end
//! offsets seen at start (or forever with `--follow`, or `--count` records).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rill_client::{Consumer, ConsumerConfig, ConsumerRecord, Offset, OffsetSpec, TopicPartition};
use serde_json::json;

use super::ConnectArgs;

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// beginning, end, an offset (42), or a timestamp: @<ms since epoch> or an
    /// RFC 3339 date (2026-11-23T06:00:00Z).
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Only this partition (default: all).
    #[arg(long, short)]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short)]
    pub follow: bool,
    /// Output template: {topic} {partition} {offset} {timestamp} {key} {value}
    /// {headers}; \n and \t are understood.
    #[arg(long, default_value = "{value}")]
    pub format: String,
    /// One JSON object per record instead of --format.
    #[arg(long)]
    pub json: bool,
    /// Read as a member of this consumer group: the group's partitions are
    /// shared with its other members, reading resumes at its committed
    /// offsets (--from beginning|end says where a partition without one
    /// starts) and what was read is committed.
    #[arg(long, short = 'g', conflicts_with = "partition")]
    pub group: Option<String>,
    /// The group protocol: `consumer` (KIP-848: the broker assigns, and
    /// rebalances move only the partitions that change hands) or `classic`.
    #[arg(long, default_value = "consumer", value_parser = ["consumer", "classic"], requires = "group")]
    pub group_protocol: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Parses `--from`.
pub fn parse_from(s: &str) -> anyhow::Result<Offset> {
    Ok(match s {
        "beginning" | "earliest" => Offset::Beginning,
        "end" | "latest" => Offset::End,
        _ if s.starts_with('@') => Offset::Timestamp(
            s[1..]
                .parse()
                .with_context(|| format!("--from {s}: expected @<milliseconds since the epoch>"))?,
        ),
        _ => {
            match s.parse::<i64>() {
                Ok(o) if o >= 0 => Offset::At(o),
                Ok(_) => bail!("--from {s}: offsets are not negative"),
                Err(_) => {
                    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
                    format!("--from {s}: expected beginning, end, an offset, @<ms> or an RFC 3339 time")
                })?;
                    let ms = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .context("a time before 1970")?
                        .as_millis() as i64;
                    Offset::Timestamp(ms)
                }
            }
        }
    })
}

fn text(b: &Option<bytes::Bytes>) -> String {
    b.as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn headers_text(r: &ConsumerRecord) -> String {
    r.headers
        .iter()
        .map(|h| format!("{}={}", h.key, text(&h.value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Fills a `--format` template in one pass (so placeholders inside keys or
/// values are printed as they are).
pub fn render(template: &str, r: &ConsumerRecord) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '\\']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let fields: [(&str, &dyn Fn() -> String); 9] = [
            ("\\n", &|| "\n".into()),
            ("\\t", &|| "\t".into()),
            ("{topic}", &|| r.topic.to_string()),
            ("{partition}", &|| r.partition.to_string()),
            ("{offset}", &|| r.offset.to_string()),
            ("{timestamp}", &|| r.timestamp.to_string()),
            ("{headers}", &|| headers_text(r)),
            ("{key}", &|| text(&r.key)),
            ("{value}", &|| text(&r.value)),
        ];
        match fields.iter().find(|(p, _)| rest.starts_with(p)) {
            Some((p, f)) => {
                out.push_str(&f());
                rest = &rest[p.len()..];
            }
            None => {
                out.push_str(&rest[..1]);
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn to_json(r: &ConsumerRecord) -> serde_json::Value {
    let headers: Vec<_> = r
        .headers
        .iter()
        .map(|h| json!({"key": h.key, "value": h.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned())}))
        .collect();
    json!({
        "topic": &*r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
        "key": r.key.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()),
        "value": r.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()),
        "headers": headers,
    })
}

pub async fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    if a.group.is_some() {
        return run_in_group(a).await;
    }
    let from = parse_from(&a.from)?;
    let client = a.connect.connect().await?;
    let n = client.ensure_topic(&a.topic).await?;
    let partitions: Vec<TopicPartition> = match a.partition {
        Some(p) if (0..n).contains(&p) => vec![TopicPartition::new(&a.topic, p)],
        Some(p) => bail!("topic {} has no partition {p} (it has {n})", a.topic),
        None => (0..n).map(|p| TopicPartition::new(&a.topic, p)).collect(),
    };
    // Without --follow, stop at the end offsets of now.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    if !a.follow {
        let specs: Vec<_> = partitions
            .iter()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        for (tp, r) in rill_client::admin::Admin::new(client.clone())
            .list_offsets(&specs)
            .await?
        {
            remaining.insert(tp.partition, r?.0);
        }
    }
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            start: from,
            ..ConsumerConfig::default()
        },
    );
    consumer.assign(&partitions).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let done = |printed: u64, consumer: &Consumer, remaining: &HashMap<i32, i64>| {
        if a.count.is_some_and(|c| printed >= c) {
            return true;
        }
        !a.follow
            && partitions.iter().all(|tp| {
                consumer
                    .position(tp)
                    .is_some_and(|pos| pos >= remaining[&tp.partition])
            })
    };
    while !done(printed, &consumer, &remaining) {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        for r in records {
            if !a.follow && r.offset >= remaining[&r.partition] {
                continue;
            }
            if a.json {
                writeln!(out, "{}", to_json(&r))?;
            } else {
                writeln!(out, "{}", render(&a.format, &r))?;
            }
            printed += 1;
            if a.count.is_some_and(|c| printed >= c) {
                break;
            }
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// `rill consume --group`: a group member; without --follow it stops once
/// its partitions are read up to the end offsets of when it started.
async fn run_in_group(a: ConsumeArgs) -> anyhow::Result<()> {
    use rill_client::{GroupConfig, GroupConsumer, OffsetReset};
    let group = a.group.clone().expect("--group");
    let reset = match parse_from(&a.from)? {
        Offset::Beginning => OffsetReset::Earliest,
        Offset::End => OffsetReset::Latest,
        _ => bail!("--from with --group is beginning or end (where partitions without a committed offset start)"),
    };
    let client = a.connect.connect().await?;
    let n = client.ensure_topic(&a.topic).await?;
    let specs: Vec<_> = (0..n)
        .map(|p| (TopicPartition::new(&a.topic, p), OffsetSpec::Latest))
        .collect();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for (tp, r) in rill_client::admin::Admin::new(client.clone())
        .list_offsets(&specs)
        .await?
    {
        ends.insert(tp.partition, r?.0);
    }
    let mut config = GroupConfig::new(&group);
    config.protocol = match a.group_protocol.as_str() {
        "classic" => rill_client::GroupProtocol::Classic,
        _ => rill_client::GroupProtocol::Consumer,
    };
    config.offset_reset = reset;
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_secs(1);
    let mut member = GroupConsumer::new(client, config);
    member.subscribe(&[a.topic.as_str()]);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    loop {
        let records = member.poll(Duration::from_millis(500)).await?;
        for (i, r) in records.iter().enumerate() {
            if a.json {
                writeln!(out, "{}", to_json(r))?;
            } else {
                writeln!(out, "{}", render(&a.format, r))?;
            }
            printed += 1;
            if a.count.is_some_and(|c| printed >= c) {
                // What was fetched but not printed is not committed: each
                // partition goes back to its first record not printed.
                let mut first: HashMap<i32, i64> = HashMap::new();
                for rest in &records[i + 1..] {
                    first.entry(rest.partition).or_insert(rest.offset);
                }
                for (p, o) in first {
                    member.seek(&TopicPartition::new(&a.topic, p), Offset::At(o))?;
                }
                break;
            }
        }
        out.flush()?;
        if a.count.is_some_and(|c| printed >= c) {
            break;
        }
        let caught_up = !a.follow
            && records.is_empty()
            && member.assignment().iter().all(|tp| {
                member
                    .position(tp)
                    .is_some_and(|pos| pos >= ends[&tp.partition])
            });
        if caught_up {
            break;
        }
    }
    member.commit().await?;
    member.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_accepts_every_form() {
        assert_eq!(parse_from("beginning").unwrap(), Offset::Beginning);
        assert_eq!(parse_from("end").unwrap(), Offset::End);
        assert_eq!(parse_from("42").unwrap(), Offset::At(42));
        assert_eq!(
            parse_from("@1700000000000").unwrap(),
            Offset::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_from("2023-11-14T22:13:20Z").unwrap(),
            Offset::Timestamp(1_700_000_000_000)
        );
        assert!(parse_from("-3").is_err());
        assert!(parse_from("yesterday").is_err());
    }

    #[test]
    fn templates_fill_in_one_pass() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 9,
            timestamp: 5,
            timestamp_type: rill_client::TimestampType::CreateTime,
            key: Some("{value}".into()),
            value: Some("v".into()),
            headers: vec![rill_client::Header {
                key: "h".into(),
                value: Some("1".into()),
            }],
        };
        assert_eq!(
            render(
                "{partition}:{offset}\\t{key}={value} [{headers}] {x}\\n",
                &r
            ),
            "2:9\t{value}=v [h=1] {x}\n"
        );
    }
}
