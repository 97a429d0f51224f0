//! `rill`: the broker, the host tuner and the client tools in one binary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rill_broker::config::{BrokerArgs, BrokerConfig};
use rill_broker::Broker;

mod status;
mod tools;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: a Kafka-compatible, thread-per-core streaming log broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker: data in ./data and a Kafka listener on 127.0.0.1:9092 unless told otherwise;
    /// `rill broker status` asks a running one whether it is ready.
    Broker(Box<BrokerCommand>),
    /// Measure and tune the host: disk probe, settings check, apply recommendations.
    #[command(subcommand)]
    Tune(Tune),
    /// Create, list, describe, delete topics and change their configs.
    #[command(subcommand)]
    Topic(tools::TopicCommand),
    /// List, describe, reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Group(tools::GroupCommand),
    /// Produce lines of standard input as records.
    Produce(tools::ProduceArgs),
    /// Print records of a topic.
    Consume(tools::ConsumeArgs),
    /// Log start and end offsets of each partition of a topic.
    Offsets(tools::OffsetsArgs),
    /// Run benchmark workloads (the same as `rill-bench`).
    Bench(Box<rill_bench_harness::cli::BenchArgs>),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BrokerCommand {
    #[command(subcommand)]
    action: Option<BrokerAction>,
    #[command(flatten)]
    args: BrokerArgs,
}

#[derive(Subcommand)]
enum BrokerAction {
    /// Ask a running broker (its admin listener) whether it is ready: uptime, version, partitions,
    /// disk. Exits 1 while it is not ready or cannot be reached.
    Status(status::StatusArgs),
}

#[derive(Subcommand)]
enum Tune {
    /// Measure the device under DIR with O_DIRECT writes and reads via io_uring, by block size and
    /// queue depth, plus fdatasync latency and CPU topology; write io-properties.toml.
    Probe {
        /// Directory on the device to measure (the broker's data directory).
        #[arg(long, default_value = "./data")]
        dir: PathBuf,
        /// MiB written and read for each block size × queue depth.
        #[arg(long, default_value_t = 64)]
        size_mib: u64,
        /// Where to write the properties [default: DIR/io-properties.toml, which the broker reads].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show host settings that matter for a broker: current, recommended, and why.
    Check {
        /// The broker's data directory (its disk's scheduler is checked).
        #[arg(long, default_value = "./data")]
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Apply the recommendations that can be applied (needs root). A dry run unless --yes.
    Apply {
        #[arg(long, default_value = "./data")]
        dir: PathBuf,
        /// Really make the changes; without it every change is only printed.
        #[arg(long)]
        yes: bool,
    },
}

fn tune(cmd: Tune) -> anyhow::Result<()> {
    match cmd {
        Tune::Probe { dir, size_mib, out } => {
            let mut options = rill_tuning::probe::ProbeOptions::new(&dir);
            options.bytes_per_test = size_mib << 20;
            let props = rill_tuning::probe::run(options)?;
            println!(
                "{:>10} {:>5} {:>12} {:>12}",
                "BLOCK", "QD", "WRITE MB/s", "READ MB/s"
            );
            for m in &props.disk.measurements {
                println!(
                    "{:>10} {:>5} {:>12.1} {:>12.1}",
                    m.block_bytes, m.queue_depth, m.write_mb_s, m.read_mb_s
                );
            }
            let d = &props.disk;
            println!(
                "best write: {} bytes at queue depth {} ({:.1} MB/s); fdatasync p50 {} µs, p99 {} µs",
                d.best_write_block_bytes, d.best_write_queue_depth, d.write_mb_s, d.fdatasync_p50_us, d.fdatasync_p99_us
            );
            if let Some(synced) = d.write_synced_mb_s {
                println!("each write followed by fdatasync: {synced:.1} MB/s");
            }
            let out = out.unwrap_or_else(|| dir.join("io-properties.toml"));
            props.write(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Tune::Check { dir, json } => {
            let settings = rill_tuning::check::run(&dir);
            if json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                print!("{}", rill_tuning::check::table(&settings));
            }
            Ok(())
        }
        Tune::Apply { dir, yes } => {
            let settings = rill_tuning::check::run(&dir);
            rill_tuning::apply::apply(&settings, yes, &mut std::io::stdout())
                .context("applying settings")?;
            Ok(())
        }
    }
}

/// `rill broker`: runs until SIGTERM or SIGINT, then shuts down cleanly; a
/// second signal exits at once.
fn run_broker(args: &BrokerArgs) -> anyhow::Result<()> {
    // A panic is a bug; a shard whose thread died would leave its
    // partitions and connections hanging while the process looks alive.
    // Exit instead, loudly, so a supervisor restarts the broker (what was
    // acknowledged is on disk; recovery handles the rest).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "a broker thread panicked: exiting");
        std::process::abort();
    }));
    let config = BrokerConfig::resolve(args)?;
    // Before the broker opens anything: the descriptors signal handling
    // needs never compete with partitions for the last ones.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    let broker = Broker::start(config)?;
    let (host, port) = broker.advertised();
    // Tests and scripts wait for this line (not println!: it panics when
    // standard output is a file on a full disk).
    let _ = writeln!(
        std::io::stdout(),
        "rill broker listening on {} (advertised {host}:{port}), {} shards, data in {}",
        broker.addr(),
        broker.shards(),
        broker.data_dir().display()
    );
    if let Some(admin) = broker.admin_addr() {
        let _ = writeln!(
            std::io::stdout(),
            "admin listener on http://{admin} (/metrics, /v1/status, /v1/status/ready)"
        );
    }
    let stop = broker.stopper();
    std::thread::spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen == 1 {
                tracing::info!(signal, "shutting down");
                stop();
            } else {
                tracing::warn!(signal, "second signal: exiting at once");
                std::process::exit(130);
            }
        }
    });
    broker.wait()?;
    tracing::info!("clean shutdown");
    Ok(())
}

/// Standard error that never fails: when it is a file on a full disk, log
/// lines are lost, not the broker. (tracing-subscriber reports a failed
/// write with `eprintln!`, which panics when standard error cannot be
/// written — on a full disk, that ended the process.)
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(b) => match b.action {
            Some(BrokerAction::Status(args)) => status::run(args),
            None => run_broker(&b.args),
        },
        Command::Tune(cmd) => tune(cmd),
        Command::Topic(cmd) => tools::topic(cmd),
        Command::Group(cmd) => tools::group(cmd),
        Command::Produce(args) => tools::produce(args),
        Command::Consume(args) => tools::consume(args),
        Command::Offsets(args) => tools::offsets(args),
        Command::Bench(args) => rill_bench_harness::cli::run(*args),
    };
    if let Err(e) = result {
        eprintln!("rill: {e:#}");
        std::process::exit(1);
    }
}
