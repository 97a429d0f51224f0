//! The admin listener (`--admin-listen`, 127.0.0.1:9644 by default, as
//! Redpanda's admin port): Prometheus metrics and health endpoints over
//! HTTP, on a thread of its own, off the data path.
//!
//! - `GET /metrics`: the Prometheus text format ([`crate::metrics`]). Each
//!   shard copies its counters on its own thread when asked (a job through
//!   the router), so the request path counts without atomics or locks.
//! - `GET /v1/status/ready`: 200 once every shard serves its partitions
//!   (their logs open, or after a clean stop serving from its record while
//!   they open behind), 503 before (and while stopping).
//! - `GET /v1/status/live`: 200 while the process answers.
//! - `GET /v1/status`: what `rill broker status` prints, as JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::exposition::{self, BrokerInfo};
use crate::metrics::ShardSnapshot;
use crate::shard::{Job, Router};

/// How long a scrape waits for a shard's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin thread knows of the broker.
pub struct AdminState {
    pub router: Router,
    pub started: Instant,
    /// Shards that have finished opening their partitions.
    pub shards_opened: Arc<AtomicUsize>,
    pub stopping: Arc<AtomicBool>,
    pub partition_series: bool,
    pub data_dir: PathBuf,
}

impl AdminState {
    fn ready(&self) -> bool {
        self.shards_opened.load(Ordering::Acquire) == self.router.shards()
            && !self.stopping.load(Ordering::Acquire)
    }

    /// Every shard's snapshot, taken on the shard.
    fn snapshots(&self) -> Result<Vec<ShardSnapshot>, String> {
        let mut out = Vec::with_capacity(self.router.shards());
        for shard in 0..self.router.shards() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let job: Job = Box::new(move |s| {
                Box::pin(async move {
                    let _ = tx.send(s.metrics_snapshot());
                })
            });
            if !self.router.send_blocking(shard, job) {
                return Err(format!("shard {shard} has stopped"));
            }
            out.push(rx.recv_timeout(SNAPSHOT_TIMEOUT).map_err(|_| {
                format!("shard {shard} did not answer within {SNAPSHOT_TIMEOUT:?}")
            })?);
        }
        Ok(out)
    }

    fn info(&self) -> BrokerInfo {
        BrokerInfo {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            ready: self.ready(),
            partition_series: self.partition_series,
        }
    }
}

/// What `GET /v1/status` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub uptime_seconds: f64,
    pub shards: usize,
    pub partitions_open: u64,
    pub partitions_unopened: u64,
    pub log_size_bytes: u64,
    pub data_dir: String,
    /// Free bytes on the data directory's filesystem (for a non-root user).
    pub disk_free_bytes: Option<u64>,
    pub connections_open: u64,
}

/// A running admin listener; stops when dropped.
pub struct AdminServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` and serves on a thread of its own.
    pub fn start(addr: SocketAddr, state: AdminState) -> std::io::Result<AdminServer> {
        let server =
            tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the admin listener is not on an IP address"))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    respond(&state, request);
                }
            })?;
        Ok(AdminServer {
            addr,
            server,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn text(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header =
        tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

fn respond(state: &AdminState, request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let get = matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let response = match (get, path.as_str()) {
        (false, _) => text(405, "only GET\n".into(), "text/plain"),
        (true, "/metrics") => match state.snapshots() {
            Ok(shards) => match exposition::render(&state.info(), &shards) {
                Ok(body) => text(200, body, exposition::CONTENT_TYPE),
                Err(e) => text(500, format!("{e}\n"), "text/plain"),
            },
            Err(e) => text(503, format!("{e}\n"), "text/plain"),
        },
        (true, "/v1/status/live") => text(200, "live\n".into(), "text/plain"),
        (true, "/v1/status/ready") => {
            if state.ready() {
                text(200, "ready\n".into(), "text/plain")
            } else if state.stopping.load(Ordering::Acquire) {
                text(503, "stopping\n".into(), "text/plain")
            } else {
                text(
                    503,
                    format!(
                        "starting: {} of {} shards have opened their partitions\n",
                        state.shards_opened.load(Ordering::Acquire),
                        state.router.shards()
                    ),
                    "text/plain",
                )
            }
        }
        (true, "/v1/status") => match state.snapshots() {
            Ok(shards) => {
                let status = Status {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ready: state.ready(),
                    uptime_seconds: state.started.elapsed().as_secs_f64(),
                    shards: shards.len(),
                    partitions_open: shards.iter().map(|s| s.partitions.len() as u64).sum(),
                    partitions_unopened: shards.iter().map(|s| s.partitions_unopened).sum(),
                    log_size_bytes: shards
                        .iter()
                        .flat_map(|s| &s.partitions)
                        .map(|p| p.bytes)
                        .sum(),
                    data_dir: state.data_dir.display().to_string(),
                    disk_free_bytes: crate::shard::journal::free_bytes(&state.data_dir),
                    connections_open: shards.iter().map(|s| s.connections_open).sum(),
                };
                let body = serde_json::to_string_pretty(&status).expect("plain data");
                text(200, body + "\n", "application/json")
            }
            Err(e) => text(503, format!("{e}\n"), "text/plain"),
        },
        (true, _) => text(
            404,
            "not found: try /metrics, /v1/status, /v1/status/ready, /v1/status/live\n".into(),
            "text/plain",
        ),
    };
    // A client that went away is not the broker's problem.
    let _ = request.respond(response);
}
