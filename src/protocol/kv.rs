//! OWNER: namesrv helper.
