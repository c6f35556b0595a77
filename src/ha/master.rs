//! Master side of classic HA (RocketMQ `HAService` + `HAConnection`): accept slaves on
//! haListenPort, stream raw CommitLog ranges, track acknowledged offsets, answer SYNC_MASTER.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use bytes::{Buf, BytesMut};

use super::wire::{
    encode_transfer, whole_entries_prefix, SlaveMessage, SlaveStreamReader, Transfer,
    TAKE_BACK_REQUEST,
};
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
    /// Not a `watch`: tokio's watch spreads its waiters over 8 `Notify`s picked with tokio's
    /// thread-local RNG, so the wake order of concurrent SYNC_MASTER waiters would differ between
    /// two simulations in one process (madsim's determinism check). `Notify` wakes in FIFO order.
    push2slave_max_offset: AtomicI64,
    /// Woken whenever `push2slave_max_offset` grows.
    acked_grew: tokio::sync::Notify,
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
        raise_fence_if_needed(&store)?;
        let (written, _) = watch::channel(store.commitlog_max_offset());
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: store.clone(),
            config,
            conns: Mutex::new(BTreeMap::new()),
            next_conn_id: AtomicU64::new(1),
            written,
            push2slave_max_offset: AtomicI64::new(-1),
            acked_grew: tokio::sync::Notify::new(),
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
        self.shared.push2slave_max_offset.load(Ordering::Acquire)
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
            if shared.config.debug_bugs.ack_before_slave_confirms {
                // Deliberate bug (t90): a false acknowledgement.
                return ReplicaWait::Acked;
            }
            if !shared.slave_in_sync() {
                return ReplicaWait::NoSlave(
                    "no slave connected and in sync (SYNC_MASTER needs one)".into(),
                );
            }
            let timeout_ms = shared.config.slave_timeout_ms;
            let waited = rt::timeout(Duration::from_millis(timeout_ms), async {
                loop {
                    // Register before reading, so a report between the two is not missed.
                    let grew = shared.acked_grew.notified();
                    tokio::pin!(grew);
                    grew.as_mut().enable();
                    if shared.push2slave_max_offset.load(Ordering::Acquire) >= end_offset {
                        return true;
                    }
                    grew.await;
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

/// The master-shorter-than-slave rule, part 1. A master that served a slave and recovered
/// abnormally may have lost a tail its slave holds (power loss under ASYNC_FLUSH, or any bytes
/// streamed before the fsync). Writing on would put new entries at offsets the slave already
/// holds with other bytes: a silent divergence, and under SYNC_MASTER the loss of acknowledged
/// messages. So writes are refused until a slave reports its offset (and any longer tail was
/// taken back, see `serve_slave`). A fence persisted by an earlier incarnation stays up.
fn raise_fence_if_needed(store: &MessageStore) -> Result<(), HaError> {
    let persisted = store.write_fence_persisted();
    let abnormal = store.recovery_outcome().abnormal && store.slave_seen_before();
    if !persisted && !abnormal {
        return Ok(());
    }
    let max = store.commitlog_max_offset();
    let reason = format!(
        "HA fence: this master recovered from an abnormal shutdown (CommitLog max offset {max}) \
         and its slave may hold a longer log; writes are refused until a slave reports its \
         offset and any missing tail is taken back from it"
    );
    tracing::error!(max, persisted, "{reason}");
    store.set_write_fence(Some(reason))?;
    Ok(())
}

/// A take-back in progress on one connection: the slave reported `until` > master max.
struct TakeBack {
    until: i64,
    /// Frame bytes not yet appended (an entry still incomplete); they start at the master's
    /// max offset.
    pending: BytesMut,
}

/// Checks a whole-entries chunk from the slave before the master appends it: every message
/// entry's body CRC and its stored physical offset must match where it lands.
fn verify_take_back(start: i64, data: &[u8], file_size: u64) -> Result<(), HaError> {
    use crate::message::entry::{
        decode_entry, peek_header, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2,
        POS_PHYSICAL_OFFSET,
    };
    let mut pos = 0usize;
    while pos < data.len() {
        let abs = start + pos as i64;
        let Some((total, magic)) = peek_header(&data[pos..]) else {
            return Err(HaError::Protocol(format!(
                "take-back: truncated entry header at CommitLog offset {abs}"
            )));
        };
        if magic == MESSAGE_MAGIC_CODE_V1 || magic == MESSAGE_MAGIC_CODE_V2 {
            let entry = &data[pos..pos + total as usize];
            decode_entry(entry, true).map_err(|e| {
                HaError::Protocol(format!(
                    "take-back: entry at CommitLog offset {abs} fails its check: {e}"
                ))
            })?;
            let stored = i64::from_be_bytes(
                entry[POS_PHYSICAL_OFFSET..POS_PHYSICAL_OFFSET + 8]
                    .try_into()
                    .expect("8 bytes"),
            );
            if stored != abs {
                return Err(HaError::Protocol(format!(
                    "take-back: entry at CommitLog offset {abs} says it belongs at {stored}"
                )));
            }
            pos += total as usize;
        } else {
            // A BLANK filler: whole_entries_prefix checked it runs to the end of its file.
            pos += (file_size - abs as u64 % file_size) as usize;
        }
    }
    Ok(())
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
    let mut reader = SlaveStreamReader::new(super::slave::MAX_TRANSFER_SIZE);
    let mut take_back: Option<TakeBack> = None;
    let mut marked_seen = false;
    let file_size = store.commitlog_file_size() as u64;
    // Where the next chunk starts; None until the first report fixes it.
    let mut next_transfer: Option<i64> = None;
    let mut last_read = rt::now();
    let mut last_write = rt::now();
    let heartbeat = Duration::from_millis(config.send_heartbeat_interval_ms);
    let housekeeping = Duration::from_millis(config.housekeeping_interval_ms);
    let mut rbuf = vec![0u8; 64 * 1024];
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
                reader.feed(&rbuf[..n]);
                while let Some(message) = reader.next_message()? {
                    let reported = match message {
                        SlaveMessage::Report(r) => r,
                        SlaveMessage::TakeBackFrame(frame) => {
                            let Some(tb) = take_back.as_mut() else {
                                return Err(HaError::Protocol(format!(
                                    "slave {peer} sent take-back bytes nobody asked for"
                                )));
                            };
                            take_back_frame(shared, peer, tb, &frame, file_size)?;
                            continue;
                        }
                        SlaveMessage::TakeBackEnd => {
                            let Some(tb) = take_back.take() else {
                                return Err(HaError::Protocol(format!(
                                    "slave {peer} ended a take-back nobody asked for"
                                )));
                            };
                            let master_max = store.commitlog_max_offset();
                            if master_max != tb.until || !tb.pending.is_empty() {
                                return Err(HaError::Protocol(format!(
                                    "slave {peer} reported {} but sent back only up to {} \
                                     ({} bytes of an incomplete entry); staying fenced",
                                    tb.until,
                                    master_max,
                                    tb.pending.len()
                                )));
                            }
                            tracing::warn!(
                                %peer,
                                master_max,
                                "HA take-back complete: the tail this master lost was copied \
                                 back from the slave; writes accepted again"
                            );
                            store.set_write_fence(None)?;
                            shared.written.send_replace(master_max);
                            tb.until
                        }
                    };
                    if take_back.is_some() {
                        // Heartbeat reports sent before the slave saw the request.
                        continue;
                    }
                    let master_max = store.commitlog_max_offset();
                    if reported > master_max && store.write_fence().is_some() {
                        if config.debug_bugs.discard_instead_of_take_back {
                            // Deliberate bug (t90): forget the slave's tail and write on.
                            tracing::error!(%peer, reported, master_max, "debug bug: discarding the slave's tail");
                            store.set_write_fence(None)?;
                        } else {
                            tracing::warn!(
                                %peer,
                                reported,
                                master_max,
                                "HA: slave holds {} bytes this master lost; taking them back \
                                 before accepting writes",
                                reported - master_max
                            );
                            send(
                                &mut wr,
                                &encode_transfer(TAKE_BACK_REQUEST, &master_max.to_be_bytes()),
                                housekeeping,
                                peer,
                            )
                            .await?;
                            take_back = Some(TakeBack {
                                until: reported,
                                pending: BytesMut::new(),
                            });
                            continue;
                        }
                    }
                    check_report(shared, peer, reported, master_max)?;
                    if store.write_fence().is_some() {
                        tracing::warn!(
                            %peer,
                            reported,
                            master_max,
                            "HA fence lifted: the slave holds nothing beyond this master's log"
                        );
                        store.set_write_fence(None)?;
                    }
                    if !marked_seen {
                        store.mark_slave_seen()?;
                        marked_seen = true;
                    }
                    on_report(shared, store, &conn, peer, reported, &mut next_transfer)?;
                }
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

/// Applies a validated report: fixes the transfer start on the first one, records the ack.
fn on_report(
    shared: &Shared,
    store: &MessageStore,
    conn: &SlaveConn,
    peer: SocketAddr,
    reported: i64,
    next_transfer: &mut Option<i64>,
) -> Result<(), HaError> {
    if next_transfer.is_none() {
        let master_max = store.commitlog_max_offset();
        let start = if reported == 0 {
            // A new slave starts at the master's last file, like RocketMQ.
            master_max - master_max % store.commitlog_file_size()
        } else {
            reported
        };
        if start < store.commitlog_min_offset() {
            return Err(HaError::Protocol(format!(
                "slave {peer} needs offset {start} but the master's CommitLog now starts at {}; \
                 the slave must be rebuilt",
                store.commitlog_min_offset()
            )));
        }
        tracing::info!(%peer, reported, start, "HA transfer starts");
        *next_transfer = Some(start);
    }
    conn.acked_offset.store(reported, Ordering::Release);
    let before = shared
        .push2slave_max_offset
        .fetch_max(reported, Ordering::AcqRel);
    if reported > before {
        shared.acked_grew.notify_waiters();
    }
    Ok(())
}

/// Appends the whole, verified entries of one take-back frame at the master's end.
fn take_back_frame(
    shared: &Shared,
    peer: SocketAddr,
    tb: &mut TakeBack,
    frame: &Transfer,
    file_size: u64,
) -> Result<(), HaError> {
    let store = &shared.store;
    let master_max = store.commitlog_max_offset();
    let expected = master_max + tb.pending.len() as i64;
    if frame.commitlog_offset != expected {
        return Err(HaError::Protocol(format!(
            "slave {peer} sent take-back bytes at {} but the master expects {expected}",
            frame.commitlog_offset
        )));
    }
    if expected + frame.data.len() as i64 > tb.until {
        return Err(HaError::Protocol(format!(
            "slave {peer} sends take-back bytes beyond the {} it reported",
            tb.until
        )));
    }
    tb.pending.extend_from_slice(&frame.data);
    let whole = whole_entries_prefix(master_max as u64, &tb.pending, file_size)?;
    if whole == 0 {
        return Ok(());
    }
    verify_take_back(master_max, &tb.pending[..whole], file_size)?;
    let end = store.append_raw(master_max, &tb.pending[..whole])?;
    assert_eq!(
        end,
        master_max + whole as i64,
        "take-back must land right after the master's end"
    );
    tb.pending.advance(whole);
    Ok(())
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
