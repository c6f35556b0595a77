//! The runtime seam: every use of time, timers, task spawning, networking and randomness in the
//! core goes through this module, so that the same code runs on real tokio in production and on
//! madsim (`--cfg madsim`) in deterministic simulations.
//!
//! Rules (enforced by `clippy.toml` outside this module): no `std::thread`, no `Instant::now`,
//! no `SystemTime::now`, no `tokio::fs`, no `rand::thread_rng`, no bare `tokio::spawn`.
//! Every `select!` is written `biased;` so polling order never depends on a process-global RNG.

use std::future::Future;
use std::time::Duration;

pub use tokio::select;
pub use tokio::task::JoinHandle;
pub use tokio::time::Instant;

/// Networking types. Under madsim these are simulated sockets: always `flush()` after writing.
pub mod net {
    pub use tokio::net::{TcpListener, TcpStream};
}

/// Spawns a task on the current runtime (a madsim node's runtime in simulations).
#[allow(clippy::disallowed_methods)]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Lets other tasks on this worker run before continuing.
pub async fn yield_now() {
    tokio::task::yield_now().await
}

/// Sleeps for `duration` of (simulated) time.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Sleeps for `ms` milliseconds of (simulated) time.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await
}

/// Runs `future` with a deadline; `Err(Elapsed)` when the deadline passed first.
pub async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(duration, future).await
}

/// Monotonic now (simulated under madsim).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock milliseconds since the Unix epoch (simulated under madsim). RocketMQ stores
/// born/store timestamps in this unit.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(_) => 0,
    }
}

/// The runtime's random number generator: seeded by `MADSIM_TEST_SEED` under madsim, the OS
/// generator in production.
#[allow(clippy::disallowed_methods)] // the seam itself
pub fn rng() -> impl madsim::rand::Rng {
    madsim::rand::thread_rng()
}

/// A uniformly random u64.
pub fn random_u64() -> u64 {
    use madsim::rand::Rng;
    rng().gen::<u64>()
}

/// A uniformly random value in `0..bound` (`bound` > 0).
pub fn random_below(bound: u64) -> u64 {
    use madsim::rand::Rng;
    assert!(bound > 0, "random_below needs a positive bound");
    rng().gen_range(0..bound)
}

/// Runs a blocking closure (an fsync, a large file scan) without stalling the async workers.
/// Production: tokio's blocking pool. Simulation: inline, because madsim runs one thread and a
/// simulated disk never blocks.
#[allow(clippy::disallowed_methods)]
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    #[cfg(madsim)]
    {
        f()
    }
}

/// madsim's fault-injection switch: sometimes true in simulations that enabled it, always false
/// in production.
pub fn buggify() -> bool {
    #[cfg(madsim)]
    {
        madsim::buggify::buggify()
    }
    #[cfg(not(madsim))]
    {
        false
    }
}

/// Like [`buggify`] with an explicit probability.
pub fn buggify_with_prob(probability: f64) -> bool {
    #[cfg(madsim)]
    {
        madsim::buggify::buggify_with_prob(probability)
    }
    #[cfg(not(madsim))]
    {
        let _ = probability;
        false
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
/// process managers and `kill` send). Never resolves under madsim.
pub async fn shutdown_signal() {
    #[cfg(not(madsim))]
    {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
    #[cfg(madsim)]
    {
        futures::future::pending::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_elapses_and_completes() {
        assert!(timeout(Duration::from_millis(5), sleep_ms(50))
            .await
            .is_err());
        assert!(timeout(Duration::from_millis(50), sleep_ms(1))
            .await
            .is_ok());
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn random_below_stays_in_bounds() {
        for _ in 0..1000 {
            assert!(random_below(7) < 7);
        }
    }
}
