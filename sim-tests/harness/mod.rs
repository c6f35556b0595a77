//! Shared simulation harness: the seeded runner, the trace digest, the cluster builder, fault
//! primitives, the workload and its oracle. Every scenario under `sim-tests/` includes it with
//! `mod harness;` and runs one `#[test]` through [`run`].
//!
//! Rules kept here (see /work/shared/reference/simulation-madsim.md):
//! - every random draw comes from madsim's seeded RNG (`apogee::rt::rng()`), never from the OS;
//! - no global statics: all shared state lives in `Arc`s created inside the simulation;
//! - one seed per process in sweeps (`scripts/sim.sh`), because tokio's `select!` RNG is
//!   process-global and would otherwise leak between simulations.
#![allow(dead_code)]

pub mod cluster;
pub mod disk;
pub mod faults;
pub mod nodes;
pub mod oracle;
pub mod scenario;
pub mod trace;
pub mod workload;

use std::future::Future;
use std::time::Duration;

pub use trace::Trace;

/// What a scenario returns to the runner, printed as one `SIM-RESULT` line that
/// `scripts/sim.sh` parses (digest for replay checks, simulated seconds for speed figures).
#[derive(Debug, Clone)]
pub struct SimOutcome {
    pub trace_digest: u64,
    pub trace_events: u64,
    pub sim_elapsed: Duration,
    /// One line of scenario-specific figures (messages acked, lost under ASYNC_FLUSH, ...).
    pub summary: String,
}

/// Seed used when `MADSIM_TEST_SEED` is not set, so a bare `cargo sim` is reproducible
/// (madsim's own default is the wall clock).
pub const DEFAULT_SEED: u64 = 1;

/// Runs `scenario` under madsim with the seed, config, time limit and determinism check taken
/// from the `MADSIM_TEST_*` environment variables, then prints the `SIM-RESULT` line.
/// A failing invariant panics inside the simulation; madsim then prints
/// `note: run with MADSIM_TEST_SEED=<seed>` and the test fails.
#[allow(clippy::disallowed_methods)]
pub fn run<F>(name: &'static str, time_limit: Duration, scenario: fn() -> F)
where
    F: Future<Output = SimOutcome> + 'static,
{
    init_logger();
    let mut builder = madsim::runtime::Builder::from_env();
    if std::env::var("MADSIM_TEST_SEED").is_err() {
        builder.seed = DEFAULT_SEED;
    }
    if builder.time_limit.is_none() {
        // A hung cluster must fail the seed, not hang the sweep.
        builder.time_limit = Some(time_limit);
    }
    let seed = builder.seed;
    let count = builder.count;
    let check = builder.check;
    // Wall time is measured outside the simulation, where clock_gettime is the real one.
    let wall_start = std::time::Instant::now();
    let outcome = builder.run(scenario);
    let wall = wall_start.elapsed();
    let sim_secs = outcome.sim_elapsed.as_secs_f64();
    let wall_secs = wall.as_secs_f64().max(1e-6);
    println!(
        "SIM-RESULT scenario={name} seed={seed} runs={count} check_determinism={check} \
         digest={:016x} events={} sim_secs={sim_secs:.1} wall_secs={wall_secs:.3} \
         sim_per_wall={:.0} {}",
        outcome.trace_digest,
        outcome.trace_events,
        sim_secs * count as f64 / wall_secs,
        outcome.summary,
    );
}

/// `RUST_LOG=apogee=debug` shows the code's tracing output inside simulations (simulated
/// timestamps, node spans). Silent by default: sweeps stay readable.
fn init_logger() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Simulated time since the simulation started (madsim starts every run at the same instant).
pub fn sim_now() -> apogee::rt::Instant {
    apogee::rt::now()
}

/// A seeded draw in `[low, high)` (ms or counts). Panics on an empty range: a harness bug.
pub fn draw(low: u64, high: u64) -> u64 {
    assert!(low < high, "empty draw range {low}..{high}");
    low + apogee::rt::random_below(high - low)
}

/// A seeded coin flip with probability `p`.
pub fn chance(p: f64) -> bool {
    use madsim::rand::Rng;
    apogee::rt::rng().gen_bool(p.clamp(0.0, 1.0))
}
