//! `rill-scale`: one broker with very many partitions — create time, memory,
//! open files, disk, stop and start times (see `rill_bench_harness::scale`).
//! Put `--data-dir` on a filesystem sized for the run (`../shared/tools/bounded`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rill_bench_harness::scale::{self, ScaleOptions};

#[derive(Parser)]
#[command(
    name = "rill-scale",
    version,
    about = "One broker with very many partitions: what they cost and how fast it starts"
)]
struct Cli {
    /// Partitions in all.
    #[arg(long, default_value_t = 100_000)]
    partitions: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 1000)]
    partitions_per_topic: usize,
    /// Topics per CreateTopics request.
    #[arg(long, default_value_t = 10)]
    topics_per_request: usize,
    /// Bytes of the one record written to each partition.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// The broker's shards (`rill broker --cores`).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// The broker's open-file limit (soft and hard); default: inherited.
    #[arg(long)]
    nofile: Option<u64>,
    /// Where the broker's data directory is made (and removed afterwards).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Seconds the broker stays idle after the writes before SIGTERM
    /// (partitions idle 10 s are parked; 0: stop at once, the worst case).
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Seconds one phase (create, produce, one start) may take.
    #[arg(long, default_value_t = 300)]
    phase_timeout_secs: u64,
    /// Whether the broker gives each partition metric series of its own
    /// (`rill broker --metrics-partition-series`); the scrape is measured.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    metrics_partition_series: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    rill_bench_harness::init_logging();
    let cli = Cli::parse();
    rill_bench_harness::limits::warn_if_buffered_loop("rill-scale", &cli.data_dir);
    let opts = ScaleOptions {
        rill: rill_bench_harness::embedded::rill_binary(),
        parent_dir: cli.data_dir,
        partitions: cli.partitions,
        partitions_per_topic: cli.partitions_per_topic.max(1),
        topics_per_request: cli.topics_per_request,
        record_bytes: cli.record_bytes,
        cores: cli.cores.max(1),
        nofile: cli.nofile,
        settle: Duration::from_secs(cli.settle_secs),
        phase_timeout: Duration::from_secs(cli.phase_timeout_secs),
        progress: true,
        partition_series: cli.metrics_partition_series,
    };
    match scale::run(&opts) {
        Ok(report) => {
            report.print();
            if let Some(path) = cli.json {
                let json = serde_json::to_string_pretty(&report).expect("plain data");
                if let Err(e) = std::fs::write(&path, json) {
                    eprintln!("rill-scale: writing {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("rill-scale: {e:#}");
            std::process::exit(1);
        }
    }
}
