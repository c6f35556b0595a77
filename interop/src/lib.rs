//! Interop tests live in `tests/`: they start the real `mqnamesrv` / `mqbroker` binaries and drive them with
//! the crates.io RocketMQ client. This library is intentionally empty.
