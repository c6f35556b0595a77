//! Remoting client: a connection per address, opaque matching, timeouts, oneway, and an optional
//! processor for server-initiated requests. Used by the broker (to namesrv), mqadmin, the
//! simulation workload and mqbench. OWNER: remoting helper.

use std::sync::Arc;

use super::server::RequestProcessor;
use super::{RemotingCommand, RemotingError};

/// Cheap to clone; connections are cached per address and re-established on demand.
#[derive(Clone, Default)]
pub struct RemotingClient {
    // remoting helper: connection table
    _handler: Option<Arc<dyn RequestProcessor>>,
}

impl RemotingClient {
    pub fn new() -> Self {
        RemotingClient::default()
    }

    /// A client whose connections hand server-initiated requests to `handler`.
    pub fn with_handler(handler: Arc<dyn RequestProcessor>) -> Self {
        let _ = handler;
        todo!("remoting helper")
    }

    /// Sends `request` to `addr` ("ip:port") and awaits the matching response.
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, RemotingError> {
        let _ = (addr, request, timeout_ms);
        todo!("remoting helper")
    }

    /// Sends `request` with the ONEWAY flag; no response is awaited.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<(), RemotingError> {
        let _ = (addr, request);
        todo!("remoting helper")
    }

    /// Closes the cached connection to `addr`, if any.
    pub fn close(&self, addr: &str) {
        let _ = addr;
    }
}
