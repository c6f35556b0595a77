//! Remoting client: a connection per address, opaque matching, timeouts, oneway, and an optional
//! processor for server-initiated requests. Used by the broker (to namesrv), mqadmin, the
//! simulation workload and mqbench. OWNER: remoting helper.

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::server::RequestProcessor;
use super::{Connection, RemotingCommand, RemotingError};
use crate::rt;
use crate::rt::net::TcpStream;

/// Connect timeout for oneway sends, which have no caller-given deadline (RocketMQ's
/// `connectTimeoutMillis` default).
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Cheap to clone; connections are cached per address and re-established on demand.
/// Dropping the last clone closes its connections.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    handler: Option<Arc<dyn RequestProcessor>>,
    /// Live (or recently closed, replaced on next use) connections by "ip:port".
    connections: Mutex<HashMap<String, Connection>>,
    /// Per-address connect locks so concurrent first requests open one connection.
    connect_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Opaque counter of this client instance, shared by its connections.
    opaque_counter: Arc<AtomicI32>,
}

impl Default for RemotingClient {
    fn default() -> Self {
        RemotingClient::build(None)
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let connections = self
            .connections
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, conn) in connections.drain() {
            conn.close();
        }
    }
}

impl RemotingClient {
    pub fn new() -> Self {
        RemotingClient::build(None)
    }

    /// A client whose connections hand server-initiated requests to `handler` (its response
    /// is written back with the request's opaque; nothing for oneway requests). The handler's
    /// `on_connection_closed` runs when one of this client's connections closes. Without a
    /// handler such requests are answered REQUEST_CODE_NOT_SUPPORTED.
    pub fn with_handler(handler: Arc<dyn RequestProcessor>) -> Self {
        RemotingClient::build(Some(handler))
    }

    fn build(handler: Option<Arc<dyn RequestProcessor>>) -> Self {
        RemotingClient {
            inner: Arc::new(ClientInner {
                handler,
                connections: Mutex::new(HashMap::new()),
                connect_locks: Mutex::new(HashMap::new()),
                opaque_counter: Arc::new(AtomicI32::new(0)),
            }),
        }
    }

    /// Sends `request` to `addr` ("ip:port") and awaits the matching response. `timeout_ms`
    /// covers connecting and the round trip; on timeout the connection stays open.
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        let started = rt::now();
        let conn = self.connection(addr, timeout_ms).await?;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let remaining_ms = timeout_ms.saturating_sub(elapsed_ms);
        if remaining_ms == 0 {
            return Err(RemotingError::Timeout {
                addr: addr.to_string(),
                timeout_ms,
            });
        }
        conn.invoke(request, remaining_ms)
            .await
            .map_err(|e| with_addr(e, addr, timeout_ms))
    }

    /// Sends `request` with the ONEWAY flag; no response is awaited.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<(), RemotingError> {
        let conn = self.connection(addr, CONNECT_TIMEOUT_MS).await?;
        conn.send_oneway(request)
            .map_err(|e| with_addr(e, addr, CONNECT_TIMEOUT_MS))
    }

    /// Closes the cached connection to `addr`, if any.
    pub fn close(&self, addr: &str) {
        let removed = self.connections().remove(addr);
        if let Some(conn) = removed {
            conn.close();
        }
    }

    /// The open connection to `addr`, connecting (within `timeout_ms`) if there is none.
    pub async fn connection(
        &self,
        addr: &str,
        timeout_ms: u64,
    ) -> Result<Connection, RemotingError> {
        if let Some(conn) = self.cached(addr) {
            return Ok(conn);
        }
        let lock = {
            let mut locks = self
                .inner
                .connect_locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(addr.to_string()).or_default().clone()
        };
        let deadline = Duration::from_millis(timeout_ms);
        let connect = async {
            let _guard = lock.lock().await;
            // Someone else may have connected while we waited for the lock.
            if let Some(conn) = self.cached(addr) {
                return Ok(conn);
            }
            let stream =
                TcpStream::connect(addr)
                    .await
                    .map_err(|source| RemotingError::Connect {
                        addr: addr.to_string(),
                        source,
                    })?;
            let conn = Connection::start(
                stream,
                self.inner.handler.clone(),
                self.inner.opaque_counter.clone(),
                None,
            )?;
            tracing::debug!(%addr, local = %conn.local_addr(), "connected");
            self.connections().insert(addr.to_string(), conn.clone());
            Ok(conn)
        };
        match rt::timeout(deadline, connect).await {
            Ok(result) => result,
            Err(_) => Err(RemotingError::Timeout {
                addr: addr.to_string(),
                timeout_ms,
            }),
        }
    }

    fn cached(&self, addr: &str) -> Option<Connection> {
        let mut connections = self.connections();
        match connections.get(addr) {
            Some(conn) if !conn.is_closed() => Some(conn.clone()),
            Some(_) => {
                connections.remove(addr);
                None
            }
            None => None,
        }
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<String, Connection>> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Errors name the address the caller used rather than the resolved socket address.
fn with_addr(err: RemotingError, addr: &str, timeout_ms: u64) -> RemotingError {
    match err {
        RemotingError::Timeout { .. } => RemotingError::Timeout {
            addr: addr.to_string(),
            timeout_ms,
        },
        RemotingError::ConnectionClosed { .. } => RemotingError::ConnectionClosed {
            addr: addr.to_string(),
        },
        other => other,
    }
}
