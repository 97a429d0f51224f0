//! `rill`: the broker and (later) client tools in one binary.

use clap::{Parser, Subcommand};
use rill_broker::config::{BrokerArgs, BrokerConfig};

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
    /// Run a broker: data in ./data and a Kafka listener on 127.0.0.1:9092 unless told otherwise.
    Broker(BrokerArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => BrokerConfig::resolve(&args).and_then(rill_broker::runtime::run),
    };
    if let Err(e) = result {
        eprintln!("rill: {e:#}");
        std::process::exit(1);
    }
}
