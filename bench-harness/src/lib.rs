//! Rill's benchmark harness (`rill-bench`, also `rill bench`): workloads from
//! TOML files, producers and consumers driven through `rill-client` against
//! any Kafka-API broker (or an embedded `rill broker`), HDR latency
//! histograms, and JSON + HTML reports that state every throughput as a
//! fraction of the hardware limit measured in the same run.

pub mod cli;
pub mod cpu;
pub mod embedded;
pub mod limits;
pub mod report;
pub mod runner;
pub mod scale;
pub mod stats;
pub mod workload;

/// Logs to standard error at the level `RILL_LOG` names (default `warn`):
/// the harness binaries' one setup.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
