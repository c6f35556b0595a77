//! Disk conformance suite run against both implementations. OWNER: store helper.
