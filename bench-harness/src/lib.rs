//! Rill's benchmark harness: workload files, load generation, latency
//! histograms and reports.
//!
//! Nothing is implemented here yet; it needs the native client first.
