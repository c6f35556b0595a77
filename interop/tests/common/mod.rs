//! Harness: builds the real Apogee binaries, runs `mqnamesrv` and `mqbroker -c <file>` as child processes on
//! loopback (ports chosen per test), and sets up the crates.io client. Every wait is bounded so a broken
//! broker fails a test instead of hanging it; process logs are printed when a test fails.

#![allow(dead_code)] // each test file uses a different subset

pub mod client;
pub mod remoting;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Paths of the built binaries.
pub struct Binaries {
    pub mqnamesrv: PathBuf,
    pub mqbroker: PathBuf,
    pub mqadmin: PathBuf,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("interop crate lives one level below the workspace root")
        .to_path_buf()
}

/// Builds the workspace's binaries once per test process with the same cargo, profile and target directory as
/// this test binary (target/<profile>/deps/<test> → target/<profile>), so `cargo test --workspace` from a
/// clean clone works and a stale binary is never used. `APOGEE_BIN_DIR` skips the build (pre-built binaries).
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| match build_binaries() {
        Ok(b) => b,
        Err(e) => panic!("cannot build/locate the apogee binaries: {e:#}"),
    })
}

fn build_binaries() -> Result<Binaries> {
    // Cross-checking the tests against another RocketMQ-compatible implementation (same CLI: `-c <file>`).
    if let (Some(n), Some(b)) = (
        std::env::var_os("INTEROP_NAMESRV_BIN"),
        std::env::var_os("INTEROP_BROKER_BIN"),
    ) {
        eprintln!(
            "[harness] using INTEROP_NAMESRV_BIN / INTEROP_BROKER_BIN instead of apogee's binaries"
        );
        return Ok(Binaries {
            mqnamesrv: n.into(),
            mqbroker: b.into(),
            mqadmin: PathBuf::new(),
        });
    }
    let exe_suffix = std::env::consts::EXE_SUFFIX;
    let bin_dir = if let Some(dir) = std::env::var_os("APOGEE_BIN_DIR") {
        PathBuf::from(dir)
    } else {
        let test_exe = std::env::current_exe()?;
        // target/<profile>/deps/<test-exe>
        let profile_dir = test_exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| anyhow!("unexpected test executable path {}", test_exe.display()))?
            .to_path_buf();
        let target_dir = profile_dir
            .parent()
            .ok_or_else(|| anyhow!("unexpected profile dir {}", profile_dir.display()))?;
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .ok_or_else(|| anyhow!("bad profile dir"))?
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace_root())
            // Same package selection and dev-dependency activation as `cargo test --workspace` /
            // `cargo build --workspace --all-targets` (scripts/test.sh): shared dependencies then resolve
            // to the same features, so this is a no-op there instead of a rebuild of tokio and apogee
            // with apogee-only features.
            .args(["build", "--workspace", "--bins", "--tests", "--target-dir"])
            .arg(target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {cargo} build --workspace --bins --tests"))?;
        if !out.status.success() {
            bail!(
                "`cargo build --workspace --bins --tests` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("[harness] apogee binaries built in {:?}", started.elapsed());
        profile_dir
    };
    let bins = Binaries {
        mqnamesrv: bin_dir.join(format!("mqnamesrv{exe_suffix}")),
        mqbroker: bin_dir.join(format!("mqbroker{exe_suffix}")),
        mqadmin: bin_dir.join(format!("mqadmin{exe_suffix}")),
    };
    for p in [&bins.mqnamesrv, &bins.mqbroker] {
        if !p.exists() {
            bail!("binary {} does not exist", p.display());
        }
    }
    Ok(bins)
}

// ---------------------------------------------------------------------------------------------------------
// Ports

/// Picks `count` consecutive free loopback ports `base..base+count` below the ephemeral range (so outgoing
/// client connections cannot take them between the probe and the broker's bind). Ports are handed out once
/// per test process.
pub fn free_port_block(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let seed = std::process::id() % 1000;
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 20000..31999, spread by pid so concurrent test processes rarely collide.
        let base = 20000 + ((seed * 12 + n * 7) % 11990) as u16;
        let mut taken = TAKEN.lock().expect("port registry");
        if (base..base + count).any(|p| taken.contains(&p)) {
            continue;
        }
        let all_free = (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            taken.extend(base..base + count);
            return base;
        }
    }
    panic!("no free block of {count} loopback ports found");
}

