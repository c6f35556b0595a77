//! `mqbench`: load generator and checker for RocketMQ-protocol brokers, in the style of
//! RocketMQ's `benchmark/producer.sh` and `consumer.sh`, built on Apogee's own client.
//!
//! * `mqbench producer -n 127.0.0.1:9876 -t BenchTopic -w 16 -s 1024 --duration-secs 10`
//! * `mqbench consumer -n 127.0.0.1:9876 -t BenchTopic -g bench_cg --from first --verify --expect 10000`
//!
//! Every second a progress line goes to stderr (to stdout without `--json`); the final summary
//! goes to stdout (one JSON object with `--json`). Message bodies start with
//! `<run id hex> <sequence>` so the consumer can count duplicates and gaps (`--verify`).
//!
//! Wall-clock measurement uses `std::time::Instant` here on purpose: this binary reports real
//! latencies; it is not part of the core and never runs inside a simulation.
#![allow(clippy::disallowed_methods)] // std::time::Instant::now: wall-clock reporting (see above)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use apogee::client::{
    ClientConfig, ConsumeFromWhere, ConsumerConfig, Message, MqClient, Producer, ProducerConfig,
    PullConsumer,
};
use apogee::config::NAMESRV_ADDR_ENV;
use apogee::protocol::topic::{TopicConfig, PERM_READ, PERM_WRITE};
use apogee::rt;

// ------------------------------------------------------------------------------ histogram

/// Log-linear latency histogram (HDR-style, 32 sub-buckets per power of two, so a reported
/// percentile is within ~3% of the true value). Values are microseconds (or milliseconds for
/// end-to-end consume latency). Written here rather than pulling in `hdrhistogram`: 40 lines,
/// no new dependency for the whole workspace.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
}

const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; 64 * SUB_BUCKETS as usize + 2 * SUB_BUCKETS as usize],
            total: 0,
            sum: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        let msb = 63 - (v | 1).leading_zeros();
        if msb <= SUB_BUCKET_BITS {
            return v as usize;
        }
        let shift = msb - SUB_BUCKET_BITS;
        (SUB_BUCKETS * shift as u64 + (v >> shift)) as usize
    }

    /// Highest value that lands in bucket `idx` (reported percentiles round up, like HDR).
    fn upper(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < 2 * SUB_BUCKETS {
            return idx;
        }
        let shift = idx / SUB_BUCKETS - 1;
        let base = idx - SUB_BUCKETS * shift;
        ((base + 1) << shift) - 1
    }

    fn record(&mut self, v: u64) {
        let i = Self::index(v);
        debug_assert!(
            Self::upper(i) >= v,
            "bucket {i} upper bound below its value {v}"
        );
        self.counts[i] += 1;
        self.total += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    fn summary_json(&self) -> serde_json::Value {
        json!({
            "count": self.total,
            "mean": (self.mean() * 10.0).round() / 10.0,
            "p50": self.percentile(50.0),
            "p99": self.percentile(99.0),
            "p999": self.percentile(99.9),
            "max": self.max,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {} p99 {} p999 {} max {}",
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(99.9),
            self.max
        )
    }
}

// ------------------------------------------------------------------------------ arguments

#[derive(Debug, Parser)]
#[command(
    name = "mqbench",
    version,
    about = "Producer/consumer benchmark for RocketMQ-protocol brokers (Apogee's own client)"
)]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Sends messages and reports send TPS, MB/s and send latency.
    Producer(ProducerArgs),
    /// Pulls messages and reports receive TPS, MB/s, end-to-end latency and (--verify) gaps.
    Consumer(ConsumerArgs),
    /// Appends messages straight into a MessageStore (no broker, no network; ASYNC_FLUSH, one
    /// appender, as `cargo bench --bench store_append`): the store's own rate, which the
    /// end-to-end produce rate is compared with.
    StoreAppend(StoreAppendArgs),
    /// Starts a broker command (after `--`) and measures the time until its first accepted
    /// send (topic creation on the cluster included); also reports the child's VmRSS.
    Startup(StartupArgs),
}

