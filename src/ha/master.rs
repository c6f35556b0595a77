//! Master side of classic HA (RocketMQ `HAService` + `HAConnection`): accept slaves on
//! haListenPort, stream raw CommitLog ranges, track acknowledged offsets, answer SYNC_MASTER.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::wire::{encode_transfer, ReportReader};
use super::{HaConfig, HaError};
use crate::rt::{self, net::TcpListener, net::TcpStream};
use crate::store::replication::{ReplicaWait, ReplicationWaiter, WaitFuture};
use crate::store::MessageStore;

/// One connected slave as the master sees it.
#[derive(Debug)]
struct SlaveConn {
    peer: SocketAddr,
    /// Last reported (validated) max offset; -1 before the first report.
    acked_offset: AtomicI64,
}

/// A snapshot of one slave connection (runtime info, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveStatus {
    pub peer: SocketAddr,
    /// -1 until the slave's first report.
    pub acked_offset: i64,
}

struct Shared {
    store: Arc<MessageStore>,
    config: HaConfig,
    conns: Mutex<BTreeMap<u64, Arc<SlaveConn>>>,
    next_conn_id: AtomicU64,
    /// Master's written end, bumped by the store's put path: wakes the transfer loops.
    written: watch::Sender<i64>,
    /// Highest offset any slave acknowledged (RocketMQ `push2SlaveMaxOffset`).
    push2slave_max_offset: watch::Sender<i64>,
    shutdown: watch::Sender<bool>,
    /// Reports refused because they claimed more than the master wrote.
    rejected_reports: AtomicU64,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<SlaveConn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// RocketMQ `isSlaveOK`: some slave connected, reporting, and less than
    /// haMaxGapNotInSync behind the master's written end.
    fn slave_in_sync(&self) -> bool {
        let master_max = self.store.commitlog_max_offset();
        self.conns().values().any(|c| {
            let acked = c.acked_offset.load(Ordering::Acquire);
            acked >= 0 && master_max - acked < self.config.max_gap_not_in_sync
        })
    }
}

/// The master's HA service. Created by [`HaService::start`]; installs itself as the store's
/// replication waiter.
pub struct HaService {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_task: Mutex<Option<rt::JoinHandle<()>>>,
}