// ---------------------------------------------------------------------------------------------------------
// Processes

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log_path: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        log_dir: &Path,
    ) -> Result<Proc> {
        // Restarted processes append to the same log so the whole history is printed on failure.
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env(
                "RUST_LOG",
                std::env::var("APOGEE_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Error if the process already exited (with its log).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early with {status}; log:\n{}",
                self.name,
                self.log_tail(200)
            );
        }
        Ok(())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL if it does not exit within `grace`. Returns true if it exited on SIGTERM.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        let pid = self.child.id() as i32;
        // The `kill` utility avoids a libc dependency just for SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill9();
        false
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log_path, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn tail_file(path: &Path, lines: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open {}: {e}>", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut s = String::new();
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    s.push_str(&String::from_utf8_lossy(&buf));
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub async fn wait_port(proc_: &mut Proc, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc_.check_alive()?;
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), connect).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not accept connections on 127.0.0.1:{port} within {timeout:?}; log:\n{}",
                proc_.name,
                proc_.log_tail(200)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Cluster: one namesrv + (optionally) one broker

#[derive(Clone, Debug)]
pub struct BrokerOptions {
    pub auto_create_topic_enable: bool,
    pub broker_name: String,
    pub cluster_name: String,
    /// Extra `key=value` lines appended to broker.conf.
    pub extra: Vec<(String, String)>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            auto_create_topic_enable: true,
            broker_name: "broker-a".to_string(),
            cluster_name: "DefaultCluster".to_string(),
            extra: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub namesrv: Proc,
    pub namesrv_port: u16,
    pub broker: Option<Proc>,
    /// listenPort; the broker also binds listenPort-2 (VIP) and listenPort+1 (HA).
    pub broker_port: u16,
    pub broker_conf: PathBuf,
    pub options: BrokerOptions,
    pub started: Instant,
    /// Set by `pass()`; when unset at drop (error return, panic, timeout) the process logs are printed.
    passed: std::sync::atomic::AtomicBool,
}

impl Cluster {
    /// Marks the test as passed: logs are not printed at drop.
    pub fn pass(&self) {
        self.passed.store(true, Ordering::SeqCst);
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    pub fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Starts only the name server (`mqnamesrv -c namesrv.conf` with listenPort set).
    pub async fn start_namesrv_only() -> Result<Cluster> {
        let bins = binaries();
        let dir = tempfile::Builder::new()
            .prefix("apogee-interop-")
            .tempdir()?;
        let namesrv_port = free_port_block(1);
        let namesrv_conf = dir.path().join("namesrv.conf");
        std::fs::write(&namesrv_conf, format!("listenPort={namesrv_port}\n"))?;
        let mut namesrv = Proc::spawn(
            "mqnamesrv",
            &bins.mqnamesrv,
            &["-c", namesrv_conf.to_str().expect("utf-8 temp path")],
            dir.path(),
            dir.path(),
        )?;
        wait_port(&mut namesrv, namesrv_port, Duration::from_secs(15)).await?;
        // broker port block: listenPort-2 (VIP), listenPort-1 (unused), listenPort, listenPort+1 (HA)
        let broker_port = free_port_block(4) + 2;
        let broker_conf = dir.path().join("broker.conf");
        Ok(Cluster {
            dir,
            namesrv,
            namesrv_port,
            broker: None,
            broker_port,
            broker_conf,
            options: BrokerOptions::default(),
            started: Instant::now(),
            passed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts a namesrv and a broker and waits until the broker is registered in the namesrv.
    pub async fn start(options: BrokerOptions) -> Result<Cluster> {
        let mut c = Cluster::start_namesrv_only().await?;
        c.options = options;
        c.write_broker_conf()?;
        c.start_broker().await?;
        Ok(c)
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn write_broker_conf(&self) -> Result<()> {
        let o = &self.options;
        let mut conf = String::new();
        conf.push_str(&format!("brokerClusterName={}\n", o.cluster_name));
        conf.push_str(&format!("brokerName={}\n", o.broker_name));
        conf.push_str("brokerId=0\n");
        conf.push_str(&format!("namesrvAddr={}\n", self.namesrv_addr()));
        conf.push_str(&format!("listenPort={}\n", self.broker_port));
        conf.push_str(&format!("haListenPort={}\n", self.broker_port + 1));
        conf.push_str("brokerIP1=127.0.0.1\n");
        // The shared CI volume can be nearly full: keep the disk-full guard out of these tests.
        conf.push_str("diskSpaceWarningLevelRatio=0.999\n");
        conf.push_str("cleanFileForciblyEnable=false\n");
        conf.push_str(&format!(
            "storePathRootDir={}\n",
            self.store_root().display()
        ));
        conf.push_str(&format!(
            "storePathCommitLog={}\n",
            self.store_root().join("commitlog").display()
        ));
        conf.push_str(&format!(
            "autoCreateTopicEnable={}\n",
            o.auto_create_topic_enable
        ));
        conf.push_str("autoCreateSubscriptionGroup=true\n");
        // Small segments keep the temp dirs small; RocketMQ's own key names.
        conf.push_str("mappedFileSizeCommitLog=67108864\n");
        conf.push_str("flushDiskType=ASYNC_FLUSH\n");
        for (k, v) in &o.extra {
            conf.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&self.broker_conf, conf)?;
        Ok(())
    }

    /// Spawns `mqbroker -c broker.conf`, waits for its port and for its registration in the namesrv.
    pub async fn start_broker(&mut self) -> Result<()> {
        let bins = binaries();
        let mut broker = Proc::spawn(
            "mqbroker",
            &bins.mqbroker,
            &["-c", self.broker_conf.to_str().expect("utf-8 temp path")],
            self.dir.path(),
            self.dir.path(),
        )?;
        wait_port(&mut broker, self.broker_port, Duration::from_secs(30)).await?;
        self.broker = Some(broker);
        self.wait_broker_registered(Duration::from_secs(20)).await?;
        Ok(())
    }

    pub fn kill9_broker(&mut self) {
        if let Some(mut b) = self.broker.take() {
            b.kill9();
            // keep its log: Proc::drop only kills (already dead)
        }
    }

    /// Graceful stop (SIGTERM); returns whether it exited within the grace period.
    pub async fn stop_broker(&mut self, grace: Duration) -> bool {
        match self.broker.take() {
            Some(mut b) => b.terminate(grace).await,
            None => true,
        }
    }

    /// Polls GET_BROKER_CLUSTER_INFO on the namesrv until our broker's address is listed.
    pub async fn wait_broker_registered(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.broker.as_mut() {
                b.check_alive()?;
            }
            let resp = remoting::call(
                &self.namesrv_addr(),
                remoting::code::GET_BROKER_CLUSTER_INFO,
                &[],
                &[],
                Duration::from_secs(3),
            )
            .await;
            let last = match resp {
                Ok(r) if r.code == 0 && r.body_text().contains(&self.broker_addr()) => {
                    return Ok(())
                }
                other => format!("{other:?}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "broker {} not registered in namesrv within {timeout:?}; last GET_BROKER_CLUSTER_INFO: {}\n{}",
                    self.broker_addr(),
                    last,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls GET_ROUTEINFO_BY_TOPIC until the namesrv knows `topic`; returns how long it took.
    pub async fn wait_topic_route(&self, topic: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            let r = remoting::call(
                &self.namesrv_addr(),
                remoting::code::GET_ROUTEINFO_BY_TOPIC,
                &[("topic", topic)],
                &[],
                Duration::from_secs(3),
            )
            .await;
            match r {
                Ok(r) if r.code == 0 => return Ok(start.elapsed()),
                other => last = Some(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "namesrv has no route for topic {topic} after {timeout:?}; last answer {}",
            last.unwrap_or_default()
        )
    }

    /// Committed offset of (group, topic, queue) as the broker reports it (QUERY_CONSUMER_OFFSET).
    /// `None` when the broker answers QUERY_NOT_FOUND.
    pub async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<i64>> {
        let q = queue_id.to_string();
        let r = remoting::call(
            &self.broker_addr(),
            remoting::code::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", group),
                ("topic", topic),
                ("queueId", &q),
                ("setZeroIfNotFound", "false"),
            ],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        match r.code {
            remoting::response::SUCCESS => Ok(Some(r.ext_i64("offset")?)),
            remoting::response::QUERY_NOT_FOUND => Ok(None),
            _ => bail!("QUERY_CONSUMER_OFFSET failed: {r:?}"),
        }
    }

    /// Max (next) logical offset of a queue (GET_MAX_OFFSET).
    pub async fn max_offset(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let q = queue_id.to_string();
        let r = remoting::call(
            &self.broker_addr(),
            remoting::code::GET_MAX_OFFSET,
            &[("topic", topic), ("queueId", &q)],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        if r.code != 0 {
            bail!("GET_MAX_OFFSET failed: {r:?}");
        }
        r.ext_i64("offset")
    }

    /// Number of consumer client ids the broker lists for `group` (GET_CONSUMER_LIST_BY_GROUP).
    pub async fn consumer_count(&self, group: &str) -> Result<usize> {
        let r = remoting::call(
            &self.broker_addr(),
            remoting::code::GET_CONSUMER_LIST_BY_GROUP,
            &[("consumerGroup", group)],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        if r.code != 0 {
            return Ok(0);
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .with_context(|| format!("GET_CONSUMER_LIST_BY_GROUP body is not JSON: {r:?}"))?;
        Ok(v.get("consumerIdList")
            .and_then(|l| l.as_array())
            .map(|a| a.len())
            .unwrap_or(0))
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["mqnamesrv", "mqbroker"] {
            let p = self.dir.path().join(format!("{name}.log"));
            if p.exists() {
                s.push_str(&format!(
                    "----- {name} log (tail) -----\n{}\n",
                    tail_file(&p, 150)
                ));
            }
        }
        if let Ok(conf) = std::fs::read_to_string(&self.broker_conf) {
            s.push_str(&format!("----- broker.conf -----\n{conf}"));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(b) = self.broker.as_mut() {
            b.kill9();
        }
        self.namesrv.kill9();
        if !self.passed.load(Ordering::SeqCst) || std::env::var_os("APOGEE_INTEROP_LOGS").is_some()
        {
            eprintln!(
                "===== process logs ({}) =====\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Misc helpers

/// Polls `cond` every 50 ms until true or `timeout`; returns whether it became true.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A topic/group name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a test body on a multi-thread runtime with an overall deadline, so a hung broker fails the test.
pub fn run_test<F, Fut>(limit: Duration, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    let result = rt.block_on(async { tokio::time::timeout(limit, body()).await });
    // Client tasks may still be parked on the runtime; don't wait for them.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("test failed: {e:#}"),
        Err(_) => panic!("test exceeded its {limit:?} deadline (hung client or broker?)"),
    }
}

pub type Counts = HashMap<String, usize>;
