//! `mqbroker`: the Apogee broker.
//!
//! * `mqbroker -c broker.conf [-n "a:9876;b:9876"]` — a broker from a RocketMQ broker.conf
//!   (`-n` overrides `namesrvAddr`, which overrides the `NAMESRV_ADDR` environment variable).
//! * `mqbroker --standalone [--store DIR] [--namesrv-port 9876] [--port 10911]` — an embedded
//!   name server plus a broker on 127.0.0.1, store under `./apogee-data` by default.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;

use apogee::broker::Broker;
use apogee::config::{resolve_namesrv_addrs, BrokerConfig, NamesrvConfig, NAMESRV_ADDR_ENV};
use apogee::namesrv::Namesrv;
use apogee::rt;
use apogee::store::disk::mmap::MmapDisk;
use apogee::store::Disk;

#[derive(Debug, Parser)]
#[command(
    name = "mqbroker",
    version,
    about = "Apogee: a RocketMQ-compatible broker"
)]
struct Args {
    /// Broker config file (RocketMQ broker.conf keys).
    #[arg(short = 'c', long = "configFile", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Name server list, `;`-separated (overrides namesrvAddr and NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr", value_name = "ADDRS")]
    namesrv_addr: Option<String>,
    /// Print every supported config key with its effective value and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
    /// Run an embedded name server and a broker on 127.0.0.1 (no config file needed).
    #[arg(long)]
    standalone: bool,
    /// Store root directory in standalone mode (default ./apogee-data).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Name server port in standalone mode.
    #[arg(long, default_value_t = 9876)]
    namesrv_port: u16,
    /// Broker listen port in standalone mode (the VIP port is port - 2).
    #[arg(long, default_value_t = 10911)]
    port: u16,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    Ok(cwd.join(path))
}

fn broker_config(args: &Args) -> anyhow::Result<BrokerConfig> {
    let mut config = match &args.config_file {
        Some(path) => {
            let (config, warnings) = BrokerConfig::load(path)?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            config
        }
        None if args.standalone => BrokerConfig::default(),
        None => bail!("no config file: use `mqbroker -c broker.conf` or `mqbroker --standalone`"),
    };
    let env = std::env::var(NAMESRV_ADDR_ENV).ok();
    config.namesrv_addrs = resolve_namesrv_addrs(
        args.namesrv_addr.as_deref(),
        env.as_deref(),
        &config.namesrv_addrs,
    )?;
    if args.standalone {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        config.broker_ip1 = loopback;
        config.listen_port = args.port;
        config.ha_listen_port = args.port.saturating_add(1);
        config.namesrv_addrs = vec![format!("{loopback}:{}", args.namesrv_port)];
        if args.store.is_some() || args.config_file.is_none() {
            let root = args
                .store
                .clone()
                .unwrap_or_else(|| PathBuf::from("apogee-data"));
            config.store.store_path_root_dir = root;
        }
    }
    config.store.store_path_root_dir = absolute(config.store.store_path_root_dir.clone())?;
    if let Some(bytes) = physical_memory_bytes() {
        config.store.total_physical_memory_bytes = bytes;
    }
    Ok(config)
}

/// MemTotal of /proc/meminfo (Linux); accessMessageInMemoryMaxRatio is a percent of it.
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    if args.print_config {
        print!("{}", config.to_properties());
        return Ok(());
    }
    if config.namesrv_addrs.is_empty() {
        tracing::warn!("no name server configured (-n, namesrvAddr or NAMESRV_ADDR): clients cannot find this broker");
    }
    let namesrv = if args.standalone {
        let ns_config = NamesrvConfig {
            listen_port: args.namesrv_port,
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..NamesrvConfig::default()
        };
        let ns = Namesrv::start(ns_config)
            .await
            .map_err(|e| anyhow::anyhow!("name server: {e}"))?;
        Some(ns)
    } else {
        None
    };
    let disk: Arc<dyn Disk> = Arc::new(MmapDisk::new());
    let store_root = config.store.store_path_root_dir.clone();
    let broker = Broker::start(config, disk).await?;
    if let Some(ns) = &namesrv {
        println!(
            "Apogee standalone: name server {} , broker {} (VIP {}), store {}",
            ns.local_addr(),
            broker.broker_addr(),
            broker.vip_addr(),
            store_root.display()
        );
        println!("clients: NAMESRV_ADDR={}", ns.local_addr());
    } else {
        println!(
            "Apogee broker {} listening on {} (VIP {}), store {}",
            broker.controller().config.broker_name,
            broker.broker_addr(),
            broker.vip_addr(),
            store_root.display()
        );
    }
    wait_for_shutdown().await;
    tracing::info!("shutdown requested");
    broker.shutdown().await;
    if let Some(ns) = namesrv {
        ns.shutdown();
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (rt::shutdown_signal): both shut down cleanly so offsets and configs are
/// persisted.
async fn wait_for_shutdown() {
    rt::shutdown_signal().await;
}

#[tokio::main]
async fn main() {
    init_tracing();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        // Our errors carry their cause in their own message: print just that line.
        eprintln!("mqbroker: {e}");
        std::process::exit(1);
    }
}
