//! Errors of the client. Every variant names the peer (namesrv or broker address) and the
//! operation, so a caller (mqadmin) can print one clear line.

use thiserror::Error;

use crate::remoting::RemotingError;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no name server address configured (use -n or NAMESRV_ADDR)")]
    NoNamesrv,
    /// Transport failure (connect, closed, timeout) talking to `addr`.
    #[error("{op} to {role} {addr} failed: {source}")]
    Remoting {
        role: &'static str,
        addr: String,
        op: String,
        source: RemotingError,
    },
    /// Every configured name server failed at the transport level; `detail` lists each.
    #[error("{op} failed on every name server: {detail}")]
    AllNamesrvFailed { op: String, detail: String },
    /// The peer answered with a non-success response code.
    #[error("{op} at {role} {addr} failed: code {code} ({}){}", crate::client::response_code_name(*code), remark_suffix(remark))]
    Response {
        role: &'static str,
        addr: String,
        op: String,
        code: i32,
        remark: String,
    },
    /// The peer answered SUCCESS but the header or body could not be understood.
    #[error("{op} at {role} {addr}: malformed response: {detail}")]
    BadResponse {
        role: &'static str,
        addr: String,
        op: String,
        detail: String,
    },
    #[error("topic {topic}: {detail}")]
    NoRoute { topic: String, detail: String },
    #[error("broker {0} not found in the name server's cluster info")]
    BrokerNotFound(String),
    #[error("cluster {0} not found in the name server's cluster info")]
    ClusterNotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("message not found: {0}")]
    MessageNotFound(String),
}

fn remark_suffix(remark: &str) -> String {
    let remark = one_line(remark);
    if remark.is_empty() {
        String::new()
    } else {
        format!(": {remark}")
    }
}

/// A peer's remark on one line (Java remarks can carry newlines and stack frames), so every
/// error prints as a single line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ClientError {
    /// The response code when the peer answered with an error.
    pub fn response_code(&self) -> Option<i32> {
        match self {
            ClientError::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the request may have reached the peer and been executed without us hearing
    /// back (timeout, connection closed after sending). The simulation oracle treats such sends
    /// as "unknown".
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            ClientError::Remoting { source, .. } => {
                !matches!(source, RemotingError::Connect { .. })
            }
            _ => false,
        }
    }

    /// True when nothing answered at the transport level (connect refused, timeout, closed).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Remoting { .. } | ClientError::AllNamesrvFailed { .. }
        )
    }
}
