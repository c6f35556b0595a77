//! Slave side of classic HA (RocketMQ `HAClient`): connect to the master's HA port, report the
//! local CommitLog max offset (on connect, after each append, every haSendHeartbeatInterval),
//! append what the master sends verbatim at the local end, reconnect with backoff.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::wire::{
    encode_report, encode_transfer, whole_entries_prefix, Transfer, TransferDecoder,
    TAKE_BACK_BEGIN, TAKE_BACK_REQUEST,
};
use super::{HaConfig, HaError};
use crate::rt::{self, net::TcpStream};
use crate::store::MessageStore;

/// RocketMQ's slave read buffer is 4 MiB; a transfer larger than this is not from a master.
pub const MAX_TRANSFER_SIZE: usize = 4 * 1024 * 1024;
/// Bytes held back while waiting for the rest of an entry (an entry or a BLANK file tail is at
/// most a few MiB); more means the stream is not CommitLog data.
pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// What the slave knows about its replication (runtime info, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaClientStatus {
    pub master_addr: Option<String>,
    pub connected: bool,
    /// Highest master offset seen in a transfer header (offset + size).
    pub master_offset_seen: i64,
    /// Sessions ended by an error (offset mismatch, protocol, i/o, housekeeping).
    pub failed_sessions: u64,
    pub last_error: Option<String>,
}

struct Shared {
    store: Arc<MessageStore>,
    config: HaConfig,
    /// haMasterAddress from broker.conf: when set, the namesrv's answer is ignored.
    configured_addr: Option<String>,
    master_addr: watch::Sender<Option<String>>,
    shutdown: watch::Sender<bool>,
    status: Mutex<HaClientStatus>,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, HaClientStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct HaClient {
    shared: Arc<Shared>,
    task: Mutex<Option<rt::JoinHandle<()>>>,
}

impl HaClient {
    /// Starts the replication loop. `configured_addr` is haMasterAddress (wins over the
    /// address learnt from the namesrv); with none the loop waits for
    /// [`HaClient::update_master_addr`].
    pub fn start(
        store: Arc<MessageStore>,
        configured_addr: Option<String>,
        config: HaConfig,
    ) -> Arc<HaClient> {
        let (master_addr, _) = watch::channel(configured_addr.clone());
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            config,
            configured_addr: configured_addr.clone(),
            master_addr,
            shutdown,
            status: Mutex::new(HaClientStatus {
                master_addr: configured_addr,
                ..Default::default()
            }),
        });
        let task = rt::spawn(run(shared.clone()));
        Arc::new(HaClient {
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// The master's HA address from the namesrv registration result (ignored when
    /// haMasterAddress is configured).
    pub fn update_master_addr(&self, addr: Option<String>) {
        if self.shared.configured_addr.is_some() {
            return;
        }
        let addr = addr.filter(|a| !a.is_empty());
        self.shared.master_addr.send_if_modified(|cur| {
            if *cur != addr {
                tracing::info!(?addr, "HA master address updated");
                *cur = addr.clone();
                true
            } else {
                false
            }
        });
    }

    pub fn status(&self) -> HaClientStatus {
        let mut s = self.shared.status().clone();
        s.master_addr = self.shared.master_addr.borrow().clone();
        s
    }

    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut addr_rx = shared.master_addr.subscribe();
    let mut backoff_ms = shared.config.reconnect_min_ms;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let addr = addr_rx.borrow_and_update().clone();
        let Some(addr) = addr else {
            rt::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return,
                _ = addr_rx.changed() => continue,
            }
        };
        let outcome = session(&shared, &addr, &mut addr_rx).await;
        shared.status().connected = false;
        match outcome {
            Ok(progressed) => {
                if progressed {
                    backoff_ms = shared.config.reconnect_min_ms;
                }
            }
            Err((e, progressed)) => {
                tracing::warn!(master = %addr, "HA replication from the master stopped: {e}");
                let mut st = shared.status();
                st.failed_sessions += 1;
                st.last_error = Some(e.to_string());
                if progressed {
                    backoff_ms = shared.config.reconnect_min_ms;
                }
            }
        }
        rt::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = rt::sleep_ms(backoff_ms) => {}
        }
        backoff_ms = (backoff_ms * 2).min(shared.config.reconnect_max_ms);
    }
}

