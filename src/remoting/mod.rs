//! RocketMQ remoting protocol: frames, commands, request/response codes, server and client.
//!
//! OWNER: remoting helper. The public API below is the contract other modules build against.
//!
//! * [`codec`]: `encode` / `decode` / `try_split_frame` (+ `encode_header_into`,
//!   `peek_frame_length`); JSON (type 0) and ROCKETMQ (type 1) headers, 16 MiB frame limit.
//! * [`RemotingServer::bind`] spawns the accept loop; each [`Connection`] runs a reader task
//!   (one spawned task per request, so parked long polls never block the connection) and a
//!   writer task that batches everything queued and flushes once. `shutdown()` closes all.
//! * [`RequestProcessor::process`] returns the response (opaque and RESPONSE flag are set by
//!   the server; nothing is written for oneway requests) or `None` to answer later through
//!   `conn.send(request.response(..))`. Helpers: `RemotingCommand::error_response(&err)`
//!   (missing field → SYSTEM_ERROR "the custom field <x> is null") and `not_supported()`.
//! * [`RemotingClient`]: one cached connection per "ip:port", re-established on demand;
//!   `invoke` (timeout covers connect + round trip), `invoke_oneway`, `close`, `connection`;
//!   `with_handler` answers server-initiated requests (CHECK_TRANSACTION_STATE, ...).
//! * Both sides are `Connection`s: `send` (frame as is), `send_oneway`, `invoke` (opaque from the
//!   owning server's / client's counter), `close`, `is_closed`, `pending_count`.

pub mod client;
pub mod codec;
pub mod command;
pub mod connection;
pub mod error;
pub mod request_code;
pub mod response_code;
pub mod server;

pub use client::RemotingClient;
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use error::RemotingError;
pub use server::{Connection, RemotingServer, RequestProcessor};

/// Largest frame accepted or sent (RocketMQ's default `com.rocketmq.remoting.frameMaxLength`).
pub const FRAME_MAX_LENGTH_BYTES: usize = 16 * 1024 * 1024;

#[cfg(all(test, not(madsim)))]
#[path = "loopback_test.rs"]
mod loopback_test;

#[cfg(all(test, madsim))]
#[path = "sim_test.rs"]
mod sim_test;
