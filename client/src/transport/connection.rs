//! One TCP connection to one broker on tokio: a writer task that coalesces
//! queued frames into few writes, a reader task that routes response frames
//! to their waiters by correlation id, and a bound on requests in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use rill_net::frame::{next_frame, Frame};

use crate::error::{Error, Result};
use crate::protocol::wire::{self, Versions};

type Waiter = oneshot::Sender<Result<Bytes>>;

struct Pending {
    waiters: HashMap<i32, Waiter>,
    /// Set once the connection failed: later requests fail at once.
    failed: Option<Error>,
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_response_bytes: usize,
}

pub struct Connection {
    addr: String,
    config: ConnectionConfig,
    tx: mpsc::UnboundedSender<BytesMut>,
    pending: Arc<Mutex<Pending>>,
    next_correlation: AtomicI32,
    in_flight: Arc<Semaphore>,
    alive: Arc<AtomicBool>,
    versions: Versions,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        let context = || format!("connecting to {addr}");
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(context()))?
            .map_err(|e| Error::io(context(), e))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending {
            waiters: HashMap::new(),
            failed: None,
        }));
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(write_loop(
            write,
            rx,
            pending.clone(),
            alive.clone(),
            addr.to_string(),
        ));
        tokio::spawn(read_loop(
            read,
            pending.clone(),
            alive.clone(),
            addr.to_string(),
            config.max_response_bytes,
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            tx,
            pending,
            next_correlation: AtomicI32::new(1),
            alive,
            versions: Versions::default(),
        };
        conn.versions = conn.negotiate().await?;
        Ok(conn)
    }

    async fn negotiate(&self) -> Result<Versions> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("rill-client");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let response: ApiVersionsResponse = self.send_versioned(&request, 3).await?;
        let response = if response.error_code == ResponseError::UnsupportedVersion.code() {
            // A broker older than v3: it answered v0 with what it supports.
            self.send_versioned(&ApiVersionsRequest::default(), 0)
                .await?
        } else {
            response
        };
        Error::check(response.error_code, || {
            format!("ApiVersions from {}", self.addr)
        })?;
        Ok(Versions::negotiate(&response))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// False once the socket failed; the owner should reconnect.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The negotiated version of `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions.get(api)
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send_versioned<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        self.start_versioned(request, version)
            .await?
            .finish(self)
            .await
    }

    /// Queues `request` for sending now (requests started one after another
    /// go out in that order) and returns its answer to wait for with
    /// [`Started::finish`].
    pub async fn start_versioned<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<Started<R>> {
        let permit = self.permit().await?;
        let (id, rx) = self.submit(request, version, true)?;
        Ok(Started {
            permit,
            id,
            version,
            rx: rx.expect("a response is expected"),
            _request: std::marker::PhantomData,
        })
    }

    /// Sends `request` at the negotiated version.
    pub async fn send<R: Request>(&self, request: &R) -> Result<(R::Response, i16)> {
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| Error::Protocol("unknown API key".into()))?;
        let version = self.version(api)?;
        Ok((self.send_versioned(request, version).await?, version))
    }

    /// Sends a request that gets no response (Produce with acks=0), still
    /// bounded by the in-flight limit while it is queued.
    pub async fn send_no_response<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        let _permit = self.permit().await?;
        self.submit(request, version, false).map(|_| ())
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)
    }

    fn failure(&self) -> Error {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.failed
            .clone()
            .unwrap_or_else(|| Error::io(format!("talking to {}", self.addr), "connection closed"))
    }

    fn submit<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<(i32, Option<oneshot::Receiver<Result<Bytes>>>)> {
        let id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode_request(request, version, id, &self.config.client_id)?;
        let rx = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = &p.failed {
                return Err(e.clone());
            }
            if expect_response {
                let (tx, rx) = oneshot::channel();
                p.waiters.insert(id, tx);
                Some(rx)
            } else {
                None
            }
        };
        if self.tx.send(frame).is_err() {
            return Err(self.failure());
        }
        Ok((id, rx))
    }
}

/// A request on its way: [`Started::finish`] waits for its answer.
pub struct Started<R> {
    permit: OwnedSemaphorePermit,
    id: i32,
    version: i16,
    rx: oneshot::Receiver<Result<Bytes>>,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> Started<R> {
    /// The answer, or the connection's failure, or a timeout after the
    /// connection's `request_timeout`.
    pub async fn finish(self, conn: &Connection) -> Result<R::Response> {
        let answer = tokio::time::timeout(conn.config.request_timeout, self.rx).await;
        drop(self.permit);
        let bytes = match answer {
            Err(_) => {
                let mut p = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.waiters.remove(&self.id);
                return Err(Error::Timeout(format!(
                    "{} request to {} after {:?}",
                    wire::api_name(ApiKey::try_from(R::KEY).unwrap_or(ApiKey::Metadata)),
                    conn.addr,
                    conn.config.request_timeout
                )));
            }
            Ok(Err(_)) => return Err(conn.failure()),
            Ok(Ok(r)) => r?,
        };
        wire::decode_response::<R>(bytes, self.version)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closing the channel ends the writer, which shuts the socket down.
        self.alive.store(false, Ordering::Relaxed);
    }
}

fn fail_all(pending: &Mutex<Pending>, alive: &AtomicBool, error: Error) {
    alive.store(false, Ordering::Relaxed);
    let waiters = {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        p.failed.get_or_insert(error.clone());
        std::mem::take(&mut p.waiters)
    };
    for (_, w) in waiters {
        let _ = w.send(Err(error.clone()));
    }
}

async fn write_loop(
    write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<BytesMut>,
    pending: Arc<Mutex<Pending>>,
    alive: Arc<AtomicBool>,
    addr: String,
) {
    let mut w = BufWriter::with_capacity(256 << 10, write);
    while let Some(frame) = rx.recv().await {
        let mut result = w.write_all(&frame).await;
        // Coalesce whatever else is queued into the same flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(f) => result = w.write_all(&f).await,
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(w.flush().await) {
            fail_all(&pending, &alive, Error::io(format!("writing to {addr}"), e));
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop(
    mut read: tokio::net::tcp::OwnedReadHalf,
    pending: Arc<Mutex<Pending>>,
    alive: Arc<AtomicBool>,
    addr: String,
    max_response_bytes: usize,
) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let error = loop {
        loop {
            let frame = match next_frame(&mut buf, max_response_bytes) {
                Ok(Frame::Complete(f)) if f.len() >= 4 => f,
                Ok(Frame::Complete(f)) => {
                    let e = Error::Protocol(format!(
                        "{addr} sent a response frame of {} bytes",
                        f.len()
                    ));
                    fail_all(&pending, &alive, e);
                    return;
                }
                Ok(Frame::Incomplete { frame_bytes }) => {
                    if let Some(n) = frame_bytes {
                        buf.reserve(n.saturating_sub(buf.len()));
                    }
                    break;
                }
                Err(e) => {
                    let e = Error::Protocol(format!("{addr} sent a bad response frame: {e}"));
                    fail_all(&pending, &alive, e);
                    return;
                }
            };
            let id = wire::peek_correlation_id(&frame).expect("length checked");
            let waiter = pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiters
                .remove(&id);
            match waiter {
                Some(w) => {
                    let _ = w.send(Ok(frame));
                }
                None => tracing::debug!(%addr, id, "response nobody waits for"),
            }
        }
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => {
                break Error::io(
                    format!("reading from {addr}"),
                    "the broker closed the connection",
                )
            }
            Ok(_) => {}
            Err(e) => break Error::io(format!("reading from {addr}"), e),
        }
    };
    fail_all(&pending, &alive, error);
}