/// One connection. Ok(progressed) on a clean end (shutdown, address change, master closed);
/// Err((why, progressed)) otherwise. `progressed`: some bytes were appended.
async fn session(
    shared: &Arc<Shared>,
    addr: &str,
    addr_rx: &mut watch::Receiver<Option<String>>,
) -> Result<bool, (HaError, bool)> {
    let mut progressed = false;
    macro_rules! bail {
        ($e:expr) => {
            return Err(($e, progressed))
        };
    }
    let peer: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => bail!(HaError::Protocol(format!(
            "master HA address `{addr}` is not ip:port: {e}"
        ))),
    };
    let io_err = |source| HaError::Io {
        peer: addr.to_string(),
        source,
    };
    let stream = match rt::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        TcpStream::connect(peer),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => bail!(io_err(e)),
        Err(_) => bail!(io_err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out"
        ))),
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let store = &shared.store;
    let config = &shared.config;
    let mut shutdown = shared.shutdown.subscribe();
    let heartbeat = Duration::from_millis(config.send_heartbeat_interval_ms);
    let housekeeping = Duration::from_millis(config.housekeeping_interval_ms);
    let file_size = store.commitlog_file_size() as u64;

    let mut local_max = store.commitlog_max_offset();
    if let Err(e) = report(&mut wr, local_max, addr, housekeeping).await {
        bail!(e)
    }
    {
        let mut st = shared.status();
        st.connected = true;
    }
    tracing::info!(master = %addr, local_max, "HA connected to master");
    let mut last_report = rt::now();
    let mut last_read = rt::now();
    let mut decoder = TransferDecoder::new(MAX_TRANSFER_SIZE);
    // Bytes received but not yet appended (the tail of an entry still in flight); they start
    // at `local_max`.
    let mut pending = BytesMut::new();
    // An empty store accepts the master's chosen (file-aligned) start once.
    let mut started = local_max > 0;
    let mut rbuf = vec![0u8; 64 * 1024];
    loop {
        let now = rt::now();
        let wake = (last_report + heartbeat).min(last_read + housekeeping);
        enum Step {
            Read(usize),
            Tick,
        }
        let step = rt::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(progressed),
            _ = addr_rx.changed() => {
                tracing::info!(old = %addr, "HA master address changed; reconnecting");
                return Ok(progressed);
            }
            n = rd.read(&mut rbuf) => match n {
                Ok(n) => Step::Read(n),
                Err(e) => bail!(io_err(e)),
            },
            _ = rt::sleep(wake.saturating_duration_since(now)) => Step::Tick,
        };
        match step {
            Step::Read(0) => {
                tracing::info!(master = %addr, "HA master closed the connection");
                return Ok(progressed);
            }
            Step::Read(n) => {
                last_read = rt::now();
                decoder.feed(&rbuf[..n]);
                let mut appended = false;
                loop {
                    let transfer = match decoder.next_transfer() {
                        Ok(Some(t)) => t,
                        Ok(None) => break,
                        Err(e) => bail!(e),
                    };
                    if transfer.commitlog_offset == TAKE_BACK_REQUEST {
                        if let Err(e) =
                            send_take_back(shared, &mut wr, &transfer, local_max, addr).await
                        {
                            bail!(e)
                        }
                        last_report = rt::now();
                        continue;
                    }
                    match apply_transfer(
                        shared,
                        &transfer,
                        &mut pending,
                        &mut local_max,
                        &mut started,
                        file_size,
                    ) {
                        Ok(grew) => appended |= grew,
                        Err(e) => bail!(e),
                    }
                }
                if appended {
                    progressed = true;
                    if let Err(e) = report(&mut wr, local_max, addr, housekeeping).await {
                        bail!(e)
                    }
                    last_report = rt::now();
                }
            }
            Step::Tick => {
                let now = rt::now();
                let silent = now.saturating_duration_since(last_read);
                if silent >= housekeeping {
                    bail!(HaError::Housekeeping {
                        peer: addr.to_string(),
                        silent_ms: silent.as_millis() as u64,
                    })
                }
                if now.saturating_duration_since(last_report) >= heartbeat {
                    if let Err(e) = report(&mut wr, local_max, addr, housekeeping).await {
                        bail!(e)
                    }
                    last_report = rt::now();
                }
            }
        }
    }
}

/// Checks a transfer's offset against the local end and appends the whole entries it
/// completes. Returns whether the local max offset grew. Never writes on a mismatch.
fn apply_transfer(
    shared: &Shared,
    transfer: &Transfer,
    pending: &mut BytesMut,
    local_max: &mut i64,
    started: &mut bool,
    file_size: u64,
) -> Result<bool, HaError> {
    let store = &shared.store;
    let offset = transfer.commitlog_offset;
    {
        let mut st = shared.status();
        st.master_offset_seen = st
            .master_offset_seen
            .max(offset + transfer.data.len() as i64);
    }
    if !*started && pending.is_empty() {
        // Empty slave: the master picks the start (its last file); it must be file-aligned.
        if !(offset as u64).is_multiple_of(file_size) {
            return Err(HaError::Protocol(format!(
                "master starts this empty slave at {offset}, not a CommitLog file boundary \
                 (file size {file_size}); different mappedFileSizeCommitLog?"
            )));
        }
        if transfer.data.is_empty() {
            return Ok(false);
        }
        *local_max = offset;
        *started = true;
    }
    let expected = *local_max + pending.len() as i64;
    if offset != expected {
        return Err(HaError::Protocol(format!(
            "master sent CommitLog offset {offset} but this slave expects {expected} (local max \
             {}); closing without writing",
            *local_max
        )));
    }
    if transfer.data.is_empty() {
        return Ok(false);
    }
    pending.extend_from_slice(&transfer.data);
    if pending.len() > MAX_PENDING_BYTES {
        return Err(HaError::Protocol(format!(
            "{} bytes from the master starting at {} hold no complete entry",
            pending.len(),
            *local_max
        )));
    }
    let whole = whole_entries_prefix(*local_max as u64, pending, file_size)?;
    if whole == 0 {
        return Ok(false);
    }
    if shared.config.debug_bugs.slave_restamps_entries {
        restamp_entries(*local_max as u64, &mut pending[..whole], file_size);
    }
    let new_max = store.append_replica(*local_max, &pending[..whole])?;
    assert_eq!(
        new_max,
        *local_max + whole as i64,
        "replica end moved as appended"
    );
    pending.advance(whole);
    *local_max = new_max;
    Ok(true)
}