impl HaService {
    /// Binds `bind_addr` (port 0: ephemeral, for tests) and starts accepting slaves.
    pub async fn start(
        store: Arc<MessageStore>,
        bind_addr: SocketAddr,
        config: HaConfig,
    ) -> Result<Arc<HaService>, HaError> {
        let listener = TcpListener::bind(bind_addr)
            .await
            .map_err(|source| HaError::Bind {
                addr: bind_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| HaError::Bind {
            addr: bind_addr,
            source,
        })?;
        let (written, _) = watch::channel(store.commitlog_max_offset());
        let (push2slave_max_offset, _) = watch::channel(-1);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: store.clone(),
            config,
            conns: Mutex::new(BTreeMap::new()),
            next_conn_id: AtomicU64::new(1),
            written,
            push2slave_max_offset,
            shutdown,
            rejected_reports: AtomicU64::new(0),
        });
        let accept_task = rt::spawn(accept_loop(shared.clone(), listener));
        let service = Arc::new(HaService {
            shared,
            local_addr,
            accept_task: Mutex::new(Some(accept_task)),
        });
        store.set_replication_waiter(service.clone());
        tracing::info!(%local_addr, "HA service listening for slaves");
        Ok(service)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connected slaves and what each acknowledged.
    pub fn slaves(&self) -> Vec<SlaveStatus> {
        self.shared
            .conns()
            .values()
            .map(|c| SlaveStatus {
                peer: c.peer,
                acked_offset: c.acked_offset.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Highest offset a slave acknowledged (-1: none yet).
    pub fn push2slave_max_offset(&self) -> i64 {
        *self.shared.push2slave_max_offset.borrow()
    }

    pub fn is_slave_in_sync(&self) -> bool {
        self.shared.slave_in_sync()
    }

    /// Reports refused (offset beyond the master's written end) since start.
    pub fn rejected_reports(&self) -> u64 {
        self.shared.rejected_reports.load(Ordering::Relaxed)
    }

    /// Stops accepting and closes every slave connection.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let task = self
            .accept_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl ReplicationWaiter for HaService {
    fn appended(&self, end_offset: i64) {
        self.shared.written.send_if_modified(|w| {
            if end_offset > *w {
                *w = end_offset;
                true
            } else {
                false
            }
        });
    }

    fn wait_replicated(&self, end_offset: i64) -> WaitFuture {
        let shared = self.shared.clone();
        Box::pin(async move {
            if !shared.slave_in_sync() {
                return ReplicaWait::NoSlave(
                    "no slave connected and in sync (SYNC_MASTER needs one)".into(),
                );
            }
            let mut acked = shared.push2slave_max_offset.subscribe();
            let timeout_ms = shared.config.slave_timeout_ms;
            let waited = rt::timeout(Duration::from_millis(timeout_ms), async {
                loop {
                    if *acked.borrow_and_update() >= end_offset {
                        return true;
                    }
                    if acked.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await;
            match waited {
                Ok(true) => ReplicaWait::Acked,
                _ => ReplicaWait::TimedOut(format!(
                    "no slave acknowledged offset {end_offset} within slaveTimeout {timeout_ms} ms"
                )),
            }
        })
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conn_tasks = Vec::new();
    loop {
        let accepted = rt::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                conn_tasks.push(rt::spawn(async move {
                    tracing::info!(%peer, "HA slave connected");
                    let result = serve_slave(&shared, id, stream, peer).await;
                    shared.conns().remove(&id);
                    match result {
                        Ok(()) => tracing::info!(%peer, "HA slave connection closed"),
                        Err(e) => tracing::warn!(%peer, "HA slave connection closed: {e}"),
                    }
                }));
                conn_tasks.retain(|t: &rt::JoinHandle<()>| !t.is_finished());
            }
            Err(e) => {
                tracing::warn!("HA accept failed: {e}");
                rt::sleep_ms(100).await;
            }
        }
    }
    for task in conn_tasks {
        let _ = task.await;
    }
}

/// Validates a slave's report: never trust an offset the master has not written.
fn check_report(
    shared: &Shared,
    peer: SocketAddr,
    reported: i64,
    master_max: i64,
) -> Result<(), HaError> {
    if reported < 0 || reported > master_max {
        shared.rejected_reports.fetch_add(1, Ordering::Relaxed);
        return Err(HaError::Protocol(format!(
            "slave {peer} reports max offset {reported} but the master has written only up to \
             {master_max}; the acknowledgement is not trusted (diverged or foreign slave)"
        )));
    }
    Ok(())
}

async fn serve_slave(
    shared: &Arc<Shared>,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), HaError> {
    let io_err = |source| HaError::Io {
        peer: peer.to_string(),
        source,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let conn = Arc::new(SlaveConn {
        peer,
        acked_offset: AtomicI64::new(-1),
    });
    shared.conns().insert(id, conn.clone());
    let store = &shared.store;
    let config = &shared.config;
    let mut shutdown = shared.shutdown.subscribe();
    let mut written = shared.written.subscribe();
    let mut reports = ReportReader::default();
    // Where the next chunk starts; None until the first report fixes it.
    let mut next_transfer: Option<i64> = None;
    let mut last_read = rt::now();
    let mut last_write = rt::now();
    let heartbeat = Duration::from_millis(config.send_heartbeat_interval_ms);
    let housekeeping = Duration::from_millis(config.housekeeping_interval_ms);
    let mut rbuf = vec![0u8; 1024];
    loop {
        let master_max = store.commitlog_max_offset();
        let has_data = matches!(next_transfer, Some(n) if n < master_max);
        let now = rt::now();
        let mut wake = (last_read + housekeeping).min(now + Duration::from_secs(1));
        if next_transfer.is_some() {
            wake = wake.min(last_write + heartbeat);
        }
        let sleep_for = wake.saturating_duration_since(now);
        enum Step {
            Read(usize),
            Send,
            Tick,
        }
        let step = rt::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            n = rd.read(&mut rbuf) => Step::Read(n.map_err(io_err)?),
            _ = std::future::ready(()), if has_data => Step::Send,
            _ = written.changed(), if next_transfer.is_some() => Step::Tick,
            _ = rt::sleep(sleep_for) => Step::Tick,
        };
        match step {
            Step::Read(0) => return Ok(()),
            Step::Read(n) => {
                last_read = rt::now();
                let Some(reported) = reports.feed(&rbuf[..n]) else {
                    continue;
                };
                let master_max = store.commitlog_max_offset();
                check_report(shared, peer, reported, master_max)?;
                if next_transfer.is_none() {
                    let start = if reported == 0 {
                        // A new slave starts at the master's last file, like RocketMQ.
                        master_max - master_max % store.commitlog_file_size()
                    } else {
                        reported
                    };
                    if start < store.commitlog_min_offset() {
                        return Err(HaError::Protocol(format!(
                            "slave {peer} needs offset {start} but the master's CommitLog now \
                             starts at {}; the slave must be rebuilt",
                            store.commitlog_min_offset()
                        )));
                    }
                    tracing::info!(%peer, reported, start, "HA transfer starts");
                    next_transfer = Some(start);
                }
                conn.acked_offset.store(reported, Ordering::Release);
                shared.push2slave_max_offset.send_if_modified(|m| {
                    if reported > *m {
                        *m = reported;
                        true
                    } else {
                        false
                    }
                });
            }
            Step::Send => {
                let Some(from) = next_transfer else { continue };
                let chunk = store.read_commitlog_range(from, config.transfer_batch_size)?;
                let Some(chunk) = chunk else {
                    if from < store.commitlog_min_offset() {
                        return Err(HaError::Protocol(format!(
                            "offset {from} for slave {peer} was deleted from the master"
                        )));
                    }
                    // Raced with a file boundary: try again shortly.
                    rt::sleep_ms(1).await;
                    continue;
                };
                send(&mut wr, &encode_transfer(from, &chunk), housekeeping, peer).await?;
                next_transfer = Some(from + chunk.len() as i64);
                last_write = rt::now();
            }
            Step::Tick => {
                let now = rt::now();
                let silent = now.saturating_duration_since(last_read);
                if silent >= housekeeping {
                    return Err(HaError::Housekeeping {
                        peer: peer.to_string(),
                        silent_ms: silent.as_millis() as u64,
                    });
                }
                if let Some(from) = next_transfer {
                    if now.saturating_duration_since(last_write) >= heartbeat {
                        send(&mut wr, &encode_transfer(from, &[]), housekeeping, peer).await?;
                        last_write = rt::now();
                    }
                }
            }
        }
    }
}

async fn send<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    deadline: Duration,
    peer: SocketAddr,
) -> Result<(), HaError> {
    let io_err = |source| HaError::Io {
        peer: peer.to_string(),
        source,
    };
    match rt::timeout(deadline, async {
        wr.write_all(bytes).await?;
        wr.flush().await
    })
    .await
    {
        Ok(r) => r.map_err(io_err),
        Err(_) => Err(HaError::Housekeeping {
            peer: peer.to_string(),
            silent_ms: deadline.as_millis() as u64,
        }),
    }
}
