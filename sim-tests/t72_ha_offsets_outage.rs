//! t72: consumer offsets across a master outage. One broker group: a master (SYNC_MASTER or
//! ASYNC_MASTER drawn from the seed, `SIM_HA_ROLE=sync|async` pins it; see
//! `scenario::ha_offsets_outage_spec`) and its SLAVE, producers and a two-member consumer group. The master is crashed (process crash) or partitioned away for seconds at a time;
//! consumers fall back to the slave, read on and commit their offsets there; the master
//! returns and learns the newer offsets from the slave's metadata sync (pushed forward-only).
//! Checkers: every usual one on the master, and committed offsets never move backwards on
//! any broker — the slave included (its sync must never overwrite a newer offset with the
//! master's older one) — with every value read traced to a client's commit on some broker of
//! the group.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::time::Duration;

use harness::scenario;
use harness::{SimOutcome, Trace};

const NAME: &str = "t72_ha_offsets_outage";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    scenario::run(scenario::ha_offsets_outage_spec(NAME), trace.clone())
        .await
        .assert_ok(&trace)
}

#[test]
fn t72_ha_offsets_outage() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
