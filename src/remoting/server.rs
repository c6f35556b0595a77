//! Remoting server: accept loop, one read task and one write task per connection, requests
//! dispatched to a [`RequestProcessor`], server-initiated requests over the same connection.
//! OWNER: remoting helper.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub use super::connection::Connection;
use super::{RemotingCommand, RemotingError};
use crate::rt;
use crate::rt::net::TcpListener;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Handles requests of one server. Returning `None` means "no response now" (oneway request,
/// or a parked long-poll whose response is sent later through `conn.send`).
/// The server itself answers oneway requests with nothing, even if `Some` is returned.
/// The response's opaque and RESPONSE flag are set by the server.
pub trait RequestProcessor: Send + Sync + 'static {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>>;

    /// Called once when a connection closes (namesrv drops its brokers' routes, the broker
    /// unregisters the connection's clients).
    fn on_connection_closed(&self, conn: &Connection) {
        let _ = conn;
    }
}

/// A listening remoting server. Dropping it does not stop it (the accept loop runs as its own
/// task); call [`RemotingServer::shutdown`] for that.
pub struct RemotingServer {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
}

struct ServerShared {
    connections: Mutex<HashMap<u64, Connection>>,
    stopped: AtomicBool,
    stop_accepting: Notify,
    /// Becomes true once the accept loop has exited and the listening socket is released.
    listener_released: tokio::sync::watch::Sender<bool>,
    /// Opaque counter for server-initiated requests, shared by all connections.
    opaque_counter: Arc<AtomicI32>,
}

impl ServerShared {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RemotingServer {
    /// Binds `addr` and spawns the accept loop (through `rt`). Malformed frames close the
    /// offending connection with a logged reason.
    pub async fn bind(
        addr: SocketAddr,
        processor: Arc<dyn RequestProcessor>,
    ) -> Result<RemotingServer, RemotingError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            RemotingError::Io(std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))
        })?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(ServerShared {
            connections: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            stop_accepting: Notify::new(),
            listener_released: tokio::sync::watch::channel(false).0,
            opaque_counter: Arc::new(AtomicI32::new(0)),
        });
        rt::spawn(accept_loop(listener, processor, shared.clone()));
        tracing::info!(%local_addr, "remoting server listening");
        Ok(RemotingServer { local_addr, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The currently open connections.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.connections().values().cloned().collect()
    }

    /// Stops accepting (the listening socket is released) and closes every connection
    /// (queued frames are still written; `on_connection_closed` runs for each). Idempotent.
    pub fn shutdown(&self) {
        if self.shared.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stop_accepting.notify_one();
        let open: Vec<Connection> = self.shared.connections().values().cloned().collect();
        for conn in open {
            conn.close();
        }
        tracing::info!(local_addr = %self.local_addr, "remoting server shut down");
    }

    /// Resolves once, after [`shutdown`](Self::shutdown), the listening socket is released (the
    /// address can be bound again). Returns at once if that already happened.
    pub async fn wait_stopped(&self) {
        let mut released = self.shared.listener_released.subscribe();
        // The sender lives in `shared`, which we hold: wait_for only fails if it is dropped.
        let _ = released.wait_for(|released| *released).await;
    }

    pub fn is_shutdown(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    processor: Arc<dyn RequestProcessor>,
    shared: Arc<ServerShared>,
) {
    loop {
        let accepted = rt::select! {
            biased;
            _ = shared.stop_accepting.notified() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                rt::sleep_ms(10).await;
                continue;
            }
        };
        let hook_shared = shared.clone();
        let on_close = Box::new(move |conn: &Connection| {
            hook_shared.connections().remove(&conn.id());
        });
        let conn = match Connection::start(
            stream,
            Some(processor.clone()),
            shared.opaque_counter.clone(),
            Some(on_close),
        ) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up accepted connection");
                continue;
            }
        };
        tracing::debug!(peer = %conn.peer_addr(), id = conn.id(), "connection accepted");
        shared.connections().insert(conn.id(), conn.clone());
        // The close hook may already have run (peer gone at once), or shutdown may have raced
        // us: both set `closed` before looking at the table, so re-check after inserting.
        if conn.is_closed() {
            shared.connections().remove(&conn.id());
        }
        if shared.stopped.load(Ordering::SeqCst) {
            conn.close();
        }
    }
    drop(listener);
    shared.listener_released.send_replace(true);
}
