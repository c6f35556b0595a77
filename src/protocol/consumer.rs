//! OWNER: broker helper.
