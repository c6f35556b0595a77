//! A client channel as the broker's managers see it: a remoting [`Connection`] in production,
//! or an in-process queue in tests (so processors run without sockets).

use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::remoting::{Connection, RemotingCommand, RemotingError};

#[derive(Clone)]
enum Sink {
    Connection(Connection),
    Local(mpsc::UnboundedSender<RemotingCommand>),
}

/// Cheap to clone. `id` is unique per live connection.
#[derive(Clone)]
pub struct ClientChannel {
    id: u64,
    peer_addr: SocketAddr,
    sink: Sink,
}

impl ClientChannel {
    pub fn from_connection(conn: Connection) -> Self {
        ClientChannel {
            id: conn.id(),
            peer_addr: conn.peer_addr(),
            sink: Sink::Connection(conn),
        }
    }

    /// An in-process channel: everything the broker sends to it (late long-poll responses,
    /// NOTIFY_CONSUMER_IDS_CHANGED) arrives on the returned receiver. Tests pick ids that do not
    /// collide with each other.
    pub fn local(
        id: u64,
        peer_addr: SocketAddr,
    ) -> (ClientChannel, mpsc::UnboundedReceiver<RemotingCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            ClientChannel {
                id,
                peer_addr,
                sink: Sink::Local(tx),
            },
            rx,
        )
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn is_closed(&self) -> bool {
        match &self.sink {
            Sink::Connection(c) => c.is_closed(),
            Sink::Local(tx) => tx.is_closed(),
        }
    }

    /// Sends a oneway request (NOTIFY_CONSUMER_IDS_CHANGED, ...). Over a connection the opaque
    /// comes from the connection's counter; locally `local_opaque` is used.
    pub fn send_oneway(
        &self,
        mut cmd: RemotingCommand,
        local_opaque: i32,
    ) -> Result<(), RemotingError> {
        match &self.sink {
            Sink::Connection(c) => c.send_oneway(cmd),
            Sink::Local(_) => {
                cmd.opaque = local_opaque;
                cmd.mark_oneway();
                self.send(cmd)
            }
        }
    }

    /// Queues a response or oneway request for the client.
    pub fn send(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        match &self.sink {
            Sink::Connection(c) => c.send(cmd),
            Sink::Local(tx) => tx.send(cmd).map_err(|_| RemotingError::ConnectionClosed {
                addr: self.peer_addr.to_string(),
            }),
        }
    }
}
