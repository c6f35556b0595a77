//! Frame codec: `length:i32 | serType:u8 hdrLen:u24 | header | body`, both header encodings.
//! OWNER: remoting helper.

use bytes::{Bytes, BytesMut};

use super::{RemotingCommand, RemotingError};

/// Encodes `cmd` as one complete frame (including the leading length) in `cmd.serialize_type`.
pub fn encode(cmd: &RemotingCommand) -> Result<Bytes, RemotingError> {
    let _ = cmd;
    todo!("remoting helper")
}

/// Decodes one frame *without* its leading length int (what a length-field decoder yields).
pub fn decode(frame: Bytes) -> Result<RemotingCommand, RemotingError> {
    let _ = frame;
    todo!("remoting helper")
}

/// Tries to split one complete frame off the front of `buf`: Ok(None) when more bytes are
/// needed; an error when the declared length is negative or over the frame limit.
pub fn try_split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, RemotingError> {
    let _ = buf;
    todo!("remoting helper")
}
