//! Messages as RocketMQ lays them out: the property string, message ids, and the stored entry
//! (CommitLog / pull body / query body) layout. OWNER: store helper (it defines the byte layout);
//! the client, broker and simulations decode with the same code.

pub mod entry;
pub mod msg_id;
pub mod properties;
pub mod sysflag;

pub use entry::{decode_entries, decode_entry, MessageExt};
pub use properties::{decode_properties, encode_properties, Properties};
