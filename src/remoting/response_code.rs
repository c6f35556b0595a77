//! Response codes (RocketMQ `ResponseCode` / `RemotingSysResponseCode`). Stable, never reused.
//! The mapping from module errors to these codes lives here, in one place.
pub const SUCCESS: i32 = 0;
pub const SYSTEM_ERROR: i32 = 1;
pub const SYSTEM_BUSY: i32 = 2;
pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
pub const TRANSACTION_FAILED: i32 = 4;
pub const FLUSH_DISK_TIMEOUT: i32 = 10;
pub const SLAVE_NOT_AVAILABLE: i32 = 11;
pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
pub const MESSAGE_ILLEGAL: i32 = 13;
pub const SERVICE_NOT_AVAILABLE: i32 = 14;
pub const VERSION_NOT_SUPPORTED: i32 = 15;
pub const NO_PERMISSION: i32 = 16;
pub const TOPIC_NOT_EXIST: i32 = 17;
pub const TOPIC_EXIST_ALREADY: i32 = 18;
pub const PULL_NOT_FOUND: i32 = 19;
pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
pub const PULL_OFFSET_MOVED: i32 = 21;
pub const QUERY_NOT_FOUND: i32 = 22;
pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
pub const INVALID_PARAMETER: i32 = 29;
pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
pub const CONSUMER_NOT_ONLINE: i32 = 206;
pub const CONSUME_MSG_TIMEOUT: i32 = 207;
pub const NO_MESSAGE: i32 = 208;
pub const NOT_LEADER_FOR_QUEUE: i32 = 501;
pub const ILLEGAL_OPERATION: i32 = 604;
pub const GO_AWAY: i32 = 1500;

/// The response code for a remoting-layer error (the one place this mapping lives).
pub fn for_error(err: &super::RemotingError) -> i32 {
    use super::RemotingError;
    match err {
        RemotingError::MissingField(_) | RemotingError::InvalidField { .. } => SYSTEM_ERROR,
        RemotingError::FrameTooLarge { .. } | RemotingError::Malformed(_) => SYSTEM_ERROR,
        // Java answers any exception thrown while processing with SYSTEM_ERROR.
        RemotingError::Connect { .. }
        | RemotingError::Timeout { .. }
        | RemotingError::ConnectionClosed { .. }
        | RemotingError::Io(_) => SYSTEM_ERROR,
    }
}
