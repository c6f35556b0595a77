//! Remoting server: accept loop, one read task and one write task per connection, requests
//! dispatched to a [`RequestProcessor`], server-initiated requests over the same connection.
//! OWNER: remoting helper.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::{RemotingCommand, RemotingError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One accepted client connection. Cheap to clone (Arc inside); can send responses later
/// (long polling) and server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED, ...).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnectionInner>,
}

struct ConnectionInner {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    // remoting helper: writer channel, pending server-initiated requests, closed flag
}

impl Connection {
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
        todo!("remoting helper")
    }
    /// Queues a frame (response or oneway request) for writing. Err if the connection closed.
    pub fn send(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        let _ = cmd;
        todo!("remoting helper")
    }
    /// Server-initiated request awaiting the client's response (opaque from the server's own
    /// counter).
    pub async fn invoke(
        &self,
        cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        let _ = (cmd, timeout_ms);
        todo!("remoting helper")
    }
}

/// Handles requests of one server. Returning `None` means "no response now" (oneway request,
/// or a parked long-poll whose response is sent later through `conn.send`).
/// The server itself answers oneway requests with nothing, even if `Some` is returned.
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

/// A listening remoting server.
pub struct RemotingServer {
    local_addr: SocketAddr,
}

impl RemotingServer {
    /// Binds `addr` and spawns the accept loop (through `rt`). Malformed frames close the
    /// offending connection with a logged reason.
    pub async fn bind(
        addr: SocketAddr,
        processor: Arc<dyn RequestProcessor>,
    ) -> Result<RemotingServer, RemotingError> {
        let _ = (addr, processor);
        todo!("remoting helper")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}
