//! The Kafka listener of one shard and its connections. Requests on one
//! connection take effect in order and are answered in order, as Kafka
//! does; a produce request lets the next request start once its batches are
//! appended, so its wait for the disk overlaps the next one's work (up to
//! [`PIPELINE_DEPTH`] requests per connection).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;

use bytes::{Buf, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use rill_net::frame::{next_frame, Frame};
use rill_net::kafka_protocol::messages::{ApiKey, ResponseKind};
use rill_net::request::{decode_request, RequestError};
use rill_net::response::encode_response;
use rill_net::versions;
use socket2::{Domain, Protocol, Socket, Type};

use crate::api::{Admission, Connection};
use crate::shard::Shard;

/// A listening socket with `SO_REUSEPORT`, so every shard binds the same
/// address and the kernel spreads connections over them.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// How long shutdown waits for connections to finish the request they are
/// reading or running before the logs are closed under them.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// At shutdown, how long a connection may take to finish sending a request
/// it has begun before it is closed without an answer.
pub const PARTIAL_REQUEST_GRACE_MS: u64 = 1_000;

/// Accepts connections until shutdown begins, then waits (at most
/// [`SHUTDOWN_GRACE_MS`]) until every connection has finished its requests
/// and closed, so the caller can close the logs with nothing in flight.
pub async fn serve(shard: Rc<Shard>, listener: std::net::TcpListener) {
    // SAFETY: the fd comes from a listening socket we own and hand over whole.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let open = Rc::new(Cell::new(0usize));
    let closed = Rc::new(rill_storage::signal::Signal::default());
    // Failed accepts in a row (out of descriptors, most likely): the loop
    // backs off to a second between tries and logs the first failure and
    // then one in a hundred, not a line every few milliseconds.
    let mut failing = 0u32;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopped().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                if failing > 0 {
                    tracing::info!(shard = shard.id, failed = failing, "accepting again");
                    failing = 0;
                }
                let (shard, open, closed) = (shard.clone(), open.clone(), closed.clone());
                open.set(open.get() + 1);
                let counters = &shard.counters;
                counters
                    .connections_accepted
                    .set(counters.connections_accepted.get() + 1);
                counters.connections_open.set(open.get() as u64);
                glommio::spawn_local(async move {
                    let peer = stream.peer_addr().ok();
                    if let Err(e) = connection(&shard, stream).await {
                        tracing::debug!(shard = shard.id, ?peer, error = %e, "connection ended");
                    }
                    open.set(open.get() - 1);
                    shard.counters.connections_open.set(open.get() as u64);
                    closed.notify_all();
                })
                .detach();
            }
            Some(Err(e)) => {
                if failing.is_multiple_of(100) {
                    tracing::warn!(shard = shard.id, error = %e, failed_in_a_row = failing + 1, "accept failed");
                }
                failing = failing.saturating_add(1);
                let wait_ms = 10u64 << failing.min(7);
                glommio::timer::sleep(std::time::Duration::from_millis(wait_ms.min(1000))).await;
            }
        }
    }
    let drained = futures_lite::future::or(
        async {
            closed.wait_until(|| (open.get() == 0).then_some(())).await;
            true
        },
        async {
            glommio::timer::sleep(std::time::Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
            false
        },
    )
    .await;
    if !drained {
        tracing::warn!(
            shard = shard.id,
            connections = open.get(),
            "connections still busy after the shutdown grace period; closing the logs anyway"
        );
    }
}

/// A request being handled; dropping it does not cancel it.
type RequestTask = glommio::task::JoinHandle<Reply>;

/// Bytes read from the socket at a time when no frame size is known yet.
const READ_CHUNK: usize = 64 << 10;

/// Most bytes made room for (and zero-filled) per socket read. A read
/// returns what has arrived, often far less than the rest of a large frame;
/// making room for the whole remainder each time zero-filled it again and
/// again (8 % of broker CPU at 1 MiB produce requests).
const READ_ROOM_MAX: usize = 256 << 10;