/// The master-shorter-than-slave rule, slave side (Apogee extension). The master lost a tail
/// this slave holds and asks for it from `from` (its max offset). The slave never truncates and
/// never appends the master's diverging bytes (its own appends only ever happen at its end,
/// checked); it sends its bytes `[from, local_max)` back in frames and ends them with an empty
/// frame. The master verifies CRCs and offsets before appending.
async fn send_take_back<W: AsyncWriteExt + Unpin>(
    shared: &Shared,
    wr: &mut W,
    request: &Transfer,
    local_max: i64,
    addr: &str,
) -> Result<(), HaError> {
    let store = &shared.store;
    let from = i64::from_be_bytes(
        request.data[..]
            .try_into()
            .map_err(|_| HaError::Protocol("take-back request without its offset".into()))?,
    );
    if from < store.commitlog_min_offset() || from > local_max {
        return Err(HaError::Protocol(format!(
            "master {addr} asks for this slave's CommitLog from {from}, but it holds [{}, \
             {local_max})",
            store.commitlog_min_offset()
        )));
    }
    tracing::warn!(
        master = %addr,
        from,
        local_max,
        "HA: the master lost a tail this slave holds; sending {} bytes back",
        local_max - from
    );
    let deadline = Duration::from_millis(shared.config.housekeeping_interval_ms);
    let mut out = encode_report(TAKE_BACK_BEGIN).to_vec();
    let mut at = from;
    while at < local_max {
        let Some(chunk) = store.read_commitlog_range(at, shared.config.transfer_batch_size)? else {
            return Err(HaError::Protocol(format!(
                "take-back: cannot read this slave's CommitLog at {at} (max {local_max})"
            )));
        };
        let n = chunk.len().min((local_max - at) as usize);
        out.extend_from_slice(&encode_transfer(at, &chunk[..n]));
        at += n as i64;
        if out.len() >= 1024 * 1024 {
            write_all_flush(wr, &out, addr, deadline).await?;
            out.clear();
        }
    }
    out.extend_from_slice(&encode_transfer(local_max, &[]));
    out.extend_from_slice(&encode_report(local_max));
    write_all_flush(wr, &out, addr, deadline).await
}

/// Deliberate bug (t90): bumps each message entry's storeTimestamp (IPv4 born host layout).
fn restamp_entries(start: u64, data: &mut [u8], file_size: u64) {
    use crate::message::entry::{peek_header, MESSAGE_MAGIC_CODE_V1, POS_BORN_HOST};
    let mut pos = 0usize;
    while pos + POS_BORN_HOST + 16 < data.len() {
        let Some((total, magic)) = peek_header(&data[pos..]) else {
            return;
        };
        if magic != MESSAGE_MAGIC_CODE_V1 || total <= 0 {
            let abs = start + pos as u64;
            pos += (file_size - abs % file_size) as usize;
            continue;
        }
        data[pos + POS_BORN_HOST + 15] ^= 1;
        pos += total as usize;
    }
}

async fn write_all_flush<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    addr: &str,
    deadline: Duration,
) -> Result<(), HaError> {
    match rt::timeout(deadline, async {
        wr.write_all(bytes).await?;
        wr.flush().await
    })
    .await
    {
        Ok(r) => r.map_err(|source| HaError::Io {
            peer: addr.to_string(),
            source,
        }),
        Err(_) => Err(HaError::Housekeeping {
            peer: addr.to_string(),
            silent_ms: deadline.as_millis() as u64,
        }),
    }
}

async fn report<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    max_offset: i64,
    addr: &str,
    deadline: Duration,
) -> Result<(), HaError> {
    let io_err = |source| HaError::Io {
        peer: addr.to_string(),
        source,
    };
    // A partitioned master must not stall the slave forever on a full send buffer.
    match rt::timeout(deadline, async {
        wr.write_all(&encode_report(max_offset)).await?;
        wr.flush().await
    })
    .await
    {
        Ok(r) => r.map_err(io_err),
        Err(_) => Err(HaError::Housekeeping {
            peer: addr.to_string(),
            silent_ms: deadline.as_millis() as u64,
        }),
    }
}
