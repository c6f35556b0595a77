//! t00: the harness guards itself and the runtime seam, with no broker involved. A tiny
//! append-log server on Apogee's remoting server and the node's SimDisk; a client appends
//! records (some fsynced) while the supervisor crashes the server in every mode, partitions
//! the client, then restarts everything. Checks: records synced before a crash survive every
//! mode; a process crash keeps unsynced records; a power loss drops them; requests across a
//! clogged link fail and succeed again after the heal; the trace digest is printed for replay.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apogee::remoting::server::BoxFuture;
use apogee::remoting::{
    Connection, RemotingClient, RemotingCommand, RemotingServer, RequestProcessor,
};
use apogee::store::Disk;
use harness::cluster::{addr, broker_ip, client_ip, on_node, Cluster, NodeContext, Role};
use harness::disk::{CrashMode, SimDiskHandle};
use harness::{SimOutcome, Trace};

const APPEND: i32 = 9001;
const READ_ALL: i32 = 9002;
const LOG_PATH: &str = "/store/log";
const PORT: u16 = 7000;

struct AppendLog {
    disk: Arc<dyn Disk>,
}

impl AppendLog {
    fn append(&self, data: &[u8], sync: bool) -> std::io::Result<u64> {
        let path = Path::new(LOG_PATH);
        let file = if self.disk.exists(path) {
            self.disk.open(path)?
        } else {
            self.disk.create_dir_all(Path::new("/store"))?;
            let f = self.disk.create(path, 0)?;
            self.disk.sync_dir(Path::new("/store"))?;
            f
        };
        let at = file.len();
        file.write_at(at, data)?;
        if sync {
            file.sync_all()?;
        }
        Ok(at)
    }

    fn read_all(&self) -> std::io::Result<Vec<u8>> {
        Ok(
            apogee::store::disk::read_file(self.disk.as_ref(), Path::new(LOG_PATH))?
                .unwrap_or_default(),
        )
    }
}

impl RequestProcessor for AppendLog {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            let resp = match request.code {
                APPEND => match self.append(&request.body, request.ext_bool("sync", false)) {
                    Ok(at) => request.response(0, None).with_ext("at", at),
                    Err(e) => request.response(1, Some(e.to_string())),
                },
                READ_ALL => match self.read_all() {
                    Ok(data) => request.response(0, None).with_body(data),
                    Err(e) => request.response(1, Some(e.to_string())),
                },
                _ => request.response(3, Some("unknown code".to_string())),
            };
            Some(resp)
        })
    }
}

async fn append(
    client: &RemotingClient,
    server: &str,
    record: &str,
    sync: bool,
) -> Result<(), String> {
    let req = RemotingCommand::request(APPEND)
        .with_ext("sync", sync)
        .with_body(format!("{record};").into_bytes());
    match client.invoke(server, req, 1_000).await {
        Ok(r) if r.code == 0 => Ok(()),
        Ok(r) => Err(format!("code {} {:?}", r.code, r.remark)),
        Err(e) => Err(e.to_string()),
    }
}

async fn read_all(client: &RemotingClient, server: &str) -> Result<String, String> {
    let req = RemotingCommand::request(READ_ALL);
    match client.invoke(server, req, 1_000).await {
        Ok(r) if r.code == 0 => Ok(String::from_utf8_lossy(&r.body).into_owned()),
        Ok(r) => Err(format!("code {} {:?}", r.code, r.remark)),
        Err(e) => Err(e.to_string()),
    }
}

/// Retries a read until the restarted server answers (bounded).
async fn read_eventually(client: &RemotingClient, server: &str) -> String {
    for _ in 0..50 {
        if let Ok(s) = read_all(client, server).await {
            return s;
        }
        apogee::rt::sleep_ms(100).await;
    }
    panic!("server {server} never came back");
}

async fn scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut cluster = Cluster::new(trace.clone());
    let disk = SimDiskHandle::new("/store");
    let server_ip = broker_ip(0);
    let server = addr(server_ip, PORT);
    cluster.add_node(
        "server",
        Role::Broker,
        server_ip,
        Some(disk.clone()),
        Arc::new(|ctx: NodeContext| {
            Box::pin(async move {
                let processor = Arc::new(AppendLog {
                    disk: ctx.disk.clone().expect("disk").as_disk(),
                });
                let _server =
                    RemotingServer::bind(std::net::SocketAddr::new(ctx.ip, PORT), processor)
                        .await
                        .expect("bind");
                ctx.status.lock().expect("status").serving = true;
                futures::future::pending::<()>().await;
            })
        }),
    );
    cluster.add_node(
        "client",
        Role::Client,
        client_ip(0),
        None,
        Arc::new(|_ctx: NodeContext| Box::pin(futures::future::pending::<()>())),
    );
    apogee::rt::sleep_ms(100).await;

    for (round, mode) in CrashMode::ALL.iter().enumerate() {
        let s = server.clone();
        let t = trace.clone();
        let before = on_node(&cluster, "client", async move {
            let c = RemotingClient::new();
            let durable = format!("r{round}-synced");
            let volatile = format!("r{round}-unsynced");
            append(&c, &s, &durable, true).await.expect("synced append");
            append(&c, &s, &volatile, false)
                .await
                .expect("unsynced append");
            let log = read_all(&c, &s).await.expect("read");
            t.event(format!("round {round} before crash: {log}"));
            log
        })
        .await;
        assert!(before.contains(&format!("r{round}-unsynced;")));
        cluster.crash("server", *mode);
        apogee::rt::sleep_ms(harness::draw(100, 1000)).await;
        cluster.restart("server");
        let s = server.clone();
        let after = on_node(&cluster, "client", async move {
            read_eventually(&RemotingClient::new(), &s).await
        })
        .await;
        trace.event(format!("round {round} after {mode:?}: {after}"));
        assert!(
            after.contains(&format!("r{round}-synced;")),
            "synced record lost by {mode:?}: {after:?}"
        );
        match mode {
            CrashMode::ProcessCrash => assert!(
                after.contains(&format!("r{round}-unsynced;")),
                "a process crash must keep the page cache: {after:?}"
            ),
            CrashMode::PowerLoss => assert!(
                !after.contains(&format!("r{round}-unsynced")),
                "a power loss must drop unsynced bytes: {after:?}"
            ),
            CrashMode::TornPowerLoss => {}
        }
    }

    // A clogged link: requests fail (timeout), then succeed after the heal.
    cluster.clog_link("client", "server");
    let s = server.clone();
    let during = on_node(&cluster, "client", async move {
        append(&RemotingClient::new(), &s, "clogged", false).await
    })
    .await;
    assert!(during.is_err(), "append across a clogged link succeeded");
    cluster.heal_network();
    let s = server.clone();
    let healed = on_node(&cluster, "client", async move {
        let c = RemotingClient::new();
        for _ in 0..50 {
            if append(&c, &s, "healed", true).await.is_ok() {
                return true;
            }
            apogee::rt::sleep_ms(200).await;
        }
        false
    })
    .await;
    assert!(healed, "append never succeeded after the heal");
    trace.event("t00 done");
    SimOutcome {
        trace_digest: trace.digest(),
        trace_events: trace.events(),
        sim_elapsed: trace.elapsed(),
        summary: format!("crashes={}", disk.crash_count()),
    }
}

#[test]
fn t00_harness() {
    harness::run("t00_harness", Duration::from_secs(300), scenario);
}
