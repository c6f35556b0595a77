//! The shared client instance: name server list with failover, route and cluster lookups with a
//! cache, broker address selection, and typed helpers for single broker requests. Producer,
//! consumer and admin operations build on it. Cheap to clone.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::body::{ClusterInfo, RouteExt, TopicRouteData, MASTER_ID};
use super::ClientError;
use crate::protocol::parse_lenient_json;
use crate::remoting::server::BoxFuture;
use crate::remoting::{
    request_code, response_code, Connection, RemotingClient, RemotingCommand, RequestProcessor,
};
use crate::rt;

/// Default name server address of mqadmin and the Java tools.
pub const DEFAULT_NAMESRV_ADDR: &str = "127.0.0.1:9876";

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name servers, tried in order starting from the last one that worked.
    pub namesrv_addrs: Vec<String>,
    /// IP that goes into the client id and UNIQ_KEYs (the simulation sets its node IP).
    pub client_ip: IpAddr,
    /// Instance name; client id = `client_ip@instance_name`. Distinct per client in a process.
    pub instance_name: String,
    /// Timeout of ordinary RPCs (Java `sendMsgTimeout` / admin timeout).
    pub rpc_timeout_ms: u64,
    /// How long a cached route stays fresh before it is looked up again (Java polls every 30 s).
    pub route_refresh_interval_ms: u64,
}

impl ClientConfig {
    pub fn new(namesrv_addrs: Vec<String>) -> Self {
        ClientConfig {
            namesrv_addrs,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            // pid plus a random suffix: two clients of one process (tests, mqbench) must not
            // share a client id, or the broker would see them as one consumer.
            instance_name: format!("{}#{}", std::process::id(), rt::random_below(1 << 40)),
            rpc_timeout_ms: 3_000,
            route_refresh_interval_ms: 30_000,
        }
    }

    /// Parses a `;`- or `,`-separated address list (RocketMQ's NAMESRV_ADDR format).
    pub fn parse_namesrv_list(list: &str) -> Vec<String> {
        list.split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

struct CachedRoute {
    route: TopicRouteData,
    fetched_at: rt::Instant,
}

struct Inner {
    remoting: RemotingClient,
    config: ClientConfig,
    /// Index of the name server to try first (the last one that answered).
    namesrv_index: AtomicUsize,
    routes: Mutex<HashMap<String, CachedRoute>>,
    /// Rolling counter of UNIQ_KEYs (per client, never a static).
    uniq_counter: AtomicU16,
    /// Random per-client value mixed into the UNIQ_KEY prefix, so two clients of one process
    /// (same IP and pid) never produce the same ids.
    uniq_salt: u16,
    /// Wakes consumers of a group on NOTIFY_CONSUMER_IDS_CHANGED.
    notifiers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Broker addresses whose last request failed at the transport level, and when. Broker
    /// selection avoids them for [`UNREACHABLE_BACKOFF_MS`] while another member of the group is
    /// listed: a killed master stays in a cached route until the next refresh (and in the name
    /// server until its connection or its 120 s lease expires), and consumers must not wait on it.
    unreachable: Mutex<HashMap<String, rt::Instant>>,
}

/// How long an address that failed at the transport level is passed over by broker selection.
pub const UNREACHABLE_BACKOFF_MS: u64 = 5_000;

/// A broker address chosen for a request, and whether it is a slave (broker id > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBroker {
    pub addr: String,
    pub broker_id: i64,
}

impl FoundBroker {
    pub fn is_slave(&self) -> bool {
        self.broker_id != MASTER_ID
    }
}

/// Picks the address of `broker_id` in `addrs`, as RocketMQ's `findBrokerAddressInSubscribe`
/// with `onlyThisBroker=false` does, plus reachability: the wanted id if listed and reachable,
/// else the master if reachable, else the reachable slave with the lowest id, else (everything
/// recently failed) the wanted id, the master or the lowest id anyway, so requests keep probing.
pub fn select_broker(
    addrs: &BTreeMap<i64, String>,
    broker_id: i64,
    is_unreachable: impl Fn(&str) -> bool,
) -> Option<FoundBroker> {
    let found = |id: i64, addr: &String| FoundBroker {
        addr: addr.clone(),
        broker_id: id,
    };
    let reachable = |id: i64| addrs.get(&id).filter(|a| !is_unreachable(a));
    if let Some(a) = reachable(broker_id) {
        return Some(found(broker_id, a));
    }
    if let Some(a) = reachable(MASTER_ID) {
        return Some(found(MASTER_ID, a));
    }
    if let Some((id, a)) = addrs.iter().find(|(_, a)| !is_unreachable(a)) {
        return Some(found(*id, a));
    }
    if let Some(a) = addrs.get(&broker_id) {
        return Some(found(broker_id, a));
    }
    addrs.iter().next().map(|(id, a)| found(*id, a))
}

/// A RocketMQ client instance (Java `MQClientInstance`).
#[derive(Clone)]
pub struct MqClient {
    inner: Arc<Inner>,
}

/// Handles broker-initiated requests on our connections.
struct ClientRequestHandler {
    notifiers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl RequestProcessor for ClientRequestHandler {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            match request.code {
                request_code::NOTIFY_CONSUMER_IDS_CHANGED => {
                    if let Some(group) = request.ext("consumerGroup") {
                        let notify = lock(&self.notifiers).get(group).cloned();
                        if let Some(notify) = notify {
                            tracing::debug!(group, "consumer ids changed: rebalancing");
                            notify.notify_one();
                        }
                    }
                    None
                }
                code => Some(request.response(
                    response_code::REQUEST_CODE_NOT_SUPPORTED,
                    format!(" request type {code} not supported"),
                )),
            }
        })
    }
}

