//! `rill produce <topic>`: one record per line of standard input.

use std::collections::VecDeque;

use anyhow::bail;
use clap::Args;
use rill_client::{Acks, Compression, Producer, ProducerConfig, Record};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::ConnectArgs;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value (no key without it).
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition (default: by key, sticky without).
    #[arg(long, short)]
    pub partition: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, short = 'z', default_value = "none")]
    pub compression: String,
    /// Header as key=value added to every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Milliseconds a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Send without idempotence: a batch retried after a lost answer may be
    /// stored twice (idempotence is on by default with --acks all).
    #[arg(long)]
    pub no_idempotence: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let config = ProducerConfig {
        acks: a.acks.parse::<Acks>()?,
        compression: a.compression.parse::<Compression>()?,
        linger: std::time::Duration::from_millis(a.linger_ms),
        idempotence: !a.no_idempotence,
        ..ProducerConfig::default()
    };
    let mut headers = Vec::new();
    for h in &a.headers {
        match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => headers.push((k.to_string(), v.to_string())),
            _ => bail!("--header expects KEY=VALUE, got {h:?}"),
        }
    }
    if a.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let client = a.connect.connect().await?;
    client.ensure_topic(&a.topic).await?;
    let producer = Producer::new(client, config)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = VecDeque::new();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    let mut settle = |result: rill_client::Result<_>, failed: &mut u64| {
        if let Err(e) = result {
            *failed += 1;
            first_error.get_or_insert(e);
        }
    };
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match &a.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut record = Record::new(a.topic.as_str(), value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = a.partition {
            record = record.partition(p);
        }
        for (k, v) in &headers {
            record = record.header(k.clone(), v.clone());
        }
        pending.push_back(producer.send(record).await?);
        sent += 1;
        // Bound what is awaited at the end; the producer bounds the bytes.
        if pending.len() >= 100_000 {
            let d = pending.pop_front().expect("non-empty");
            settle(d.await, &mut failed);
        }
    }
    for d in pending {
        settle(d.await, &mut failed);
    }
    producer.close().await;
    if let Some(e) = first_error {
        bail!("{failed} of {sent} records failed; first error: {e}");
    }
    eprintln!("produced {sent} records to {}", a.topic);
    Ok(())
}
