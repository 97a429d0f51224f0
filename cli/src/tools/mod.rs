//! The client verbs of the `rill` binary (`topic`, `group`, `produce`,
//! `consume`, `offsets`), built on `rill-client`. Human tables by default, `--json` for
//! scripts; errors are one line, no backtraces.

mod consume;
mod group;
mod produce;
mod table;
mod topic;

use anyhow::Context;
use clap::{Args, Subcommand};
use rill_client::{Client, ClientConfig};

pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use produce::ProduceArgs;

/// How to reach the cluster.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "RILL_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Seconds to wait for a broker to answer.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

impl ConnectArgs {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(&self.brokers);
        config.client_id = "rill-cli".into();
        config.connect_timeout = std::time::Duration::from_secs(self.timeout_secs.clamp(1, 60));
        config.request_timeout = std::time::Duration::from_secs(self.timeout_secs.max(1));
        Client::connect(config)
            .await
            .with_context(|| format!("connecting to {}", self.brokers))
    }
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(topic::CreateArgs),
    /// List topics.
    List(topic::ListArgs),
    /// Show a topic's partitions, leaders and configs.
    Describe(topic::DescribeArgs),
    /// Delete topics.
    Delete(topic::DeleteArgs),
    /// Set or reset topic configs.
    AlterConfig(topic::AlterConfigArgs),
    /// Raise a topic's partition count (Kafka never lowers it).
    AddPartitions(topic::AddPartitionsArgs),
}

#[derive(Args, Debug)]
pub struct OffsetsArgs {
    /// The topic.
    pub topic: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // A closed pipe (`rill consume … | head`) ends the tool quietly, as it
    // does for other Unix tools, instead of a panic on the next print.
    // SAFETY: setting a signal disposition to its default before any thread
    // of this process is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")
}

pub fn topic(cmd: TopicCommand) -> anyhow::Result<()> {
    runtime()?.block_on(topic::run(cmd))
}

pub fn group(cmd: GroupCommand) -> anyhow::Result<()> {
    runtime()?.block_on(group::run(cmd))
}

pub fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    runtime()?.block_on(produce::run(args))
}

pub fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(consume::run(args))
}

pub fn offsets(args: OffsetsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(topic::offsets(args))
}
