//! Cluster builder: named madsim nodes with fixed IPs (namesrv 10.0.0.1.., brokers 10.0.1.x,
//! clients 10.0.2.x), a [`SimDiskHandle`] per broker that outlives kill/restart (it is captured
//! by the node's `init` closure), and the node-level fault primitives (crash in a disk mode,
//! restart, pause, clog, partition, latency). Every action is recorded in the trace.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;

use super::disk::{CrashMode, SimDiskHandle};
use super::Trace;

pub type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The body of a node: called once per incarnation (creation and every restart).
pub type NodeMain = Arc<dyn Fn(NodeContext) -> BoxFuture + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Namesrv,
    /// A master broker (the only kind before HA; every broker fault targets these).
    Broker,
    /// A SLAVE broker (HA scenarios; targeted only by the slave faults).
    Slave,
    Client,
}

/// What a node incarnation gets to run with.
#[derive(Clone)]
pub struct NodeContext {
    pub name: String,
    pub ip: IpAddr,
    /// 1 for the first start, +1 per restart.
    pub incarnation: u64,
    pub disk: Option<SimDiskHandle>,
    pub status: Arc<Mutex<NodeStatus>>,
    pub trace: Trace,
}

/// Liveness as the harness sees it (written by the node's own code, read by the checkers).
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub incarnation: u64,
    /// The server bound and serves (set by the node main once `start` returned Ok).
    pub serving: bool,
    /// Start attempts that failed in this incarnation (e.g. recovery on a faulty disk).
    pub start_failures: u64,
    pub last_start_error: Option<String>,
}

struct NodeEntry {
    role: Role,
    ip: IpAddr,
    id: NodeId,
    disk: Option<SimDiskHandle>,
    status: Arc<Mutex<NodeStatus>>,
    killed: bool,
    paused: bool,
}

/// A master and its slave, watched by the HA checkers.
#[derive(Clone)]
pub struct HaPair {
    pub master: String,
    /// The master's remoting address (the oracle's broker key).
    pub master_addr: String,
    pub master_disk: SimDiskHandle,
    pub slave: String,
    pub slave_disk: SimDiskHandle,
}

/// The simulated cluster, owned by the scenario's supervisor future.
pub struct Cluster {
    handle: Handle,
    nodes: BTreeMap<String, NodeEntry>,
    trace: Trace,
    clogged_links: Vec<(String, String)>,
    clogged_nodes: Vec<String>,
    ha_pairs: Vec<HaPair>,
    /// What each slave held at every master crash and network heal.
    pub ha_snapshots: Arc<Mutex<Vec<crate::invariants::ha::HaSnapshot>>>,
    /// Byte-prefix violations found at those instants (and by the periodic check).
    pub ha_violations: Arc<Mutex<Vec<crate::invariants::Violation>>>,
}

pub const NAMESRV_PORT: u16 = 9876;
pub const BROKER_PORT: u16 = 10911;

