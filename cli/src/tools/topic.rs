//! `rill topic …` and `rill offsets`.

use anyhow::{bail, Context};
use clap::Args;
use rill_client::{Admin, ConfigChange, NewTopic, OffsetSpec, TopicPartition};
use rill_net::kafka_protocol::ResponseError;
use serde_json::json;

use super::{table, ConnectArgs, OffsetsArgs, TopicCommand};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    #[arg(long, short, default_value_t = 1)]
    pub partitions: i32,
    /// Replicas per partition (-1: the broker's default).
    #[arg(long, default_value_t = -1)]
    pub replicas: i16,
    /// Topic config as key=value (repeatable), e.g. retention.ms=3600000.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// Succeed if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Topics to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct AlterConfigArgs {
    pub name: String,
    /// Set a config: key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Reset a config to its default (repeatable).
    #[arg(long = "delete", value_name = "KEY")]
    pub delete: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct AddPartitionsArgs {
    pub name: String,
    /// The partition count the topic should have afterwards.
    #[arg(long)]
    pub total: i32,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("expected KEY=VALUE, got {s:?}"),
    }
}

pub async fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create(a) => {
            if a.partitions < 1 {
                bail!("--partitions must be at least 1");
            }
            let mut topic = NewTopic::new(&a.name, a.partitions);
            topic.replication_factor = a.replicas;
            for c in &a.configs {
                let (k, v) = key_value(c)?;
                topic = topic.config(k, v);
            }
            let admin = Admin::new(a.connect.connect().await?);
            match admin.create_topic(topic).await {
                Ok(()) => println!("created topic {} with {} partitions", a.name, a.partitions),
                Err(e)
                    if a.if_not_exists
                        && e.code() == Some(ResponseError::TopicAlreadyExists.code()) =>
                {
                    println!("topic {} already exists", a.name)
                }
                Err(e) => return Err(e.into()),
            }
        }
        TopicCommand::List(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            let topics = admin.list_topics().await?;
            if a.json {
                let v: Vec<_> = topics
                    .iter()
                    .map(|t| json!({"name": t.name, "id": t.id, "partitions": t.partitions.len()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<Vec<String>> = topics
                    .iter()
                    .map(|t| vec![t.name.clone(), t.partitions.len().to_string(), t.id.clone()])
                    .collect();
                print!("{}", table::render(&["NAME", "PARTITIONS", "ID"], &rows));
            }
        }
        TopicCommand::Describe(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            let t = admin.describe_topic(&a.name).await?;
            let configs = admin.describe_topic_configs(&a.name).await?;
            let specs: Vec<(TopicPartition, OffsetSpec)> = t
                .partitions
                .iter()
                .flat_map(|p| {
                    let tp = TopicPartition::new(&a.name, p.partition);
                    [(tp.clone(), OffsetSpec::Earliest), (tp, OffsetSpec::Latest)]
                })
                .collect();
            let offsets = admin.list_offsets(&specs).await?;
            let offset = |i: usize| -> String {
                match &offsets[i].1 {
                    Ok((o, _)) => o.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            };
            if a.json {
                let partitions: Vec<_> = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        json!({
                            "partition": p.partition, "leader": p.leader, "replicas": p.replicas,
                            "isr": p.isr,
                            "log_start_offset": offsets[2 * i].1.as_ref().ok().map(|o| o.0),
                            "high_watermark": offsets[2 * i + 1].1.as_ref().ok().map(|o| o.0),
                        })
                    })
                    .collect();
                let configs: serde_json::Map<String, serde_json::Value> = configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            json!({"value": c.value, "override": c.is_override, "source": c.source.label()}),
                        )
                    })
                    .collect();
                let v = json!({"name": t.name, "id": t.id, "partitions": partitions, "configs": configs});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "topic {} (id {}), {} partitions\n",
                    t.name,
                    t.id,
                    t.partitions.len()
                );
                let rows: Vec<Vec<String>> = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        vec![
                            p.partition.to_string(),
                            p.leader.to_string(),
                            format!("{:?}", p.replicas),
                            format!("{:?}", p.isr),
                            offset(2 * i),
                            offset(2 * i + 1),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(
                        &[
                            "PARTITION",
                            "LEADER",
                            "REPLICAS",
                            "ISR",
                            "LOG-START",
                            "HIGH-WATERMARK"
                        ],
                        &rows
                    )
                );
                println!();
                let rows: Vec<Vec<String>> = configs
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.value.clone().unwrap_or_else(|| "-".into()),
                            c.source.label().into(),
                        ]
                    })
                    .collect();
                print!("{}", table::render(&["CONFIG", "VALUE", "SOURCE"], &rows));
            }
        }
        TopicCommand::Delete(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            let names: Vec<&str> = a.names.iter().map(String::as_str).collect();
            let mut failed = 0;
            for (name, result) in admin.delete_topics(&names).await? {
                match result {
                    Ok(()) => println!("deleted topic {name}"),
                    Err(e) => {
                        eprintln!("rill: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} topics not deleted", names.len());
            }
        }
        TopicCommand::AlterConfig(a) => {
            if a.set.is_empty() && a.delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
            }
            let mut changes = Vec::new();
            for s in &a.set {
                let (k, v) = key_value(s)?;
                changes.push(ConfigChange::Set(k, v));
            }
            changes.extend(a.delete.iter().map(|k| ConfigChange::Delete(k.clone())));
            let admin = Admin::new(a.connect.connect().await?);
            admin
                .alter_topic_configs(&a.name, &changes)
                .await
                .with_context(|| format!("altering the configs of {}", a.name))?;
            println!("updated {} config(s) of {}", changes.len(), a.name);
        }
        TopicCommand::AddPartitions(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            admin
                .create_partitions(&a.name, a.total)
                .await
                .with_context(|| format!("adding partitions to {}", a.name))?;
            println!("topic {} now has {} partitions", a.name, a.total);
        }
    }
    Ok(())
}

pub async fn offsets(a: OffsetsArgs) -> anyhow::Result<()> {
    let admin = Admin::new(a.connect.connect().await?);
    let t = admin.describe_topic(&a.topic).await?;
    let specs: Vec<(TopicPartition, OffsetSpec)> = t
        .partitions
        .iter()
        .flat_map(|p| {
            let tp = TopicPartition::new(&a.topic, p.partition);
            [(tp.clone(), OffsetSpec::Earliest), (tp, OffsetSpec::Latest)]
        })
        .collect();
    let offsets = admin.list_offsets(&specs).await?;
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for (i, p) in t.partitions.iter().enumerate() {
        let start = offsets[2 * i].1.clone()?.0;
        let end = offsets[2 * i + 1].1.clone()?.0;
        rows.push(vec![
            p.partition.to_string(),
            start.to_string(),
            end.to_string(),
            (end - start).to_string(),
        ]);
        values.push(json!({"partition": p.partition, "log_start_offset": start,
                           "high_watermark": end, "records": end - start}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        print!(
            "{}",
            table::render(
                &["PARTITION", "LOG-START", "HIGH-WATERMARK", "RECORDS"],
                &rows
            )
        );
    }
    Ok(())
}
