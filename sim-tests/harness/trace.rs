//! The trace digest: a running FNV-1a hash over every harness event (fault, ack, consumed
//! offset, phase change) stamped with its simulated time. Two runs of one seed must print the
//! same digest; `scripts/sim.sh --replay-check` compares it across two processes, which also
//! catches divergence madsim's own check misses (it compares RNG draws, not outcomes).

use std::sync::{Arc, Mutex};

use super::sim_now;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Clone)]
pub struct Trace {
    inner: Arc<Mutex<TraceInner>>,
}

struct TraceInner {
    start: apogee::rt::Instant,
    digest: u64,
    events: u64,
    /// Echo every event to stdout (`SIM_TRACE=1`), for reading a failing seed's history.
    echo: bool,
    /// The last events, printed when an invariant fails.
    recent: std::collections::VecDeque<String>,
    /// Instants of "fault: …" and "heal: …" events (checkers exempt their aftermath).
    disturbances: Vec<apogee::rt::Instant>,
}

const RECENT_EVENTS_MAX: usize = 64;

impl Trace {
    pub fn new() -> Trace {
        Trace {
            inner: Arc::new(Mutex::new(TraceInner {
                start: sim_now(),
                digest: FNV_OFFSET,
                events: 0,
                echo: std::env::var("SIM_TRACE").is_ok(),
                recent: Default::default(),
                disturbances: Vec::new(),
            })),
        }
    }

    /// Records one event. The text must be derived from simulation state only (no pointers,
    /// no wall-clock values), or the digest stops being reproducible.
    pub fn event(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        let mut inner = self.inner.lock().expect("trace lock");
        let elapsed_us = (sim_now() - inner.start).as_micros() as u64;
        let mut digest = inner.digest;
        for byte in elapsed_us.to_le_bytes().iter().chain(text.as_bytes()) {
            digest ^= u64::from(*byte);
            digest = digest.wrapping_mul(FNV_PRIME);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        digest ^= 0xff;
        digest = digest.wrapping_mul(FNV_PRIME);
        inner.digest = digest;
        inner.events += 1;
        if text.starts_with("fault:") || text.starts_with("heal:") {
            inner.disturbances.push(sim_now());
        }
        let line = format!("[{:>10.3}s] {text}", elapsed_us as f64 / 1e6);
        if inner.echo {
            println!("TRACE {line}");
        }
        if inner.recent.len() == RECENT_EVENTS_MAX {
            inner.recent.pop_front();
        }
        inner.recent.push_back(line);
    }

    /// When faults were injected or healed.
    pub fn disturbances(&self) -> Vec<apogee::rt::Instant> {
        self.inner.lock().expect("trace lock").disturbances.clone()
    }

    pub fn digest(&self) -> u64 {
        self.inner.lock().expect("trace lock").digest
    }

    pub fn events(&self) -> u64 {
        self.inner.lock().expect("trace lock").events
    }

    pub fn elapsed(&self) -> std::time::Duration {
        sim_now() - self.inner.lock().expect("trace lock").start
    }

    /// The most recent events, oldest first (printed with a violation).
    pub fn recent(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("trace lock")
            .recent
            .iter()
            .cloned()
            .collect()
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}
