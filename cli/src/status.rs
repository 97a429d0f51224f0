//! `rill broker status`: asks a running broker's admin listener
//! (`GET /v1/status`) whether it is ready, and what it holds.

use anyhow::Context;
use rill_broker::admin::Status;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The broker's admin listener (its --admin-listen).
    #[arg(long, default_value = "127.0.0.1:9644", value_name = "HOST:PORT")]
    pub admin: String,
    /// Print the broker's JSON answer as it came.
    #[arg(long)]
    pub json: bool,
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Prints the status; an error (so exit code 1) when the broker is not
/// ready or cannot be reached, so scripts can wait on it.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let url = format!("http://{}/v1/status", args.admin);
    let body = ureq::get(&url)
        .timeout(std::time::Duration::from_secs(15))
        .call()
        .with_context(|| format!("asking {url} (is the broker running with this --admin-listen?)"))?
        .into_string()
        .context("reading the broker's answer")?;
    let status: Status = serde_json::from_str(&body)
        .with_context(|| format!("the broker's answer is not a status: {body}"))?;
    if args.json {
        print!("{body}");
    } else {
        let uptime = humantime::format_duration(std::time::Duration::from_secs(
            status.uptime_seconds as u64,
        ));
        println!(
            "ready        {}",
            if status.ready {
                "yes"
            } else {
                "no (partitions are opening)"
            }
        );
        println!("version      {}", status.version);
        println!("uptime       {uptime}");
        println!("shards       {}", status.shards);
        println!(
            "partitions   {} open, {} failed to open",
            status.partitions_open, status.partitions_unopened
        );
        let free = status
            .disk_free_bytes
            .map_or_else(|| "unknown".to_string(), human_bytes);
        println!(
            "disk         {} in logs, {free} free ({})",
            human_bytes(status.log_size_bytes),
            status.data_dir
        );
        println!("connections  {}", status.connections_open);
    }
    if !status.ready {
        anyhow::bail!("the broker is not ready yet");
    }
    Ok(())
}
