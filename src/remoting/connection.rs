//! One remoting connection, shared by the server (accepted sockets) and the client (dialled
//! sockets): a reader task that splits frames and routes them (responses to waiting invokes by
//! opaque, requests to the processor, one task per request), and a writer task that batches
//! queued frames into as few writes as possible and flushes after each batch (madsim only
//! sends on flush). OWNER: remoting helper.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, Notify};

use super::codec;
use super::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use super::server::RequestProcessor;
use super::{RemotingCommand, RemotingError};
use crate::rt;
use crate::rt::net::TcpStream;

/// Bytes reserved ahead of each socket read when no larger frame is known to be coming.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Below this much spare room the read buffer is grown before the next read.
const READ_SPARE_MIN_BYTES: usize = 4 * 1024;
/// Upper bound of a single reservation for a large announced frame (the buffer grows in steps).
const READ_RESERVE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Bodies up to this size are copied into the write batch; larger ones are queued as their own
/// segment and written from their own buffer, so big messages are never copied.
const COPY_BODY_MAX_BYTES: usize = 16 * 1024;
/// How long a closed connection may keep writing frames queued before the close.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Initial capacity of a connection's write batch buffer.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A write batch buffer that grew beyond this during a burst is replaced by a fresh small one.
const WRITE_BATCH_KEEP_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Called once after the connection closed (after the processor's `on_connection_closed`).
pub(crate) type CloseHook = Box<dyn FnOnce(&Connection) + Send + 'static>;

/// One remoting connection (accepted by a server or dialled by a client). Cheap to clone
/// (Arc inside); can send responses later (long polling) and requests that await the peer's
/// response (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnectionInner>,
}

struct ConnectionInner {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    /// Frames queued for the writer task; `send` encodes straight into it (no per-frame
    /// allocation, natural batching of everything queued while the writer was busy).
    outbox: Mutex<Outbox>,
    /// Wakes the writer when the outbox gains data or the connection closes.
    writer_wake: Notify,
    closed: AtomicBool,
    /// Requests sent by this side awaiting the peer's response, by opaque.
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    /// Opaque counter shared by all connections of one server or one client instance.
    opaque_counter: Arc<AtomicI32>,
    /// Wakes the reader when the connection is closed from this side.
    reader_stop: Notify,
}

