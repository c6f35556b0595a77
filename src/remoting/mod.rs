//! RocketMQ remoting protocol: frames, commands, request/response codes, server and client.
//!
//! OWNER: remoting helper. The public API below is the contract other modules build against;
//! bodies marked `todo!()` are to be implemented.

pub mod client;
pub mod codec;
pub mod command;
pub mod connection;
pub mod error;
pub mod request_code;
pub mod response_code;
pub mod server;

pub use client::RemotingClient;
pub use command::{LanguageCode, RemotingCommand, SerializeType};
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