/// Requests of one connection started and not yet answered, at most.
pub const PIPELINE_DEPTH: usize = 8;

async fn connection(shard: &Rc<Shard>, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let connection = Rc::new(Connection {
        peer: stream.peer_addr().ok(),
        ..Connection::default()
    });
    let (mut stream, mut writer) = futures_lite::io::split(stream);
    // Answers leave in request order: the writer awaits each request's task
    // in turn. The tasks are detached: a request once started runs to its
    // end even if the connection dies (a cancelled append would leave the
    // log half-changed); only its answer is lost.
    let (tx, rx) = async_channel::bounded::<RequestTask>(PIPELINE_DEPTH);
    let writer_task = glommio::spawn_local(async move {
        while let Ok(task) = rx.recv().await {
            match task.await {
                Some(Reply::Send(out)) => {
                    // Record data goes out from the buffers it was read
                    // into (see `ResponseFrame`).
                    for part in out.parts() {
                        writer.write_all(part).await?;
                    }
                }
                Some(Reply::Nothing) => {}
                Some(Reply::Close(_)) | None => break,
            }
        }
        writer.close().await
    });
    let closing = Rc::new(Cell::new(false));
    let read_result = read_requests(shard, &connection, &mut stream, &tx, &closing).await;
    drop(tx);
    let write_result = writer_task.await;
    read_result.and(write_result)
}

async fn read_requests(
    shard: &Rc<Shard>,
    connection: &Rc<Connection>,
    stream: &mut futures_lite::io::ReadHalf<TcpStream>,
    tx: &async_channel::Sender<RequestTask>,
    closing: &Rc<Cell<bool>>,
) -> io::Result<()> {
    let max_request = shard.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // The request before this one, until it admits the next.
    let mut unadmitted: Option<async_channel::Receiver<()>> = None;
    loop {
        let frame = match next_frame(&mut buf, max_request) {
            Ok(Frame::Complete(f)) => f,
            Ok(Frame::Incomplete {
                frame_bytes: Some(whole),
            }) if whole > READ_ROOM_MAX => {
                // A large frame is read into a buffer of its own size:
                // no regrowing (each a copy of what came so far), no
                // zero-filling beyond what the allocator gives zeroed, and
                // the frame does not hold a buffer shared with the next.
                // Smaller frames share the connection's buffer, so that one
                // read can take several (a single partition's 64 KiB
                // batches: two reads a frame otherwise).
                let mut frame = BytesMut::zeroed(whole);
                let mut have = buf.len();
                frame[..have].copy_from_slice(&buf);
                buf.clear();
                while have < whole {
                    let to = (have + READ_ROOM_MAX).min(whole);
                    match read_or_stop(shard, stream, &mut frame[have..to], true).await? {
                        0 => return Ok(()),
                        n => have += n,
                    }
                }
                frame.advance(4);
                frame.freeze()
            }
            Ok(Frame::Incomplete { frame_bytes }) => {
                if shard.stopping.get() && buf.is_empty() {
                    return Ok(());
                }
                let want = frame_bytes
                    .map(|n| n - buf.len())
                    .unwrap_or(READ_CHUNK)
                    .max(READ_CHUNK.min(max_request))
                    .min(READ_ROOM_MAX);
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = read_or_stop(shard, stream, &mut buf[start..], start != 0).await?;
                buf.truncate(start + n);
                if n == 0 {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "refusing frame, closing connection");
                return Ok(());
            }
        };
        // A request starts once the one before admits it (Produce: once
        // appended; anything else: once answered). After a Produce the
        // next request is read meanwhile: its bytes take several reads,
        // each a trip through the reactor, which otherwise came after the
        // append.
        if let Some(admitted) = unadmitted.take() {
            let _ = admitted.recv().await;
            if closing.get() {
                return Ok(());
            }
        }
        let produce = frame.get(..2) == Some(&[0, 0]);
        let (admission, admitted) = Admission::new();
        let (task_shard, task_closing, task_connection) =
            (shard.clone(), closing.clone(), connection.clone());
        let task = glommio::spawn_local(async move {
            let reply = respond_admitting(&task_shard, &task_connection, frame, admission).await;
            if let Reply::Close(reason) = &reply {
                tracing::warn!(shard = task_shard.id, %reason, "closing connection");
                task_closing.set(true);
            }
            reply
        })
        .detach();
        if tx.send(task).await.is_err() {
            return Ok(()); // the writer stopped
        }
        if produce {
            unadmitted = Some(admitted);
        } else {
            let _ = admitted.recv().await;
            if closing.get() {
                return Ok(());
            }
        }
    }
}