pub fn namesrv_ip(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + index))
}
pub fn broker_ip(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + index))
}
/// A slave of broker `index` (10.0.1.101..).
pub fn slave_ip(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 101 + index))
}
pub fn client_ip(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + index))
}
pub fn addr(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

impl Cluster {
    pub fn new(trace: Trace) -> Cluster {
        Cluster {
            handle: Handle::current(),
            nodes: BTreeMap::new(),
            trace,
            clogged_links: Vec::new(),
            clogged_nodes: Vec::new(),
            ha_pairs: Vec::new(),
            ha_snapshots: Arc::new(Mutex::new(Vec::new())),
            ha_violations: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Registers a master/slave pair for the HA checkers.
    pub fn add_ha_pair(&mut self, pair: HaPair) {
        self.ha_pairs.push(pair);
    }

    pub fn ha_pairs(&self) -> &[HaPair] {
        &self.ha_pairs
    }

    /// The slave of `master`, if any.
    pub fn slave_of(&self, master: &str) -> Option<String> {
        self.ha_pairs
            .iter()
            .find(|p| p.master == master)
            .map(|p| p.slave.clone())
    }

    /// Records what the slave of `pair` holds now, and checks the byte prefix.
    fn ha_checkpoint(&self, pair: &HaPair, why: &str, master_crash: bool) {
        use crate::invariants::ha;
        let (slave_ids, slave_end) = ha::message_ids(&pair.slave_disk);
        self.trace.event(format!(
            "ha checkpoint {why}: slave {} holds {} messages up to {slave_end}",
            pair.slave,
            slave_ids.len()
        ));
        self.ha_snapshots
            .lock()
            .expect("snapshots")
            .push(ha::HaSnapshot {
                master: pair.master_addr.clone(),
                at: apogee::rt::now(),
                why: why.to_string(),
                master_crash,
                slave_ids,
                slave_end,
            });
        let found = ha::check_prefix(&pair.master, &pair.master_disk, &pair.slave_disk, why);
        self.ha_violations.lock().expect("violations").extend(found);
    }
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Adds a node whose `main` runs at creation and again after every restart.
    pub fn add_node(
        &mut self,
        name: &str,
        role: Role,
        ip: IpAddr,
        disk: Option<SimDiskHandle>,
        main: NodeMain,
    ) {
        assert!(!self.nodes.contains_key(name), "duplicate node {name}");
        assert!(
            self.nodes.values().all(|n| n.ip != ip),
            "duplicate ip {ip} for {name}"
        );
        let status = Arc::new(Mutex::new(NodeStatus::default()));
        let ctx_template = NodeContext {
            name: name.to_string(),
            ip,
            incarnation: 0,
            disk: disk.clone(),
            status: status.clone(),
            trace: self.trace.clone(),
        };
        let node = self
            .handle
            .create_node()
            .name(name)
            .ip(ip)
            .init(move || {
                let mut ctx = ctx_template.clone();
                {
                    let mut st = ctx.status.lock().expect("status lock");
                    st.incarnation += 1;
                    st.serving = false;
                    st.start_failures = 0;
                    st.last_start_error = None;
                    ctx.incarnation = st.incarnation;
                }
                ctx.trace.event(format!(
                    "node {} incarnation {} starts",
                    ctx.name, ctx.incarnation
                ));
                main(ctx)
            })
            .build();
        self.trace
            .event(format!("node {name} ({role:?}) created at {ip}"));
        self.nodes.insert(
            name.to_string(),
            NodeEntry {
                role,
                ip,
                id: node.id(),
                disk,
                status,
                killed: false,
                paused: false,
            },
        );
    }

    fn entry(&self, name: &str) -> &NodeEntry {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node named {name}"))
    }

    fn entry_mut(&mut self, name: &str) -> &mut NodeEntry {
        self.nodes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no node named {name}"))
    }

    pub fn names(&self, role: Role) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role == role)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn ip(&self, name: &str) -> IpAddr {
        self.entry(name).ip
    }

    pub fn node_id(&self, name: &str) -> NodeId {
        self.entry(name).id
    }

    pub fn disk(&self, name: &str) -> Option<SimDiskHandle> {
        self.entry(name).disk.clone()
    }

    /// The shared status cell of a node (read by the workload to know broker incarnations).
    pub fn status_handle(&self, name: &str) -> Arc<Mutex<NodeStatus>> {
        self.entry(name).status.clone()
    }

    pub fn status(&self, name: &str) -> NodeStatus {
        self.entry(name).status.lock().expect("status lock").clone()
    }

    pub fn is_down(&self, name: &str) -> bool {
        self.entry(name).killed
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.entry(name).paused
    }

    /// Crashes a node: its disk (if any) first loses what `mode` says, then madsim drops all
    /// of the node's tasks and sockets (peers see EOF / connection refused).
    pub fn crash(&mut self, name: &str, mode: CrashMode) {
        let entry = self.entry(name);
        assert!(!entry.killed, "crash of {name} which is already down");
        let id = entry.id;
        let pair = self.ha_pairs.iter().find(|p| p.master == name).cloned();
        if let Some(pair) = &pair {
            // The slave's content at the instant the master dies (before its disk loses data).
            let at = format!(
                "crash of master {name} ({mode:?}) at {:?}",
                apogee::rt::now()
            );
            self.ha_checkpoint(pair, &at, true);
        }
        let entry = self.entry(name);
        if let Some(disk) = &entry.disk {
            disk.crash(mode);
        }
        if let Some(pair) = &pair {
            // What the master's disk kept must still agree with the slave.
            let found = crate::invariants::ha::check_prefix(
                name,
                &pair.master_disk,
                &pair.slave_disk,
                "right after the master's crash",
            );
            self.ha_violations.lock().expect("violations").extend(found);
        }
        if entry.paused {
            self.handle.resume(id);
        }
        self.handle.kill(id);
        let entry = self.entry_mut(name);
        entry.killed = true;
        entry.paused = false;
        entry.status.lock().expect("status lock").serving = false;
        self.trace
            .event(format!("fault: crash {name} mode={mode:?}"));
    }

    /// Restarts a crashed node (madsim re-runs its init closure: a new incarnation).
    pub fn restart(&mut self, name: &str) {
        let entry = self.entry(name);
        assert!(
            entry.killed,
            "restart of {name} which is up (madsim would hit AddrInUse)"
        );
        let id = entry.id;
        self.trace.event(format!("heal: restart {name}"));
        self.entry_mut(name).killed = false;
        self.handle.restart(id);
    }

    /// Freezes every task of the node (a long GC pause or SIGSTOP); its sockets stay open.
    pub fn pause(&mut self, name: &str) {
        let entry = self.entry(name);
        assert!(
            !entry.killed && !entry.paused,
            "pause of {name} in wrong state"
        );
        let id = entry.id;
        self.handle.pause(id);
        self.entry_mut(name).paused = true;
        self.trace.event(format!("fault: pause {name}"));
    }

    pub fn resume(&mut self, name: &str) {
        let entry = self.entry(name);
        if !entry.paused {
            return;
        }
        let id = entry.id;
        self.handle.resume(id);
        self.entry_mut(name).paused = false;
        self.trace.event(format!("heal: resume {name}"));
    }

    /// Cuts all traffic to and from a node (new connects are refused, open streams stall).
    pub fn clog_node(&mut self, name: &str) {
        let id = self.node_id(name);
        NetSim::current().clog_node(id);
        self.clogged_nodes.push(name.to_string());
        self.trace.event(format!("fault: clog node {name}"));
    }

    /// Cuts traffic in one direction between two nodes.
    pub fn clog_link(&mut self, source: &str, target: &str) {
        let (s, t) = (self.node_id(source), self.node_id(target));
        NetSim::current().clog_link(s, t);
        self.clogged_links
            .push((source.to_string(), target.to_string()));
        self.trace
            .event(format!("fault: clog link {source}->{target}"));
    }

    /// Cuts both directions between two nodes (a master and its slave).
    pub fn partition_pair(&mut self, a: &str, b: &str) {
        let (ia, ib) = (self.node_id(a), self.node_id(b));
        NetSim::current().clog_link(ia, ib);
        NetSim::current().clog_link(ib, ia);
        self.clogged_links.push((a.to_string(), b.to_string()));
        self.clogged_links.push((b.to_string(), a.to_string()));
        self.trace.event(format!("fault: partition {a} | {b}"));
    }

    /// Splits the nodes into `side` and everyone else, both directions.
    pub fn partition(&mut self, side: &[String]) {
        let others: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !side.contains(n))
            .cloned()
            .collect();
        for a in side {
            for b in &others {
                let (ia, ib) = (self.node_id(a), self.node_id(b));
                NetSim::current().clog_link(ia, ib);
                NetSim::current().clog_link(ib, ia);
                self.clogged_links.push((a.clone(), b.clone()));
                self.clogged_links.push((b.clone(), a.clone()));
            }
        }
        self.trace
            .event(format!("fault: partition {side:?} | rest"));
    }

    /// Sets the one-way network latency range for every packet.
    pub fn set_latency(&mut self, low: Duration, high: Duration) {
        assert!(low < high);
        NetSim::current().update_config(|c| c.send_latency = low..high);
        self.trace.event(format!(
            "fault: latency {}..{} ms",
            low.as_millis(),
            high.as_millis()
        ));
    }

    /// Undoes every network fault (clogs, partitions, latency) and resumes paused nodes.
    pub fn heal_network(&mut self) {
        let pairs = self.ha_pairs.clone();
        for pair in &pairs {
            let at = format!("network heal at {:?}", apogee::rt::now());
            self.ha_checkpoint(pair, &at, false);
        }
        let net = NetSim::current();
        for (a, b) in std::mem::take(&mut self.clogged_links) {
            net.unclog_link(self.node_id(&a), self.node_id(&b));
        }
        for n in std::mem::take(&mut self.clogged_nodes) {
            net.unclog_node(self.node_id(&n));
        }
        net.update_config(|c| {
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
        });
        let paused: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.paused)
            .map(|(k, _)| k.clone())
            .collect();
        for name in paused {
            self.resume(&name);
        }
        self.trace.event("heal: network");
    }

    /// Ends every fault: network healed, disk faults cleared, crashed nodes restarted.
    pub fn heal_all(&mut self) {
        self.heal_network();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in &names {
            if let Some(disk) = self.disk(name) {
                disk.clear_faults();
            }
        }
        for name in &names {
            if self.is_down(name) {
                self.restart(name);
            }
        }
        self.trace.event("heal: all");
    }
}

/// Spawns `fut` on node `name` and waits for it (the supervisor has no IP of its own, so any
/// network I/O of the harness runs on a client node).
pub async fn on_node<T: Send + 'static>(
    cluster: &Cluster,
    name: &str,
    fut: impl Future<Output = T> + Send + 'static,
) -> T {
    let node = Handle::current()
        .get_node(cluster.node_id(name))
        .expect("node exists");
    node.spawn(fut)
        .await
        .unwrap_or_else(|e| panic!("harness task on {name} failed: {e:?}"))
}