#[derive(Debug, clap::Args)]
struct StartupArgs {
    /// Name server the started broker registers with (standalone: its embedded one).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    #[arg(short = 't', long = "topic", default_value = "BenchStartup")]
    topic: String,
    #[arg(short = 'c', long = "cluster", default_value = "DefaultCluster")]
    cluster: String,
    /// Give up after this long.
    #[arg(long, default_value_t = 30.0)]
    timeout_secs: f64,
    /// Leave the broker running (its pid is in the summary) instead of stopping it.
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: bool,
    /// The broker command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct StoreAppendArgs {
    /// Store root directory; must not exist (it is created, and removed afterwards).
    #[arg(long)]
    store: std::path::PathBuf,
    /// Message body size in bytes.
    #[arg(short = 's', long = "messageSize", default_value_t = 1024)]
    size: usize,
    /// MiB of CommitLog to append.
    #[arg(long, default_value_t = 256)]
    mb: u64,
    /// Keep the store directory.
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendMode {
    /// `-w` senders, each waiting for its answer before the next send.
    Sync,
    /// One issuing loop keeping up to `-w` sends in flight (callback style).
    Async,
    /// `-w` senders writing requests without waiting for answers.
    Oneway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum From {
    First,
    Last,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Name server list, `;`-separated (default: NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv: Option<String>,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    topic: String,
    /// Concurrency: senders in flight (producer, default 16) or consumer instances in the
    /// group (consumer, default 1).
    #[arg(short = 'w', long = "threadCount")]
    concurrency: Option<usize>,
    /// Stop after this many messages (sent or received).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (default 10 unless --count is given).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// One JSON summary on stdout; progress lines go to stderr.
    #[arg(long)]
    json: bool,
    /// Suppress per-second progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct ProducerArgs {
    #[command(flatten)]
    common: Common,
    /// Message body size in bytes (at least 32: the body carries a run id and sequence).
    #[arg(short = 's', long = "messageSize", default_value_t = 128)]
    size: usize,
    #[arg(long, value_enum, default_value_t = SendMode::Sync)]
    mode: SendMode,
    /// Messages per SEND_BATCH_MESSAGE request (1 = single sends).
    #[arg(short = 'b', long = "batchSize", default_value_t = 1)]
    batch: usize,
    /// Tag on every message.
    #[arg(long = "tag")]
    tag: Option<String>,
    /// Give every message a unique key (`bench-<run>-<seq>`; exercises the index).
    #[arg(short = 'k', long = "keyEnable")]
    keys: bool,
    /// Producer group.
    #[arg(short = 'g', long = "group", default_value = "benchmark_producer")]
    group: String,
    /// Target rate in messages/s over all senders (default: as fast as possible). A pacer
    /// thread schedules request k at start + k * batch / tps and hands it to the first free
    /// sender; the summary adds the latency measured from that scheduled time.
    #[arg(long)]
    tps: Option<f64>,
    /// With --tps: the pacer thread wakes at most once per this many microseconds and releases
    /// every request due by then (0 = wake at each request's due time). Each wake-up is a
    /// context switch on the machine under test: at 28k requests/s on 2 cores the per-request
    /// wake-ups cost the client about a quarter of its CPU. Latency from the scheduled time
    /// still counts the wait for the tick.
    #[arg(long, default_value_t = 0)]
    pace_tick_us: u64,
    /// Create the topic on every master of this cluster first (read/write queues = --queues).
    #[arg(short = 'c', long = "cluster", default_value = "DefaultCluster")]
    cluster: String,
    /// Queue count when creating the topic.
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Do not create the topic (it must exist or be auto-created by the broker).
    #[arg(long)]
    no_create_topic: bool,
    /// Per-send timeout.
    #[arg(long, default_value_t = 3_000)]
    send_timeout_ms: u64,
    /// Retries after a failed sync send (Java retryTimesWhenSendFailed). 0 for raw figures.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

#[derive(Debug, clap::Args)]
struct ConsumerArgs {
    #[command(flatten)]
    common: Common,
    /// Consumer group.
    #[arg(short = 'g', long = "group", default_value = "benchmark_consumer")]
    group: String,
    /// Where a group without a stored offset starts.
    #[arg(long, value_enum, default_value_t = From::Last)]
    from: From,
    /// Tag expression (`*`, `a || b`).
    #[arg(long = "expression", default_value = "*")]
    expression: String,
    /// Messages per pull request.
    #[arg(long, default_value_t = 32)]
    pull_batch: i32,
    /// Check received bodies for duplicates and gaps against the producer's sequence numbers.
    #[arg(long)]
    verify: bool,
    /// With --verify: the producer's message count (sequences 0..N); stop once all arrived.
    #[arg(long)]
    expect: Option<u64>,
    /// With --verify: the producer's run id (default: the only run id seen).
    #[arg(long)]
    run_id: Option<String>,
    /// Stop after this many seconds without a message (once at least one arrived, or from the
    /// start when --expect is given).
    #[arg(long)]
    idle_exit_secs: Option<f64>,
}

fn namesrv_list(arg: &Option<String>) -> String {
    arg.clone()
        .or_else(|| std::env::var(NAMESRV_ADDR_ENV).ok())
        .unwrap_or_else(|| apogee::client::DEFAULT_NAMESRV_ADDR.to_string())
}

fn client(namesrv: &str) -> MqClient {
    MqClient::new(ClientConfig::new(ClientConfig::parse_namesrv_list(namesrv)))
}

/// Progress lines: stderr with --json (stdout is the summary), else stdout.
fn progress(common: &Common, line: String) {
    if common.quiet {
        return;
    }
    if common.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn mb(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Process-wide stop flag set by Ctrl-C (the summary is still printed).
fn install_ctrl_c(stop: Arc<AtomicBool>) {
    rt::spawn(async move {
        rt::shutdown_signal().await;
        stop.store(true, Ordering::SeqCst);
    });
}

// ------------------------------------------------------------------------------ producer

#[derive(Default)]
struct ProducerStats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Sends whose outcome is unknown (timeout after writing).
    unknown: AtomicU64,
    bytes: AtomicU64,
}

struct ProducerShared {
    stats: ProducerStats,
    interval: Mutex<Histogram>,
    /// With --tps: latency from the scheduled time and the generator's start lag.
    paced: Mutex<PacedHistograms>,
    pacer: Option<Arc<Pacer>>,
    next_seq: AtomicU64,
    stop: AtomicBool,
    last_error: Mutex<Option<String>>,
    run_id: u64,
    args: ProducerArgs,
    start: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProducerShared {
    /// Claims the next `n` sequence numbers; None once --count is reached or stop is set.
    fn claim(&self, n: u64) -> Option<(u64, u64)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let first = self.next_seq.fetch_add(n, Ordering::Relaxed);
        let end = match self.args.common.count {
            Some(c) if first >= c => return None,
            Some(c) => (first + n).min(c),
            None => first + n,
        };
        Some((first, end))
    }

    fn close_pacer(&self) {
        if let Some(p) = &self.pacer {
            p.close();
        }
    }

    /// The next send's slot: None once stopped (or the pacer closed); Some(None) unpaced;
    /// Some(Some(intended)) with --tps, the scheduled send time of this slot.
    async fn next_slot(&self) -> Option<Option<Instant>> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        match &self.pacer {
            None => Some(None),
            Some(p) => p.next().await.map(Some),
        }
    }

    fn message(&self, seq: u64) -> Message {
        let a = &self.args;
        let mut body = format!("{:016x} {:012} ", self.run_id, seq).into_bytes();
        body.resize(a.size.max(body.len()), b'x');
        let mut msg = Message::new(&a.common.topic, body);
        if let Some(tag) = &a.tag {
            msg = msg.with_tags(tag);
        }
        if a.keys {
            msg = msg.with_keys(&[format!("bench-{:016x}-{seq}", self.run_id)]);
        }
        msg
    }

    fn record(&self, n: u64, elapsed: Duration, result: Result<(), (bool, String)>) {
        match result {
            Ok(()) => {
                self.stats.ok.fetch_add(n, Ordering::Relaxed);
                self.stats
                    .bytes
                    .fetch_add(n * self.args.size as u64, Ordering::Relaxed);
                lock(&self.interval).record(elapsed.as_micros() as u64);
            }
            Err((unknown, e)) => {
                if unknown {
                    self.stats.unknown.fetch_add(n, Ordering::Relaxed);
                } else {
                    self.stats.failed.fetch_add(n, Ordering::Relaxed);
                }
                *lock(&self.last_error) = Some(e);
            }
        }
    }

    /// One request: `first..end` as a single send, a batch, or a oneway send. `intended`:
    /// the pacer's scheduled send time of this request (--tps).
    async fn send_range(
        &self,
        producer: &Producer,
        first: u64,
        end: u64,
        intended: Option<Instant>,
    ) {
        let n = end - first;
        let t0 = Instant::now();
        let result = if self.args.mode == SendMode::Oneway {
            producer
                .send_oneway(self.message(first))
                .await
                .map_err(|e| (false, e.to_string()))
        } else if self.args.batch > 1 {
            let msgs = (first..end).map(|s| self.message(s)).collect();
            producer
                .send_batch(msgs)
                .await
                .map(|_| ())
                .map_err(|e| (e.is_outcome_unknown(), e.to_string()))
        } else {
            producer
                .send(self.message(first))
                .await
                .map(|_| ())
                .map_err(|e| (e.is_outcome_unknown(), e.to_string()))
        };
        let done = Instant::now();
        if let (Some(intended), true) = (intended, result.is_ok()) {
            let mut p = lock(&self.paced);
            p.from_intended
                .record(done.saturating_duration_since(intended).as_micros() as u64);
            p.start_lag
                .record(t0.saturating_duration_since(intended).as_micros() as u64);
        }
        self.record(n, done - t0, result);
    }
}

/// Histograms kept only with --tps.
struct PacedHistograms {
    /// Send latency measured from the pacer's scheduled time (includes any wait for a free
    /// sender: no coordinated omission).
    from_intended: Histogram,
    /// Scheduled time to the actual start of the send (the load generator's own delay).
    start_lag: Histogram,
}

impl PacedHistograms {
    fn new() -> Self {
        PacedHistograms {
            from_intended: Histogram::new(),
            start_lag: Histogram::new(),
        }
    }

    fn merge(&mut self, other: &PacedHistograms) {
        self.from_intended.merge(&other.from_intended);
        self.start_lag.merge(&other.start_lag);
    }
}

/// Open-loop schedule for --tps: slot `k` is due at `start + k / rate`. A dedicated OS thread
/// (this binary only; the core never spawns threads) wakes at each due time with a 1 us timer
/// slack and hands the due slots to whichever senders are free, through a FIFO semaphore
/// (one permit per slot). tokio's timer has 1 ms resolution: pacing senders with it released
/// ~rate/1000 sends at once every millisecond, which queued behind each other at the broker;
/// these arrivals are spaced 1/rate apart (to within the thread's wake-up latency).
struct Pacer {
    slots: tokio::sync::Semaphore,
    /// How late the pacer thread woke for each due slot (its own timer/scheduling delay).
    wake_lag: Mutex<Histogram>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    taken: AtomicU64,
    start: Instant,
    rate: f64,
    /// Shortest sleep between two wake-ups (`--pace-tick-us`).
    tick: Duration,
}

impl Pacer {
    /// Starts the pacer thread; it issues slots until [`Pacer::close`].
    fn start(rate: f64, tick: Duration) -> std::io::Result<Arc<Pacer>> {
        let pacer = Arc::new(Pacer {
            slots: tokio::sync::Semaphore::new(0),
            wake_lag: Mutex::new(Histogram::new()),
            thread: Mutex::new(None),
            taken: AtomicU64::new(0),
            start: Instant::now(),
            rate,
            tick,
        });
        let p = pacer.clone();
        let handle = std::thread::Builder::new()
            .name("mqbench-pacer".into())
            .spawn(move || p.run())?;
        *lock(&pacer.thread) = Some(handle);
        Ok(pacer)
    }

    /// Stops the schedule: every waiting and future `next` returns None.
    fn close(&self) {
        self.slots.close();
    }

    /// Closes the schedule and waits for the thread (it publishes its wake-lag histogram).
    fn finish(&self) -> Histogram {
        self.close();
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
        lock(&self.wake_lag).clone()
    }

    fn due_at(&self, slot: u64) -> Instant {
        self.start + Duration::from_secs_f64(slot as f64 / self.rate)
    }

    fn run(&self) {
        // Timer slack is per thread (default 50 us): 1 us lets nanosleep wake close to the
        // due time. Failure only costs precision.
        // SAFETY: prctl(PR_SET_TIMERSLACK) takes plain integers and affects this thread only.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
        }
        let mut issued = 0u64;
        let mut wake_lag = Histogram::new();
        while !self.slots.is_closed() {
            // Slots 0..=floor(elapsed * rate) are due.
            let now = Instant::now();
            let due = ((now - self.start).as_secs_f64() * self.rate) as u64 + 1;
            if due > issued {
                wake_lag.record(
                    now.saturating_duration_since(self.due_at(issued))
                        .as_micros() as u64,
                );
                // Bounded by the semaphore's permit limit only after ~10^17 slots.
                self.slots.add_permits((due - issued) as usize);
                issued = due;
            }
            let wait = self
                .due_at(issued)
                .saturating_duration_since(Instant::now())
                .max(self.tick);
            // Wake at least every 10 ms to notice a close.
            std::thread::sleep(wait.min(Duration::from_millis(10)));
        }
        *lock(&self.wake_lag) = wake_lag;
    }

    /// Waits for the next due slot and returns its scheduled time; None once closed.
    async fn next(&self) -> Option<Instant> {
        self.slots.acquire().await.ok()?.forget();
        // Permits are handed out in FIFO order and there are as many as slots issued, so the
        // k-th taker's slot k is already due.
        let k = self.taken.fetch_add(1, Ordering::Relaxed);
        Some(self.due_at(k))
    }
}

async fn run_producer(mut args: ProducerArgs) -> anyhow::Result<()> {
    args.common.concurrency.get_or_insert(16);
    if args.size < 32 {
        bail!("--messageSize must be at least 32 bytes (the body carries run id and sequence)");
    }
    if args.batch == 0 || args.common.concurrency == Some(0) {
        bail!("--batchSize and --threadCount must be positive");
    }
    if args.mode == SendMode::Oneway && args.batch > 1 {
        bail!("oneway mode sends single messages (use -b 1)");
    }
    let namesrv = namesrv_list(&args.common.namesrv);
    let client = client(&namesrv);
    if !args.no_create_topic {
        let tc = TopicConfig::new(
            &args.common.topic,
            args.queues,
            args.queues,
            PERM_READ | PERM_WRITE,
        );
        client
            .create_topic_on_cluster(&args.cluster, &tc)
            .await
            .with_context(|| {
                format!(
                    "creating topic {} on cluster {} via {namesrv}",
                    args.common.topic, args.cluster
                )
            })?;
    }
    let mut config = ProducerConfig::new(&args.group);
    config.send_timeout_ms = args.send_timeout_ms;
    config.retry_times_when_send_failed = args.retries;
    let producer = Arc::new(Producer::new(client, config));
    // Warm up the route and the connection so the first second measures sends, not lookups.
    producer
        .client()
        .topic_route(&args.common.topic)
        .await
        .with_context(|| format!("route of {} from {namesrv}", args.common.topic))?;

    let duration = args
        .common
        .duration_secs
        .or(if args.common.count.is_none() {
            Some(10.0)
        } else {
            None
        });
    let pacer = match args.tps {
        Some(tps) if !(tps > 0.0 && tps.is_finite()) => bail!("--tps must be a positive rate"),
        // Slots are requests: a batch of b messages takes one slot at tps / b.
        Some(tps) => Some(
            Pacer::start(
                tps / if args.mode == SendMode::Oneway {
                    1.0
                } else {
                    args.batch as f64
                },
                Duration::from_micros(args.pace_tick_us),
            )
            .context("starting the pacer thread")?,
        ),
        None => None,
    };
    let shared = Arc::new(ProducerShared {
        stats: ProducerStats::default(),
        interval: Mutex::new(Histogram::new()),
        paced: Mutex::new(PacedHistograms::new()),
        pacer,
        next_seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_error: Mutex::new(None),
        run_id: rt::random_u64(),
        args,
        start: Instant::now(),
    });
    let ctrl_c = Arc::new(AtomicBool::new(false));
    install_ctrl_c(ctrl_c.clone());
    let a = &shared.args;
    let per_request = if a.mode == SendMode::Oneway {
        1
    } else {
        a.batch as u64
    };

    let mut workers = Vec::new();
    match a.mode {
        SendMode::Sync | SendMode::Oneway => {
            for _ in 0..a.common.concurrency.unwrap_or(16) {
                let shared = shared.clone();
                let producer = producer.clone();
                workers.push(rt::spawn(async move {
                    while let Some(intended) = shared.next_slot().await {
                        let Some((first, end)) = shared.claim(per_request) else {
                            break;
                        };
                        shared.send_range(&producer, first, end, intended).await;
                    }
                    // --count reached or stopped: release the senders still waiting for a slot.
                    shared.close_pacer();
                }));
            }
        }
        SendMode::Async => {
            let shared = shared.clone();
            let producer = producer.clone();
            workers.push(rt::spawn(async move {
                let permits = Arc::new(tokio::sync::Semaphore::new(
                    shared.args.common.concurrency.unwrap_or(16),
                ));
                let mut in_flight = Vec::new();
                loop {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let Some(intended) = shared.next_slot().await else {
                        break;
                    };
                    let Some((first, end)) = shared.claim(per_request) else {
                        break;
                    };
                    let shared = shared.clone();
                    let producer = producer.clone();
                    in_flight.push(rt::spawn(async move {
                        shared.send_range(&producer, first, end, intended).await;
                        drop(permit);
                    }));
                    in_flight.retain(|h: &rt::JoinHandle<()>| !h.is_finished());
                }
                shared.close_pacer();
                for h in in_flight {
                    let _ = h.await;
                }
            }));
        }
    }

    // Reporting loop.
    let mut total = Histogram::new();
    let mut paced_total = PacedHistograms::new();
    let mut last = (0u64, 0u64, 0u64);
    let mut tick = 0u64;
    let mut all_done = false;
    while !all_done {
        tick += 1;
        let next_tick = shared.start + Duration::from_secs(tick);
        loop {
            all_done = workers.iter().all(|w| w.is_finished());
            let now = Instant::now();
            if all_done || now >= next_tick {
                break;
            }
            rt::sleep((next_tick - now).min(Duration::from_millis(20))).await;
        }
        let elapsed = shared.start.elapsed().as_secs_f64();
        if duration.is_some_and(|d| elapsed >= d) || ctrl_c.load(Ordering::SeqCst) {
            shared.stop.store(true, Ordering::SeqCst);
            shared.close_pacer();
        }
        let interval = std::mem::replace(&mut *lock(&shared.interval), Histogram::new());
        total.merge(&interval);
        let paced = std::mem::replace(&mut *lock(&shared.paced), PacedHistograms::new());
        paced_total.merge(&paced);
        let s = &shared.stats;
        let now = (
            s.ok.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed) + s.unknown.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
        );
        if !all_done {
            progress(
                &shared.args.common,
                format!(
                    "[{:>4.0}s] send TPS {:>8} {:>7.2} MB/s | failed {:>4} | send RT us {}{}",
                    elapsed,
                    now.0 - last.0,
                    mb(now.2 - last.2, 1.0),
                    now.1 - last.1,
                    interval.line(),
                    if shared.pacer.is_some() {
                        format!(" | from scheduled time {}", paced.from_intended.line())
                    } else {
                        String::new()
                    }
                ),
            );
        }
        last = now;
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = shared.start.elapsed().as_secs_f64();
    let tail = std::mem::replace(&mut *lock(&shared.interval), Histogram::new());
    total.merge(&tail);
    paced_total.merge(&lock(&shared.paced));
    let s = &shared.stats;
    let a = &shared.args;
    let ok = s.ok.load(Ordering::Relaxed);
    let failed = s.failed.load(Ordering::Relaxed);
    let unknown = s.unknown.load(Ordering::Relaxed);
    let bytes = s.bytes.load(Ordering::Relaxed);
    let claimed = shared.next_seq.load(Ordering::Relaxed);
    let sequences = match a.common.count {
        Some(c) => claimed.min(c),
        None => claimed,
    };
    // Claims beyond the stop point were never sent; the highest sent sequence is below
    // ok + failed + unknown (claims are issued in order).
    let sent_sequences = sequences.min(ok + failed + unknown);
    let summary = json!({
        "role": "producer",
        "topic": a.common.topic,
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "size_bytes": a.size,
        "concurrency": a.common.concurrency.unwrap_or(16),
        "batch": a.batch,
        "target_tps": a.tps,
        "pace_tick_us": a.pace_tick_us,
        "run_id": format!("{:016x}", shared.run_id),
        "sequences": sent_sequences,
        "sent_ok": ok,
        "failed": failed,
        "unknown": unknown,
        "elapsed_secs": round2(elapsed),
        "tps": round2(ok as f64 / elapsed.max(1e-9)),
        "mb_per_sec": round2(mb(bytes, elapsed)),
        "send_latency_us": total.summary_json(),
        // --tps only (else null): latency from each request's scheduled send time, which also
        // counts any wait for a free sender (no coordinated omission), and that wait alone.
        "send_latency_from_scheduled_us": shared.pacer.as_ref().map(|_| paced_total.from_intended.summary_json()),
        "pacing_start_lag_us": shared.pacer.as_ref().map(|_| paced_total.start_lag.summary_json()),
        "pacer_wake_lag_us": shared.pacer.as_ref().map(|p| p.finish().summary_json()),
        "last_error": *lock(&shared.last_error),
    });
    if a.common.json {
        println!("{summary}");
    } else {
        println!(
            "Producer done: mode {:?}, {} B x {} senders (batch {}), {:.2} s: sent {ok}, failed {failed}, unknown {unknown}\n  send TPS {:.0}, {:.2} MB/s\n  send RT us: mean {:.1} {}\n  run id {:016x}",
            a.mode,
            a.size,
            a.common.concurrency.unwrap_or(16),
            a.batch,
            elapsed,
            ok as f64 / elapsed.max(1e-9),
            mb(bytes, elapsed),
            total.mean(),
            total.line(),
            shared.run_id
        );
        if let Some(e) = &*lock(&shared.last_error) {
            println!("  last error: {e}");
        }
        if shared.pacer.is_some() {
            println!(
                "  send RT us from the scheduled time: mean {:.1} {}\n  scheduled -> actual send start us: {}",
                paced_total.from_intended.mean(),
                paced_total.from_intended.line(),
                paced_total.start_lag.line()
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ consumer

/// Per-run received-count table for --verify: `seen[seq]` counts deliveries (saturating).
#[derive(Default)]
struct Verifier {
    runs: HashMap<u64, Vec<u8>>,
    unparsable: u64,
}

impl Verifier {
    fn observe(&mut self, body: &[u8]) {
        let parsed = (|| {
            let head = std::str::from_utf8(body.get(..29)?).ok()?;
            let run = u64::from_str_radix(head.get(..16)?, 16).ok()?;
            let seq: u64 = head.get(17..29)?.parse().ok()?;
            Some((run, seq))
        })();
        let Some((run, seq)) = parsed else {
            self.unparsable += 1;
            return;
        };
        let seen = self.runs.entry(run).or_default();
        let i = seq as usize;
        if seen.len() <= i {
            seen.resize(i + 1, 0);
        }
        seen[i] = seen[i].saturating_add(1);
    }

    fn distinct(&self, run: u64) -> u64 {
        self.runs
            .get(&run)
            .map(|s| s.iter().filter(|c| **c > 0).count() as u64)
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct ConsumerStats {
    received: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

async fn run_consumer(mut args: ConsumerArgs) -> anyhow::Result<()> {
    args.common.concurrency.get_or_insert(1);
    if args.common.concurrency == Some(0) {
        bail!("--threadCount must be positive");
    }
    let expected_run = match &args.run_id {
        Some(r) => Some(u64::from_str_radix(r, 16).with_context(|| format!("run id `{r}`"))?),
        None => None,
    };
    let namesrv = namesrv_list(&args.common.namesrv);
    let stats = Arc::new(ConsumerStats::default());
    let interval = Arc::new(Mutex::new(Histogram::new()));
    let verifier = Arc::new(Mutex::new(Verifier::default()));
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone());
    let mut consumers = Vec::new();
    for _ in 0..args.common.concurrency.unwrap_or(1) {
        let mut config = ConsumerConfig::new(&args.group, &args.common.topic);
        config.consume_from = match args.from {
            From::First => ConsumeFromWhere::FirstOffset,
            From::Last => ConsumeFromWhere::LastOffset,
        };
        config.sub_expression = args.expression.clone();
        config.pull_batch_size = args.pull_batch;
        // Rebalance soon after the other instances joined (the broker also notifies).
        config.rebalance_interval_ms = 2_000;
        let consumer = PullConsumer::start(client(&namesrv), config)
            .await
            .with_context(|| {
                format!(
                    "starting consumer group {} on {} via {namesrv}",
                    args.group, args.common.topic
                )
            })?;
        consumers.push(Arc::new(consumer));
    }
    for c in &consumers {
        c.rebalance().await.context("rebalance")?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for consumer in &consumers {
        let consumer = consumer.clone();
        let stats = stats.clone();
        let interval = interval.clone();
        let verifier = verifier.clone();
        let stop = stop.clone();
        let verify = args.verify;
        tasks.push(rt::spawn(async move {
            let mut last_commit = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(500).await {
                    Ok(batch) => {
                        let now_ms = rt::now_ms();
                        let mut bytes = 0u64;
                        {
                            let mut h = lock(&interval);
                            for m in &batch {
                                bytes += m.body.len() as u64;
                                h.record((now_ms - m.born_timestamp).max(0) as u64);
                            }
                        }
                        if verify {
                            let mut v = lock(&verifier);
                            for m in &batch {
                                v.observe(&m.body);
                            }
                        }
                        stats
                            .received
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "poll failed");
                        rt::sleep_ms(100).await;
                    }
                }
                if last_commit.elapsed() >= Duration::from_secs(1) {
                    last_commit = Instant::now();
                    if let Err(e) = consumer.commit().await {
                        tracing::warn!(error = %e, "offset commit failed");
                    }
                }
            }
        }));
    }

    let duration =
        args.common
            .duration_secs
            .or(if args.common.count.is_none() && args.expect.is_none() {
                Some(10.0)
            } else {
                None
            });
    let mut total = Histogram::new();
    let mut last = (0u64, 0u64);
    let mut last_bytes = 0u64;
    let mut last_progress = Instant::now();
    // When the last message arrived: catch-up throughput excludes the idle tail.
    let mut last_receive = start;
    let mut tick = 0u64;
    let mut timed_out = false;
    loop {
        tick += 1;
        // Check stop conditions every 20 ms, print progress every second.
        let next_tick = start + Duration::from_secs(tick);
        let mut done = false;
        while Instant::now() < next_tick && !done {
            rt::sleep_ms(20).await;
            let received = stats.received.load(Ordering::Relaxed);
            let elapsed = start.elapsed().as_secs_f64();
            if received != last.0 {
                last_progress = Instant::now();
                last_receive = last_progress;
            }
            if args.common.count.is_some_and(|c| received >= c) {
                done = true;
            }
            if let (true, Some(expect)) = (args.verify, args.expect) {
                let v = lock(&verifier);
                let run = expected_run
                    .or_else(|| (v.runs.len() == 1).then(|| *v.runs.keys().next().unwrap_or(&0)));
                if run.is_some_and(|r| v.distinct(r) >= expect) {
                    done = true;
                }
            }
            if duration.is_some_and(|d| elapsed >= d) {
                done = true;
                timed_out = true;
            }
            if let Some(idle) = args.idle_exit_secs {
                if (received > 0 || args.expect.is_some())
                    && last_progress.elapsed().as_secs_f64() >= idle
                {
                    done = true;
                    timed_out = true;
                }
            }
            if stop.load(Ordering::SeqCst) {
                done = true;
            }
            if received != last.0 {
                // Keep idle detection honest across the inner loop.
                last.0 = received;
            }
        }
        let h = std::mem::replace(&mut *lock(&interval), Histogram::new());
        total.merge(&h);
        let received = stats.received.load(Ordering::Relaxed);
        let bytes = stats.bytes.load(Ordering::Relaxed);
        if !done {
            progress(
                &args.common,
                format!(
                    "[{:>4.0}s] receive TPS {:>8} {:>7.2} MB/s | errors {:>3} | e2e ms {}",
                    start.elapsed().as_secs_f64(),
                    received - last.1,
                    mb(bytes - last_bytes, 1.0),
                    stats.errors.load(Ordering::Relaxed),
                    h.line()
                ),
            );
        }
        last.1 = received;
        last_bytes = bytes;
        if done {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tail = std::mem::replace(&mut *lock(&interval), Histogram::new());
    total.merge(&tail);
    let mut commit_error = None;
    for c in consumers {
        if let Ok(c) = Arc::try_unwrap(c) {
            if let Err(e) = c.shutdown().await {
                commit_error = Some(e.to_string());
            }
        }
    }
    let received = stats.received.load(Ordering::Relaxed);
    let bytes = stats.bytes.load(Ordering::Relaxed);
    let active = if received > 0 {
        (last_receive - start).as_secs_f64()
    } else {
        elapsed
    };
    let mut summary = json!({
        "role": "consumer",
        "topic": args.common.topic,
        "group": args.group,
        "concurrency": args.common.concurrency.unwrap_or(1),
        "received": received,
        "errors": stats.errors.load(Ordering::Relaxed),
        "elapsed_secs": round2(elapsed),
        "active_secs": round2(active),
        "tps": round2(received as f64 / active.max(1e-9)),
        "mb_per_sec": round2(mb(bytes, active)),
        "e2e_latency_ms": total.summary_json(),
        "stopped_by_timeout": timed_out,
        "commit_error": commit_error,
    });
    let mut verify_ok = true;
    if args.verify {
        let v = lock(&verifier);
        let run = expected_run.or_else(|| {
            if v.runs.len() == 1 {
                v.runs.keys().next().copied()
            } else {
                None
            }
        });
        let (distinct, duplicates, missing, max_seq) = match run.and_then(|r| v.runs.get(&r)) {
            Some(seen) => {
                let expect = args.expect.unwrap_or(seen.len() as u64);
                let distinct = seen.iter().filter(|c| **c > 0).count() as u64;
                let duplicates: u64 = seen.iter().map(|c| (*c as u64).saturating_sub(1)).sum();
                let missing = (0..expect as usize)
                    .filter(|i| seen.get(*i).is_none_or(|c| *c == 0))
                    .count() as u64;
                (distinct, duplicates, missing, seen.len() as u64)
            }
            None => (0, 0, args.expect.unwrap_or(0), 0),
        };
        let other_runs =
            v.runs.len() as u64 - u64::from(run.is_some_and(|r| v.runs.contains_key(&r)));
        verify_ok = missing == 0 && duplicates == 0 && (args.expect.is_some() || run.is_some());
        summary["verify"] = json!({
            "run_id": run.map(|r| format!("{r:016x}")),
            "expected": args.expect,
            "distinct": distinct,
            "duplicates": duplicates,
            "missing": missing,
            "highest_sequence_plus_one": max_seq,
            "other_runs": other_runs,
            "unparsable": v.unparsable,
            "ok": verify_ok,
        });
    }
    if args.common.json {
        println!("{summary}");
    } else {
        println!(
            "Consumer done: {} instance(s), {:.2} s ({:.2} s until the last message): received {received}\n  receive TPS {:.0}, {:.2} MB/s (over the active time)\n  e2e latency ms: mean {:.1} {}",
            args.common.concurrency.unwrap_or(1),
            elapsed,
            active,
            received as f64 / active.max(1e-9),
            mb(bytes, active),
            total.mean(),
            total.line()
        );
        if let Some(v) = summary.get("verify") {
            println!("  verify: {v}");
        }
    }
    if !verify_ok {
        std::process::exit(2);
    }
    Ok(())
}

// ------------------------------------------------------------------------------ store append

/// CPU time of this process (all threads), seconds.
fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

async fn run_store_append(args: StoreAppendArgs) -> anyhow::Result<()> {
    use apogee::message::properties::{encode_properties, Properties, CLUSTER, UNIQ_KEY, WAIT};
    use apogee::store::disk::mmap::MmapDisk;
    use apogee::store::{
        FlushDiskType, MessageStore, MessageToStore, PutMessageStatus, StoreConfig,
    };

    if args.store.exists() {
        bail!("{} exists; give a fresh directory", args.store.display());
    }
    // The broker's defaults (1 GiB CommitLog files, ASYNC_FLUSH), except the disk-usage guards:
    // bench machines share a nearly full volume.
    let config = StoreConfig {
        store_path_root_dir: args.store.clone(),
        flush_disk_type: FlushDiskType::AsyncFlush,
        disk_space_warning_level_ratio: 0.999,
        clean_file_forcibly_enable: false,
        ..StoreConfig::default()
    };
    let store = MessageStore::open(config, Arc::new(MmapDisk::new()))
        .await
        .with_context(|| format!("opening a store in {}", args.store.display()))?;
    let run_id = rt::random_u64();
    let host: std::net::SocketAddr = ([127, 0, 0, 1], 10911).into();
    // What the broker stores for an mqbench send: the client's UNIQ_KEY and WAIT, the
    // broker's CLUSTER; 8 queues round robin.
    let message = |seq: u64| {
        let mut body = format!("{run_id:016x} {seq:012} ").into_bytes();
        body.resize(args.size.max(body.len()), b'x');
        let mut props = Properties::new();
        props.insert(UNIQ_KEY.to_string(), format!("7F00000100002A9F{seq:016X}"));
        props.insert(WAIT.to_string(), "true".to_string());
        props.insert(CLUSTER.to_string(), "DefaultCluster".to_string());
        MessageToStore {
            topic: "BenchStoreAppend".to_string(),
            queue_id: (seq % 8) as i32,
            body: body.into(),
            properties: encode_properties(&props),
            born_timestamp: rt::now_ms(),
            born_host: Some(host),
            store_host: Some(host),
            wait_store_msg_ok: true,
            ..MessageToStore::default()
        }
    };
    let first = store.put_message(message(0)).await;
    if first.status != PutMessageStatus::PutOk {
        bail!("first append: {:?} {:?}", first.status, first.remark);
    }
    let entry_bytes = first
        .append
        .map_or(args.size as u64, |a| a.wrote_bytes as u64);
    let count = (args.mb * 1024 * 1024 / entry_bytes.max(1)).max(1);
    // Built before the clock starts: building a message is the producer's work.
    let messages: Vec<_> = (1..=count).map(message).collect();
    let t0 = Instant::now();
    let cpu0 = process_cpu_secs();
    for m in messages {
        let r = store.put_message(m).await;
        if r.status != PutMessageStatus::PutOk {
            bail!("append: {:?} {:?}", r.status, r.remark);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu0;
    store.shutdown().await;
    drop(store);
    if !args.keep {
        std::fs::remove_dir_all(&args.store)
            .with_context(|| format!("removing {}", args.store.display()))?;
    }
    let summary = json!({
        "role": "store_append",
        "size_bytes": args.size,
        "entry_bytes": entry_bytes,
        "appended": count,
        "elapsed_secs": (secs * 1e4).round() / 1e4,
        "tps": round2(count as f64 / secs.max(1e-9)),
        "mb_per_sec": round2(mb(count * args.size as u64, secs)),
        "cpu_us_per_msg": round2(cpu * 1e6 / count as f64),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{summary:#}");
    }
    Ok(())
}

// ------------------------------------------------------------------------------ startup

/// VmRSS of `pid` in KiB, from /proc (Linux only).
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run_startup(args: StartupArgs) -> anyhow::Result<()> {
    let namesrv = namesrv_list(&args.namesrv);
    let (program, rest) = args
        .command
        .split_first()
        .context("no broker command after `--`")?;
    let t0 = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(rest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let pid = child.id();
    let client = client(&namesrv);
    let mut config = ProducerConfig::new("benchmark_startup");
    config.retry_times_when_send_failed = 0;
    config.send_timeout_ms = 1_000;
    let producer = Producer::new(client, config);
    let tc = TopicConfig::new(&args.topic, 4, 4, PERM_READ | PERM_WRITE);
    let mut topic_created_ms = None;
    let mut first_send_ms = None;
    let mut attempts = 0u64;
    let mut last_error = String::new();
    // (ms since spawn, error) whenever the error changes: where the start-up time goes.
    let mut timeline: Vec<(f64, String)> = Vec::new();
    let note = |e: String, timeline: &mut Vec<(f64, String)>| {
        if timeline.last().is_none_or(|(_, last)| *last != e) && timeline.len() < 32 {
            timeline.push((round2(t0.elapsed().as_secs_f64() * 1e3), e));
        }
    };
    while t0.elapsed().as_secs_f64() < args.timeout_secs {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("broker exited before accepting a send: {status}");
        }
        attempts += 1;
        if topic_created_ms.is_none() {
            match producer
                .client()
                .create_topic_on_cluster(&args.cluster, &tc)
                .await
            {
                Ok(_) => topic_created_ms = Some(t0.elapsed().as_secs_f64() * 1e3),
                Err(e) => {
                    last_error = e.to_string();
                    note(format!("create topic: {e}"), &mut timeline);
                }
            }
        }
        if topic_created_ms.is_some() {
            match producer
                .send(Message::new(
                    &args.topic,
                    "startup probe".as_bytes().to_vec(),
                ))
                .await
            {
                Ok(_) => {
                    first_send_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                Err(e) => {
                    last_error = e.to_string();
                    note(format!("send: {e}"), &mut timeline);
                    producer.client().invalidate_route(&args.topic);
                }
            }
        }
        rt::sleep_ms(2).await;
    }
    let rss_kib = vm_rss_kib(pid);
    if !args.keep {
        // SIGTERM: the broker shuts down cleanly.
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let _ = child.wait();
    }
    let summary = json!({
        "role": "startup",
        "pid": pid,
        "topic_created_ms": topic_created_ms.map(round2),
        "first_send_ms": first_send_ms.map(round2),
        "attempts": attempts,
        "timeline": timeline,
        "vm_rss_kib_after_first_send": rss_kib,
        "last_error": (first_send_ms.is_none()).then_some(last_error.clone()),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{summary:#}");
    }
    if first_send_ms.is_none() {
        bail!(
            "no accepted send within {} s: {last_error}",
            args.timeout_secs
        );
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() {
    init_tracing();
    let args = Args::parse();
    let result = match args.role {
        Role::Producer(a) => run_producer(a).await,
        Role::Consumer(a) => run_consumer(a).await,
        Role::StoreAppend(a) => run_store_append(a).await,
        Role::Startup(a) => run_startup(a).await,
    };
    if let Err(e) = result {
        eprintln!("mqbench: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_within_bucket_precision() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        for (p, exact) in [(50.0, 5_000u64), (99.0, 9_900), (99.9, 9_990)] {
            let got = h.percentile(p);
            assert!(
                got >= exact && (got - exact) as f64 <= exact as f64 * 0.04,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.max, 10_000);
        assert_eq!(h.percentile(100.0), 10_000);
        for v in [0u64, 1, 63, 64, 65, 1 << 20, u32::MAX as u64] {
            assert!(Histogram::upper(Histogram::index(v)) >= v, "{v}");
        }
    }

    #[test]
    fn pacer_issues_slots_at_the_rate_and_never_early() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let pacer = Pacer::start(5_000.0, Duration::ZERO).expect("pacer thread");
            let mut last = None;
            let mut taken = 0u64;
            while pacer.start.elapsed() < Duration::from_millis(200) {
                let due = pacer.next().await.expect("open");
                let now = Instant::now();
                assert!(due <= now, "slot handed out before its time");
                assert!(last.is_none_or(|l| l < due), "slots out of order");
                last = Some(due);
                taken += 1;
            }
            let elapsed = pacer.start.elapsed().as_secs_f64();
            let wake_lag = pacer.finish();
            assert!(
                pacer.next().await.is_none(),
                "closed pacer handed out a slot"
            );
            // Every slot due by the end was taken (the taker never waits), none beyond it.
            let expected = elapsed * 5_000.0;
            assert!(
                (taken as f64) <= expected + 1.0 && (taken as f64) >= expected * 0.75,
                "{taken} slots in {elapsed:.3} s at 5000/s"
            );
            assert!(wake_lag.total > 0);
        });
    }

    #[test]
    fn a_pace_tick_releases_due_slots_together_and_never_early() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let pacer = Pacer::start(5_000.0, Duration::from_millis(5)).expect("pacer thread");
            let mut taken = 0u64;
            while pacer.start.elapsed() < Duration::from_millis(200) {
                let due = pacer.next().await.expect("open");
                assert!(due <= Instant::now(), "slot handed out before its time");
                taken += 1;
            }
            let elapsed = pacer.start.elapsed().as_secs_f64();
            let wake_lag = pacer.finish();
            let expected = elapsed * 5_000.0;
            assert!(
                (taken as f64) <= expected + 1.0 && (taken as f64) >= expected * 0.75,
                "{taken} slots in {elapsed:.3} s at 5000/s"
            );
            // One wake-up per 5 ms tick issues ~25 slots, not one wake-up per slot.
            assert!(
                wake_lag.total as f64 <= elapsed / 0.005 + 2.0,
                "{} wake-ups in {elapsed:.3} s with a 5 ms tick",
                wake_lag.total
            );
        });
    }

    #[test]
    fn verifier_counts_duplicates_and_gaps() {
        let mut v = Verifier::default();
        let body = |seq: u64| format!("{:016x} {:012} xxxx", 0xabcu64, seq).into_bytes();
        for s in [0, 1, 1, 3] {
            v.observe(&body(s));
        }
        v.observe(b"garbage");
        assert_eq!(v.distinct(0xabc), 3);
        assert_eq!(v.unparsable, 1);
        assert_eq!(v.runs[&0xabc], vec![1, 2, 0, 1]);
    }
}