#[derive(Default)]
struct Outbox {
    /// Complete earlier parts of the stream (flushed batch prefixes and large bodies), in order.
    segments: Vec<Bytes>,
    /// Bytes that follow all `segments`: encoded headers and small bodies.
    batch: BytesMut,
    /// Set by `close`: the writer writes what is queued, then drops the socket.
    closing: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("peer_addr", &self.inner.peer_addr)
            .field("local_addr", &self.inner.local_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Takes over `stream`: spawns its reader and writer tasks. Requests from the peer go to
    /// `processor` (None: answered with REQUEST_CODE_NOT_SUPPORTED).
    pub(crate) fn start(
        stream: TcpStream,
        processor: Option<Arc<dyn RequestProcessor>>,
        opaque_counter: Arc<AtomicI32>,
        on_close: Option<CloseHook>,
    ) -> Result<Connection, RemotingError> {
        let peer_addr = stream.peer_addr()?;
        let local_addr = stream.local_addr()?;
        // Small request/response frames must not wait for Nagle; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            inner: Arc::new(ConnectionInner {
                // Random rather than a process-global counter (no statics); seeded and thus
                // deterministic under madsim.
                id: rt::random_u64(),
                peer_addr,
                local_addr,
                outbox: Mutex::new(Outbox {
                    batch: BytesMut::with_capacity(WRITE_BATCH_BYTES),
                    ..Outbox::default()
                }),
                writer_wake: Notify::new(),
                closed: AtomicBool::new(false),
                pending: Mutex::new(HashMap::new()),
                opaque_counter,
                reader_stop: Notify::new(),
            }),
        };
        let (reader, writer) = tokio::io::split(stream);
        rt::spawn(write_loop(conn.clone(), writer));
        rt::spawn(read_loop(conn.clone(), reader, processor, on_close));
        Ok(conn)
    }

    /// Process-unique id of this connection (stable for its lifetime).
    pub fn id(&self) -> u64 {
        self.inner.id
    }
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Queues a frame (response or oneway request) for writing. Err if the connection closed
    /// or the frame cannot be encoded (FrameTooLarge).
    pub fn send(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        {
            let mut outbox = self.outbox();
            // Checked under the outbox lock: nothing is queued after the writer's last take.
            if outbox.closing {
                return Err(self.closed_error());
            }
            codec::encode_header_into(&cmd, &mut outbox.batch)?;
            if cmd.body.len() <= COPY_BODY_MAX_BYTES {
                outbox.batch.extend_from_slice(&cmd.body);
            } else {
                let prefix = outbox.batch.split().freeze();
                outbox.segments.push(prefix);
                outbox.segments.push(cmd.body);
            }
        }
        self.inner.writer_wake.notify_one();
        Ok(())
    }

    /// Sends `cmd` as a oneway request (opaque from this side's counter, ONEWAY flag set).
    pub fn send_oneway(&self, mut cmd: RemotingCommand) -> Result<(), RemotingError> {
        cmd.opaque = self.next_opaque();
        cmd.flag = (cmd.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        self.send(cmd)
    }

    /// Sends a request and awaits the peer's response, matched by opaque (assigned here from
    /// this side's counter). Timeout and close remove the pending entry.
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        let opaque = self.next_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        let previous = self.pending().insert(opaque, tx);
        debug_assert!(previous.is_none(), "opaque {opaque} reused while in flight");
        // Removes the entry on every exit path, including this future being dropped.
        let _guard = PendingGuard { conn: self, opaque };
        // close() sets `closed` before draining `pending`: checking after inserting means
        // either we see the close here or the drain sees our entry.
        if self.is_closed() {
            return Err(self.closed_error());
        }
        self.send(cmd)?;
        match rt::timeout(Duration::from_millis(timeout_ms), rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(RemotingError::Timeout {
                addr: self.inner.peer_addr.to_string(),
                timeout_ms,
            }),
        }
    }

    /// Closes the connection: fails waiting invokes, writes what is already queued, then drops
    /// the socket. Idempotent. The processor's `on_connection_closed` runs once, afterwards.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Dropping the senders wakes every waiting invoke with "connection closed".
        let drained: Vec<_> = self.pending().drain().collect();
        drop(drained);
        self.outbox().closing = true;
        self.inner.writer_wake.notify_one();
        self.inner.reader_stop.notify_one();
    }

    /// Number of requests from this side still awaiting a response.
    pub fn pending_count(&self) -> usize {
        self.pending().len()
    }

    fn next_opaque(&self) -> i32 {
        self.inner.opaque_counter.fetch_add(1, Ordering::Relaxed)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<RemotingCommand>>> {
        // A poisoned map only means a panic elsewhere while holding it; the map stays usable.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.inner
            .outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed_error(&self) -> RemotingError {
        RemotingError::ConnectionClosed {
            addr: self.inner.peer_addr.to_string(),
        }
    }

    fn complete(&self, response: RemotingCommand) {
        let waiter = self.pending().remove(&response.opaque);
        match waiter {
            Some(tx) => {
                // The waiter may have given up (timeout) in the meantime: nothing to do.
                let _ = tx.send(response);
            }
            None => tracing::debug!(
                peer = %self.inner.peer_addr,
                opaque = response.opaque,
                code = response.code,
                "response for no pending request (timed out?), dropped"
            ),
        }
    }

    fn dispatch(&self, request: RemotingCommand, processor: &Option<Arc<dyn RequestProcessor>>) {
        let Some(processor) = processor else {
            if !request.is_oneway() {
                let _ = self.send(request.not_supported());
            }
            return;
        };
        let conn = self.clone();
        let processor = processor.clone();
        // One task per request: a parked long poll must never block the connection.
        rt::spawn(async move {
            let oneway = request.is_oneway();
            let opaque = request.opaque;
            let response = process_request(processor, conn.clone(), request).await;
            if oneway {
                return;
            }
            if let Some(mut response) = response {
                response.opaque = opaque;
                response.flag = (response.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
                if let Err(e) = conn.send(response) {
                    tracing::debug!(peer = %conn.peer_addr(), opaque, error = %e, "response not sent");
                }
            }
        });
    }
}

struct PendingGuard<'a> {
    conn: &'a Connection,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending().remove(&self.opaque);
    }
}

/// Production: a panicking processor answers SYSTEM_ERROR instead of leaving the client to time
/// out. Simulation: the panic propagates so the seed fails loudly.
async fn process_request(
    processor: Arc<dyn RequestProcessor>,
    conn: Connection,
    request: RemotingCommand,
) -> Option<RemotingCommand> {
    #[cfg(not(madsim))]
    {
        use futures::FutureExt;
        let error_response = request.response(
            super::response_code::SYSTEM_ERROR,
            format!("processor panicked on request code {}", request.code),
        );
        let code = request.code;
        match std::panic::AssertUnwindSafe(processor.process(conn, request))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(code, "request processor panicked");
                Some(error_response)
            }
        }
    }
    #[cfg(madsim)]
    {
        processor.process(conn, request).await
    }
}

/// Closes the connection if its task is dropped without finishing (runtime shutdown, a killed
/// madsim node): a connection whose reader or writer is gone must not look open, or invokes on
/// it would wait for their timeout and the client would never reconnect.
struct CloseOnDrop<'a>(&'a Connection);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

