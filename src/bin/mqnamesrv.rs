//! `mqnamesrv [-c FILE] [-p]`: Apogee's name server, configured like RocketMQ's.

use std::path::PathBuf;

use clap::Parser;

use apogee::config::NamesrvConfig;
use apogee::namesrv::Namesrv;
use apogee::rt;

#[derive(Parser, Debug)]
#[command(
    name = "mqnamesrv",
    version,
    about = "Apogee name server (RocketMQ-compatible)"
)]
struct Args {
    /// Name server config file (Java properties, RocketMQ keys; see conf/namesrv.conf).
    #[arg(short = 'c', long = "configFile", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config: bool,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(args: &Args) -> anyhow::Result<NamesrvConfig> {
    let Some(path) = &args.config_file else {
        return Ok(NamesrvConfig::default());
    };
    // ConfigError's message already names the file (and line and key for bad values) and its
    // cause, so it is flattened to one line rather than chained.
    let (config, warnings) = NamesrvConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_tracing();
    if let Err(err) = run(args).await {
        eprintln!("mqnamesrv: {err:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    if args.print_config {
        print!("{}", config.to_properties());
        return Ok(());
    }
    let namesrv = Namesrv::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "The Name Server boot success, listening on {}",
        namesrv.local_addr()
    );
    rt::shutdown_signal().await;
    tracing::info!("shutdown signal received");
    namesrv.shutdown();
    Ok(())
}