/// Locks a mutex, recovering from poisoning (a panicked holder cannot leave these maps in a
/// state worse than "slightly stale").
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl MqClient {
    pub fn new(config: ClientConfig) -> Self {
        let notifiers: Arc<Mutex<HashMap<String, Arc<Notify>>>> = Arc::default();
        let handler = Arc::new(ClientRequestHandler {
            notifiers: notifiers.clone(),
        });
        MqClient {
            inner: Arc::new(Inner {
                remoting: RemotingClient::with_handler(handler),
                config,
                namesrv_index: AtomicUsize::new(0),
                routes: Mutex::new(HashMap::new()),
                uniq_counter: AtomicU16::new(rt::random_below(1 << 16) as u16),
                uniq_salt: rt::random_below(1 << 16) as u16,
                notifiers,
                unreachable: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A client for the given `;`-separated name server list, default settings.
    pub fn with_namesrv(list: &str) -> Self {
        MqClient::new(ClientConfig::new(ClientConfig::parse_namesrv_list(list)))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn remoting(&self) -> &RemotingClient {
        &self.inner.remoting
    }

    /// `ip@instanceName`, the id brokers list in GET_CONSUMER_LIST_BY_GROUP.
    pub fn client_id(&self) -> String {
        format!(
            "{}@{}",
            self.inner.config.client_ip, self.inner.config.instance_name
        )
    }

    pub fn rpc_timeout_ms(&self) -> u64 {
        self.inner.config.rpc_timeout_ms
    }

    /// A new UNIQ_KEY (the producer's client-side message id).
    pub fn next_uniq_key(&self) -> String {
        let counter = self.inner.uniq_counter.fetch_add(1, Ordering::Relaxed);
        let host = SocketAddr::new(self.inner.config.client_ip, self.inner.uniq_salt);
        crate::message::msg_id::create_uniq_key(host, counter, rt::now_ms())
    }

    /// The notifier woken when a broker says the consumer ids of `group` changed.
    pub(crate) fn consumer_notifier(&self, group: &str) -> Arc<Notify> {
        lock(&self.inner.notifiers)
            .entry(group.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn remove_consumer_notifier(&self, group: &str) {
        lock(&self.inner.notifiers).remove(group);
    }

    // ---------------------------------------------------------------- name server requests

    /// Sends `request` to the name servers in turn, starting with the last one that worked,
    /// until one answers (any response code counts as an answer). Returns the answering
    /// address and its response.
    pub async fn invoke_namesrv(
        &self,
        op: &str,
        request: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let addrs = &self.inner.config.namesrv_addrs;
        if addrs.is_empty() {
            return Err(ClientError::NoNamesrv);
        }
        let first = self.inner.namesrv_index.load(Ordering::Relaxed) % addrs.len();
        let mut failures = Vec::new();
        for i in 0..addrs.len() {
            let index = (first + i) % addrs.len();
            let addr = &addrs[index];
            match self
                .inner
                .remoting
                .invoke(addr, request.clone(), self.rpc_timeout_ms())
                .await
            {
                Ok(response) => {
                    self.inner.namesrv_index.store(index, Ordering::Relaxed);
                    return Ok((addr.clone(), response));
                }
                Err(e) => {
                    tracing::debug!(namesrv = %addr, error = %e, op, "name server failed, trying the next");
                    failures.push(format!("namesrv {addr}: {e}"));
                }
            }
        }
        Err(ClientError::AllNamesrvFailed {
            op: op.to_string(),
            detail: failures.join("; "),
        })
    }

    /// Like [`invoke_namesrv`](Self::invoke_namesrv), but a non-success code is an error.
    pub async fn invoke_namesrv_ok(
        &self,
        op: &str,
        request: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let (addr, response) = self.invoke_namesrv(op, request).await?;
        check_success("namesrv", &addr, op, &response)?;
        Ok((addr, response))
    }

    /// Sends `request` to one specific name server (wipe/add write perm go to each of them).
    pub async fn invoke_one_namesrv(
        &self,
        addr: &str,
        op: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        let response = self
            .inner
            .remoting
            .invoke(addr, request, self.rpc_timeout_ms())
            .await
            .map_err(|source| ClientError::Remoting {
                role: "namesrv",
                addr: addr.to_string(),
                op: op.to_string(),
                source,
            })?;
        check_success("namesrv", addr, op, &response)?;
        Ok(response)
    }

    // ---------------------------------------------------------------- broker requests

    /// Sends `request` to the broker at `addr` and returns its response, whatever the code.
    pub async fn invoke_broker_raw(
        &self,
        addr: &str,
        op: &str,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, ClientError> {
        self.inner
            .remoting
            .invoke(addr, request, timeout_ms)
            .await
            .map_err(|source| ClientError::Remoting {
                role: "broker",
                addr: addr.to_string(),
                op: op.to_string(),
                source,
            })
    }

    /// Sends `request` to the broker at `addr`; a non-success code is an error.
    pub async fn invoke_broker(
        &self,
        addr: &str,
        op: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        let response = self
            .invoke_broker_raw(addr, op, request, self.rpc_timeout_ms())
            .await?;
        check_success("broker", addr, op, &response)?;
        Ok(response)
    }

    pub async fn invoke_broker_oneway(
        &self,
        addr: &str,
        op: &str,
        request: RemotingCommand,
    ) -> Result<(), ClientError> {
        self.inner
            .remoting
            .invoke_oneway(addr, request)
            .await
            .map_err(|source| ClientError::Remoting {
                role: "broker",
                addr: addr.to_string(),
                op: op.to_string(),
                source,
            })
    }

    // ---------------------------------------------------------------- routes

    /// GET_ROUTEINFO_BY_TOPIC from the name servers (no cache); refreshes the cache.
    pub async fn fetch_topic_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        let op = format!("GET_ROUTEINFO_BY_TOPIC {topic}");
        let request =
            RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
        let (addr, response) = self.invoke_namesrv(&op, request).await?;
        if response.code == response_code::TOPIC_NOT_EXIST {
            lock(&self.inner.routes).remove(topic);
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
                detail: format!(
                    "namesrv {addr} has no route for it{}",
                    response
                        .remark
                        .as_deref()
                        .map(|r| format!(" ({})", super::error::one_line(r)))
                        .unwrap_or_default()
                ),
            });
        }
        check_success("namesrv", &addr, &op, &response)?;
        let route: TopicRouteData = parse_body("namesrv", &addr, &op, &response.body)?;
        lock(&self.inner.routes).insert(
            topic.to_string(),
            CachedRoute {
                route: route.clone(),
                fetched_at: rt::now(),
            },
        );
        Ok(route)
    }

    /// The route of `topic`, from the cache while fresh, else from the name servers. When the
    /// name servers cannot be reached a stale cached route is used (brokers may still be up).
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        let refresh = Duration::from_millis(self.inner.config.route_refresh_interval_ms);
        let cached = lock(&self.inner.routes)
            .get(topic)
            .map(|c| (c.route.clone(), c.fetched_at.elapsed() < refresh));
        match cached {
            Some((route, true)) => Ok(route),
            Some((stale, false)) => match self.fetch_topic_route(topic).await {
                Ok(route) => Ok(route),
                Err(e) if e.is_transport() => {
                    tracing::warn!(topic, error = %e, "using a stale route");
                    Ok(stale)
                }
                Err(e) => Err(e),
            },
            None => self.fetch_topic_route(topic).await,
        }
    }

    /// Forgets the cached route of `topic` (after a send failure that suggests it moved).
    pub fn invalidate_route(&self, topic: &str) {
        lock(&self.inner.routes).remove(topic);
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let op = "GET_BROKER_CLUSTER_INFO";
        let request = RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO);
        let (addr, response) = self.invoke_namesrv_ok(op, request).await?;
        parse_body("namesrv", &addr, op, &response.body)
    }

    /// Master address of `broker_name`, from the topic's route.
    pub async fn master_addr_of(
        &self,
        topic: &str,
        broker_name: &str,
    ) -> Result<String, ClientError> {
        let route = self.topic_route(topic).await?;
        if let Some(addr) = route.master_addr(broker_name) {
            return Ok(addr.to_string());
        }
        // The cached route may predate the broker: look once more.
        let route = self.fetch_topic_route(topic).await?;
        route
            .master_addr(broker_name)
            .map(str::to_string)
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_string(),
                detail: format!("no master address for broker {broker_name}"),
            })
    }

    /// Records that a request to `addr` failed at the transport level (connection refused or
    /// reset, timeout): broker selection passes over it for a while.
    pub fn mark_unreachable(&self, addr: &str) {
        lock(&self.inner.unreachable).insert(addr.to_string(), rt::now());
    }

    /// Records that `addr` answered: it is selectable again at once.
    pub fn mark_reachable(&self, addr: &str) {
        let mut map = lock(&self.inner.unreachable);
        if !map.is_empty() {
            map.remove(addr);
        }
    }

    /// Whether `addr` failed at the transport level within the last [`UNREACHABLE_BACKOFF_MS`].
    pub fn is_unreachable(&self, addr: &str) -> bool {
        lock(&self.inner.unreachable)
            .get(addr)
            .is_some_and(|at| at.elapsed() < Duration::from_millis(UNREACHABLE_BACKOFF_MS))
    }

    /// The member of broker group `broker_name` to read `topic` from, preferring `broker_id`
    /// (the id the last pull response suggested; 0 = master), falling back to the master and
    /// then to a slave when the wanted one is absent from the route or recently unreachable
    /// (RocketMQ `findBrokerAddressInSubscribe`). Pulls, offset queries and commits use it, so
    /// consumers keep going from the slave while the master is down.
    pub async fn find_broker_in_subscribe(
        &self,
        topic: &str,
        broker_name: &str,
        broker_id: i64,
    ) -> Result<FoundBroker, ClientError> {
        let route = self.topic_route(topic).await?;
        let pick = |route: &TopicRouteData| {
            route.broker_data(broker_name).and_then(|bd| {
                select_broker(&bd.broker_addrs, broker_id, |a| self.is_unreachable(a))
            })
        };
        if let Some(found) = pick(&route).filter(|f| !self.is_unreachable(&f.addr)) {
            return Ok(found);
        }
        // Absent, or only unreachable members cached: the route may have changed (a slave
        // registered, the master's registration expired); look once more.
        let route = match self.fetch_topic_route(topic).await {
            Ok(route) => route,
            Err(e) if e.is_transport() => route,
            Err(e) => return Err(e),
        };
        pick(&route).ok_or_else(|| ClientError::NoRoute {
            topic: topic.to_string(),
            detail: format!("no address for broker {broker_name}"),
        })
    }

    /// The member of `broker_name` for offset queries and commits: the master, else a slave
    /// (RocketMQ `findBrokerAddressInAdmin` and the offset store's fallback).
    pub async fn find_broker_in_admin(
        &self,
        topic: &str,
        broker_name: &str,
    ) -> Result<FoundBroker, ClientError> {
        self.find_broker_in_subscribe(topic, broker_name, MASTER_ID)
            .await
    }

    /// Master address of `broker_name` from the cluster info (any topic).
    pub async fn master_addr_by_broker_name(
        &self,
        broker_name: &str,
    ) -> Result<String, ClientError> {
        let info = self.cluster_info().await?;
        info.broker_addr_table
            .get(broker_name)
            .and_then(|b| b.master_addr())
            .map(str::to_string)
            .ok_or_else(|| ClientError::BrokerNotFound(broker_name.to_string()))
    }
}

/// Maps a non-success response to [`ClientError::Response`].
pub(crate) fn check_success(
    role: &'static str,
    addr: &str,
    op: &str,
    response: &RemotingCommand,
) -> Result<(), ClientError> {
    if response.code == response_code::SUCCESS {
        return Ok(());
    }
    Err(ClientError::Response {
        role,
        addr: addr.to_string(),
        op: op.to_string(),
        code: response.code,
        remark: response.remark.clone().unwrap_or_default(),
    })
}

/// Parses a JSON body (lenient about fastjson's unquoted numeric keys).
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    role: &'static str,
    addr: &str,
    op: &str,
    body: &[u8],
) -> Result<T, ClientError> {
    let bad = |detail: String| ClientError::BadResponse {
        role,
        addr: addr.to_string(),
        op: op.to_string(),
        detail,
    };
    let text = std::str::from_utf8(body).map_err(|e| bad(format!("body is not UTF-8: {e}")))?;
    parse_lenient_json(text).map_err(|e| bad(format!("body is not the expected JSON: {e}")))
}

/// A required numeric response header field.
pub(crate) fn header_i64(
    role: &'static str,
    addr: &str,
    op: &str,
    response: &RemotingCommand,
    key: &str,
) -> Result<i64, ClientError> {
    response
        .required::<i64>(key)
        .map_err(|e| ClientError::BadResponse {
            role,
            addr: addr.to_string(),
            op: op.to_string(),
            detail: e.to_string(),
        })
}