enum CloseReason {
    Eof,
    Local,
    Io(std::io::Error),
    Protocol(RemotingError),
}

async fn read_loop(
    conn: Connection,
    mut reader: ReadHalf<TcpStream>,
    processor: Option<Arc<dyn RequestProcessor>>,
    on_close: Option<CloseHook>,
) {
    let _close_on_drop = CloseOnDrop(&conn);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let reason = 'read: loop {
        loop {
            match codec::try_split_frame(&mut buf) {
                Ok(Some(frame)) => match codec::decode(frame) {
                    Ok(cmd) if cmd.is_response() => conn.complete(cmd),
                    Ok(cmd) => conn.dispatch(cmd, &processor),
                    Err(e) => break 'read CloseReason::Protocol(e),
                },
                Ok(None) => break,
                Err(e) => break 'read CloseReason::Protocol(e),
            }
        }
        if conn.is_closed() {
            break CloseReason::Local;
        }
        // Reserve room for the whole announced frame (in bounded steps) so a large body is
        // read without repeated regrowth.
        let announced = match codec::peek_frame_length(&buf) {
            Ok(Some(length)) => codec::LENGTH_FIELD_BYTES + length,
            _ => 0,
        };
        let missing = announced
            .saturating_sub(buf.len())
            .min(READ_RESERVE_MAX_BYTES);
        // Decoded bodies share this buffer, so regrowing it allocates anew: only do so when
        // the spare room is really short, and then by at least a whole chunk.
        if buf.capacity() - buf.len() < missing.max(READ_SPARE_MIN_BYTES) {
            buf.reserve(missing.max(READ_CHUNK_BYTES));
        }
        let read = rt::select! {
            biased;
            _ = conn.inner.reader_stop.notified() => break CloseReason::Local,
            read = reader.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => break CloseReason::Eof,
            Ok(_) => {}
            Err(e) => break CloseReason::Io(e),
        }
    };
    let peer = conn.peer_addr();
    match &reason {
        CloseReason::Protocol(e) => {
            tracing::warn!(%peer, reason = %e, "closing connection after bad frame")
        }
        CloseReason::Io(e) => tracing::debug!(%peer, error = %e, "connection read failed"),
        CloseReason::Eof => tracing::debug!(%peer, "connection closed by peer"),
        CloseReason::Local => tracing::debug!(%peer, "connection closed locally"),
    }
    conn.close();
    drop(reader);
    if let Some(processor) = &processor {
        processor.on_connection_closed(&conn);
    }
    if let Some(hook) = on_close {
        hook(&conn);
    }
}

async fn write_loop(conn: Connection, mut writer: WriteHalf<TcpStream>) {
    let _close_on_drop = CloseOnDrop(&conn);
    loop {
        let (segments, batch, closing) = {
            let mut outbox = conn.outbox();
            let segments = std::mem::take(&mut outbox.segments);
            let batch = outbox.batch.split().freeze();
            if outbox.batch.capacity() > WRITE_BATCH_KEEP_MAX_BYTES {
                outbox.batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
            }
            (segments, batch, outbox.closing)
        };
        if segments.is_empty() && batch.is_empty() {
            if closing {
                break;
            }
            // notify_one keeps a permit, so a send between the take and here is not missed.
            conn.inner.writer_wake.notified().await;
            continue;
        }
        // Everything queued so far goes out in one batch, then one flush (madsim sends on
        // flush). A peer that stops reading must not pin a closed connection forever: once
        // closed, queued frames get CLOSE_LINGER to drain.
        let result = rt::select! {
            biased;
            _ = linger_after_close(&conn) => {
                tracing::debug!(peer = %conn.peer_addr(), "peer not reading; dropping queued frames");
                break;
            }
            result = write_batch(&mut writer, &segments, &batch) => result,
        };
        if let Err(e) = result {
            tracing::debug!(peer = %conn.peer_addr(), error = %e, "connection write failed");
            break;
        }
    }
    let _ = writer.shutdown().await;
    // A write failure means this connection is unusable; after a close this is a no-op.
    conn.close();
}

async fn write_batch(
    writer: &mut WriteHalf<TcpStream>,
    segments: &[Bytes],
    batch: &Bytes,
) -> std::io::Result<()> {
    for segment in segments.iter().chain(std::iter::once(batch)) {
        if !segment.is_empty() {
            writer.write_all(segment).await?;
        }
    }
    writer.flush().await
}

/// Resolves CLOSE_LINGER after the connection is closed (never while it is open).
async fn linger_after_close(conn: &Connection) {
    loop {
        if conn.is_closed() {
            rt::sleep(CLOSE_LINGER).await;
            return;
        }
        // close() notifies this Notify; a permit consumed here only means the writer does one
        // more (possibly empty) outbox take.
        conn.inner.writer_wake.notified().await;
    }
}
