use thiserror::Error;

/// Errors of the remoting layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemotingError {
    #[error("frame of {length} bytes exceeds the {max} byte limit")]
    FrameTooLarge { length: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("the request lacks required header field `{0}`")]
    MissingField(String),
    #[error("header field `{field}` has invalid value `{value}`")]
    InvalidField { field: String, value: String },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("connection to {addr} closed")]
    ConnectionClosed { addr: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
