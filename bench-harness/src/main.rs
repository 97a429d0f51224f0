//! `rill-bench`: run benchmark workloads and write reports.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rill-bench",
    version,
    about = "Benchmark Rill (or any Kafka-API broker) with workload files"
)]
struct Cli {
    #[command(flatten)]
    args: rill_bench_harness::cli::BenchArgs,
}

fn main() {
    rill_bench_harness::init_logging();
    if let Err(e) = rill_bench_harness::cli::run(Cli::parse().args) {
        eprintln!("rill-bench: {e:#}");
        std::process::exit(1);
    }
}
