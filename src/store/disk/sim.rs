//! Simulated disk: per-node in-memory files with durable vs pending bytes, crash modes and
//! injected faults. Usable in unit/property tests and madsim simulations. OWNER: store helper.