/// Reads what has arrived into `into`; 0 at the end of the stream or once
/// the shard stops (idle connections close at shutdown; a request partly
/// read gets a moment more to arrive whole).
async fn read_or_stop(
    shard: &Shard,
    stream: &mut futures_lite::io::ReadHalf<TcpStream>,
    into: &mut [u8],
    partial: bool,
) -> io::Result<usize> {
    let read = futures_lite::future::or(async { Some(stream.read(into).await) }, async {
        shard.stopped().await;
        if partial {
            glommio::timer::sleep(std::time::Duration::from_millis(PARTIAL_REQUEST_GRACE_MS)).await;
        }
        None
    })
    .await;
    read.unwrap_or(Ok(0))
}

/// What to do after a request frame.
pub enum Reply {
    /// Write this response frame.
    Send(rill_net::response::ResponseFrame),
    /// Send nothing (produce with acks=0).
    Nothing,
    /// Not a request we can answer: close the connection.
    Close(String),
}

/// Decodes one request frame, handles it and encodes the answer. Never
/// panics on any input (the fuzz target drives this function).
pub async fn respond(shard: &Rc<Shard>, frame: bytes::Bytes) -> Reply {
    respond_admitting(shard, &Connection::default(), frame, Admission::default()).await
}

/// [`respond`], admitting the connection's next request as early as the
/// request allows (see [`Admission`]); the admission is dropped, at the
/// latest, with the answer.
pub async fn respond_admitting(
    shard: &Rc<Shard>,
    connection: &Connection,
    frame: bytes::Bytes,
    mut admission: Admission,
) -> Reply {
    let request = match decode_request(frame) {
        Ok(r) => r,
        Err(RequestError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            version,
            correlation_id,
        }) => {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our versions.
            tracing::debug!(version, "ApiVersions version not supported");
            let body = ResponseKind::ApiVersions(versions::api_versions_response(
                rill_net::kafka_protocol::ResponseError::UnsupportedVersion.code(),
            ));
            return match encode_response(ApiKey::ApiVersions, 0, correlation_id, &body) {
                Ok(out) => Reply::Send(out),
                Err(e) => Reply::Close(e.to_string()),
            };
        }
        Err(e) => return Reply::Close(format!("bad request: {e}")),
    };
    let (api_key, version, correlation_id) = (
        request.api_key,
        request.version,
        request.header.correlation_id,
    );
    if request.trailing_bytes > 0 {
        tracing::debug!(
            api = ?api_key,
            version,
            trailing = request.trailing_bytes,
            "ignoring bytes after a well-formed request body"
        );
    }
    let started = std::time::Instant::now();
    let answer = crate::api::handle_admitting(shard, connection, request, &mut admission).await;
    let counters = &shard.counters;
    counters.request_done(api_key as i16, started.elapsed());
    let Some(body) = answer else {
        return Reply::Nothing;
    };
    crate::metrics::errors::error_codes(&body, |code| counters.error(api_key as i16, code));
    match encode_response(api_key, version, correlation_id, &body) {
        Ok(out) => Reply::Send(out),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a response");
            Reply::Close(format!("cannot encode the response: {e}"))
        }
    }
}
