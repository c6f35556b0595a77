//! Maps store and broker outcomes to RocketMQ response codes, in one place.

use thiserror::Error;

use super::BrokerError;
use crate::remoting::response_code as rc;
use crate::remoting::{RemotingCommand, RemotingError};
use crate::store::{GetMessageStatus, PutMessageStatus};

/// Why a request could not be processed at all (as opposed to a business answer such as
/// TOPIC_NOT_EXIST, which processors build directly).
#[derive(Debug, Error)]
pub enum ProcessError {
    /// Missing or unparsable header field (`@CFNotNull` in RocketMQ).
    #[error("{0}")]
    Header(#[from] RemotingError),
    /// Unparsable request body.
    #[error("malformed request body: {0}")]
    Body(String),
    #[error("{0}")]
    Broker(#[from] BrokerError),
}

/// The response for a request that failed with `err`. RocketMQ answers a header decode failure
/// (and any exception in a processor) with SYSTEM_ERROR and the reason as remark.
pub fn error_response(request: &RemotingCommand, err: &ProcessError) -> RemotingCommand {
    request.response(rc::SYSTEM_ERROR, err.to_string())
}

/// Store put status → (response code, default remark).
pub fn put_status_code(status: PutMessageStatus) -> (i32, Option<&'static str>) {
    match status {
        PutMessageStatus::PutOk => (rc::SUCCESS, None),
        PutMessageStatus::FlushDiskTimeout => (rc::FLUSH_DISK_TIMEOUT, None),
        PutMessageStatus::FlushSlaveTimeout => (rc::FLUSH_SLAVE_TIMEOUT, None),
        PutMessageStatus::SlaveNotAvailable => (rc::SLAVE_NOT_AVAILABLE, None),
        PutMessageStatus::MessageIllegal => (
            rc::MESSAGE_ILLEGAL,
            Some("the message is illegal, maybe msg body or properties length not matched"),
        ),
        PutMessageStatus::PropertiesSizeExceeded => (
            rc::MESSAGE_ILLEGAL,
            Some("the message is illegal, maybe msg properties length limit 32k"),
        ),
        PutMessageStatus::ServiceNotAvailable => (
            rc::SERVICE_NOT_AVAILABLE,
            Some("service not available now, maybe disk full or broker shutting down"),
        ),
        PutMessageStatus::OsPageCacheBusy => (
            rc::SYSTEM_BUSY,
            Some("[PC_SYNCHRONIZED]broker busy, start flow control for a while"),
        ),
        PutMessageStatus::CreateMappedFileFailed => (
            rc::SYSTEM_ERROR,
            Some("create mapped file failed, server is busy or broken"),
        ),
        PutMessageStatus::UnknownError => (rc::SYSTEM_ERROR, Some("UNKNOWN_ERROR")),
    }
}

/// True for put statuses after which the message is stored (the client reports it as sent).
pub fn put_status_is_stored(status: PutMessageStatus) -> bool {
    matches!(
        status,
        PutMessageStatus::PutOk
            | PutMessageStatus::FlushDiskTimeout
            | PutMessageStatus::FlushSlaveTimeout
            | PutMessageStatus::SlaveNotAvailable
    )
}

/// Store get status → pull response code (RocketMQ `PullMessageProcessor`).
pub fn get_status_code(status: GetMessageStatus, request_queue_offset: i64) -> i32 {
    match status {
        GetMessageStatus::Found => rc::SUCCESS,
        GetMessageStatus::NoMatchedMessage
        | GetMessageStatus::MessageWasRemoving
        | GetMessageStatus::OffsetFoundNull => rc::PULL_RETRY_IMMEDIATELY,
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if request_queue_offset != 0 {
                rc::PULL_OFFSET_MOVED
            } else {
                rc::PULL_NOT_FOUND
            }
        }
        GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetOverflowBadly => {
            rc::PULL_OFFSET_MOVED
        }
        GetMessageStatus::OffsetOverflowOne => rc::PULL_NOT_FOUND,
    }
}

/// RocketMQ's enum name, used as the pull response remark.
pub fn get_status_name(status: GetMessageStatus) -> &'static str {
    match status {
        GetMessageStatus::Found => "FOUND",
        GetMessageStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetMessageStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
        GetMessageStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetMessageStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetMessageStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetMessageStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetMessageStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetMessageStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_status_mapping_follows_rocketmq() {
        assert_eq!(get_status_code(GetMessageStatus::Found, 5), rc::SUCCESS);
        assert_eq!(
            get_status_code(GetMessageStatus::OffsetOverflowOne, 5),
            rc::PULL_NOT_FOUND
        );
        assert_eq!(
            get_status_code(GetMessageStatus::NoMessageInQueue, 0),
            rc::PULL_NOT_FOUND
        );
        assert_eq!(
            get_status_code(GetMessageStatus::NoMessageInQueue, 3),
            rc::PULL_OFFSET_MOVED
        );
        assert_eq!(
            get_status_code(GetMessageStatus::OffsetTooSmall, 0),
            rc::PULL_OFFSET_MOVED
        );
        assert_eq!(
            get_status_code(GetMessageStatus::NoMatchedMessage, 0),
            rc::PULL_RETRY_IMMEDIATELY
        );
    }

    #[test]
    fn put_status_mapping_follows_rocketmq() {
        assert_eq!(put_status_code(PutMessageStatus::PutOk).0, rc::SUCCESS);
        assert_eq!(
            put_status_code(PutMessageStatus::PropertiesSizeExceeded).0,
            rc::MESSAGE_ILLEGAL
        );
        assert_eq!(
            put_status_code(PutMessageStatus::OsPageCacheBusy).0,
            rc::SYSTEM_BUSY
        );
        assert_eq!(
            put_status_code(PutMessageStatus::ServiceNotAvailable).0,
            rc::SERVICE_NOT_AVAILABLE
        );
        assert!(put_status_is_stored(PutMessageStatus::FlushDiskTimeout));
        assert!(!put_status_is_stored(PutMessageStatus::UnknownError));
    }
}
