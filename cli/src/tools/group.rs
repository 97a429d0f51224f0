//! `rill group list | describe | reset-offsets | delete`.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rill_client::{Admin, OffsetSpec, TopicPartition};
use serde_json::json;

use super::{table, ConnectArgs};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List(ListArgs),
    /// Show a group's members, their partitions, and committed offset and lag per partition.
    Describe(DescribeArgs),
    /// Move an inactive group's committed offsets of a topic.
    ResetOffsets(ResetArgs),
    /// Delete inactive groups (their committed offsets go with them).
    Delete(DeleteArgs),
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
    pub group: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ResetArgs {
    pub group: String,
    /// The topic whose offsets move (every partition).
    #[arg(long)]
    pub topic: String,
    /// earliest, latest, an offset, or @<ms since the epoch> (the first record at or after it).
    #[arg(long, value_name = "WHERE")]
    pub to: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[arg(required = true)]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::List(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            let groups = admin.list_groups().await.context("listing groups")?;
            if a.json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|g| json!({"group": g.group_id, "state": g.state, "protocol_type": g.protocol_type, "group_type": g.group_type}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.group_id.clone(),
                            g.state.clone(),
                            g.protocol_type.clone(),
                            g.group_type.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(&["GROUP", "STATE", "TYPE", "PROTOCOL"], &rows)
                );
            }
        }
        GroupCommand::Describe(a) => describe(a).await?,
        GroupCommand::ResetOffsets(a) => reset(a).await?,
        GroupCommand::Delete(a) => {
            let admin = Admin::new(a.connect.connect().await?);
            let names: Vec<&str> = a.groups.iter().map(String::as_str).collect();
            let mut failed = false;
            for (g, r) in admin.delete_groups(&names).await? {
                match r {
                    Ok(()) => println!("deleted group {g}"),
                    Err(e) => {
                        eprintln!("rill: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("not every group was deleted");
            }
        }
    }
    Ok(())
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::new(a.connect.connect().await?);
    let d = admin.describe_group(&a.group).await?;
    let committed = admin.committed_offsets(&a.group).await?;
    let owner: BTreeMap<&TopicPartition, &str> = d
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp, m.member_id.as_str()))
        })
        .collect();
    let mut partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
    partitions.extend(owner.keys().map(|tp| (*tp).clone()));
    partitions.sort();
    partitions.dedup();
    let specs: Vec<_> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let ends: BTreeMap<TopicPartition, i64> = admin
        .list_offsets(&specs)
        .await?
        .into_iter()
        .filter_map(|(tp, r)| Some((tp, r.ok()?.0)))
        .collect();
    let lag = |tp: &TopicPartition| -> Option<i64> {
        let c = *committed.get(tp)?;
        (c >= 0)
            .then(|| ends.get(tp).map(|e| (e - c).max(0)))
            .flatten()
    };
    if a.json {
        let v = json!({
            "group": d.group_id,
            "state": d.state,
            "protocol_type": d.protocol_type,
            "group_type": d.group_type,
            "assignor": d.protocol,
            "members": d.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "partitions": m.assignment.iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "offsets": partitions.iter().map(|tp| json!({
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": committed.get(tp),
                "end": ends.get(tp),
                "lag": lag(tp),
                "member": owner.get(tp),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "group {}: {}{}, {} member(s)",
        d.group_id,
        d.state,
        if d.protocol.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.protocol)
        },
        d.members.len()
    );
    if !d.members.is_empty() {
        let rows: Vec<Vec<String>> = d
            .members
            .iter()
            .map(|m| {
                vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.assignment
                        .iter()
                        .map(|tp| tp.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["MEMBER", "CLIENT", "HOST", "PARTITIONS"], &rows)
        );
    }
    let cell = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            vec![
                tp.topic.clone(),
                tp.partition.to_string(),
                cell(committed.get(tp).copied().filter(|c| *c >= 0)),
                cell(ends.get(tp).copied()),
                cell(lag(tp)),
                owner
                    .get(tp)
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
            &rows
        )
    );
    Ok(())
}

async fn reset(a: ResetArgs) -> anyhow::Result<()> {
    let client = a.connect.connect().await?;
    let partitions = client.ensure_topic(&a.topic).await?;
    let admin = Admin::new(client);
    let d = admin.describe_group(&a.group).await?;
    if !d.members.is_empty() {
        bail!(
            "group {} has {} active member(s): stop them before moving its offsets",
            a.group,
            d.members.len()
        );
    }
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(&a.topic, p))
        .collect();
    let spec = match a.to.as_str() {
        "earliest" => Some(OffsetSpec::Earliest),
        "latest" => Some(OffsetSpec::Latest),
        t if t.starts_with('@') => Some(OffsetSpec::Timestamp(
            t[1..]
                .parse()
                .with_context(|| format!("`{t}` is not @<milliseconds>"))?,
        )),
        _ => None,
    };
    let targets: Vec<(TopicPartition, i64)> = match spec {
        Some(spec) => {
            let specs: Vec<_> = tps.iter().map(|tp| (tp.clone(), spec)).collect();
            let latest: Vec<_> = tps
                .iter()
                .map(|tp| (tp.clone(), OffsetSpec::Latest))
                .collect();
            let ends: BTreeMap<TopicPartition, i64> = admin
                .list_offsets(&latest)
                .await?
                .into_iter()
                .filter_map(|(tp, r)| Some((tp, r.ok()?.0)))
                .collect();
            let mut out = Vec::new();
            for (tp, r) in admin.list_offsets(&specs).await? {
                let (offset, _) = r.with_context(|| format!("finding the offset of {tp}"))?;
                // No record at or after the time: the end.
                let offset = if offset < 0 {
                    ends.get(&tp).copied().unwrap_or(0)
                } else {
                    offset
                };
                out.push((tp, offset));
            }
            out
        }
        None => {
            let offset: i64 = a.to.parse().with_context(|| {
                format!("--to `{}`: earliest, latest, an offset or @<ms>", a.to)
            })?;
            tps.iter().map(|tp| (tp.clone(), offset)).collect()
        }
    };
    admin.set_committed_offsets(&a.group, &targets).await?;
    for (tp, o) in &targets {
        println!("{tp}: {o}");
    }
    Ok(())
}
