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
