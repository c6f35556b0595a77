//! Apogee: a RocketMQ-compatible message broker whose core runs on real tokio in production and
//! on madsim in deterministic simulations. See ARCHITECTURE.md for the module map and seams.

pub mod broker;
pub mod client;
pub mod config;
pub mod ha;
pub mod message;
pub mod namesrv;
pub mod protocol;
pub mod remoting;
pub mod rt;
pub mod store;
