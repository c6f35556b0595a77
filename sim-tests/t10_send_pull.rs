//! t10: the first simulation, guarding the runtime seam end to end. A namesrv node
//! (10.0.0.1), a broker node (10.0.1.1) on a SimDisk owned by the test and moved into the
//! node's init closure, and a client node that creates a topic, sends one message through the
//! real remoting code and pulls it back, asserting byte equality. Then the broker loses power
//! (SYNC_FLUSH: the acked message must survive) and the client pulls it again.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::sync::Arc;
use std::time::Duration;

use apogee::remoting::response_code as rs;
use apogee::remoting::RemotingClient;
use apogee::store::{DebugBugs, FlushDiskType};
use harness::cluster::{
    addr, broker_ip, client_ip, namesrv_ip, on_node, Cluster, NodeContext, Role, BROKER_PORT,
    NAMESRV_PORT,
};
use harness::disk::{CrashMode, SimDiskHandle};
use harness::nodes::{broker_main, namesrv_main, SimBrokerConfig};
use harness::workload::{create_topic, fetch_route, make_body, pull};
use harness::{SimOutcome, Trace};

const TOPIC: &str = "T10";

async fn scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut cluster = Cluster::new(trace.clone());
    let namesrv = addr(namesrv_ip(0), NAMESRV_PORT);
    let broker = addr(broker_ip(0), BROKER_PORT);
    cluster.add_node(
        "namesrv-0",
        Role::Namesrv,
        namesrv_ip(0),
        None,
        namesrv_main(NAMESRV_PORT),
    );
    let disk = SimDiskHandle::new("/store");
    let cfg = SimBrokerConfig {
        broker_name: "broker-a".into(),
        ip: broker_ip(0),
        port: BROKER_PORT,
        namesrv_addrs: vec![namesrv.clone()],
        flush: FlushDiskType::SyncFlush,
        debug_bugs: DebugBugs::default(),
        store_root: "/store".into(),
        warm_mapped_file: false,
        ha: Default::default(),
    };
    cluster.add_node(
        "broker-a",
        Role::Broker,
        broker_ip(0),
        Some(disk.clone()),
        broker_main(cfg),
    );
    cluster.add_node(
        "client",
        Role::Client,
        client_ip(0),
        None,
        Arc::new(|_ctx: NodeContext| Box::pin(futures::future::pending::<()>())),
    );

    let body_len = harness::draw(8, 4096) as usize;
    let body = make_body(harness::draw(1, 1 << 40), body_len);
    let (b, ns, sent, t) = (broker.clone(), namesrv.clone(), body.clone(), trace.clone());
    let queue_offset = on_node(&cluster, "client", async move {
        let client = RemotingClient::new();
        let mut tries = 0;
        while create_topic(&client, &b, TOPIC, 1).await.is_err() {
            tries += 1;
            assert!(tries < 100, "broker never accepted UPDATE_AND_CREATE_TOPIC");
            apogee::rt::sleep_ms(100).await;
        }
        let mut tries = 0;
        let route = loop {
            if let Some(r) = fetch_route(&client, &ns, TOPIC).await {
                break r;
            }
            tries += 1;
            assert!(tries < 200, "namesrv never routed {TOPIC}");
            apogee::rt::sleep_ms(100).await;
        };
        t.event(format!("route {route:?}"));
        assert_eq!(route.brokers, vec![(b.clone(), 1)]);

        let mut props = apogee::message::Properties::new();
        props.insert("TAGS".into(), "TagA".into());
        props.insert("KEYS".into(), "k10".into());
        let req = apogee::remoting::RemotingCommand::request(
            apogee::remoting::request_code::SEND_MESSAGE_V2,
        )
        .with_ext("a", "pg")
        .with_ext("b", TOPIC)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", apogee::rt::now_ms())
        .with_ext("h", 0)
        .with_ext("i", apogee::message::encode_properties(&props))
        .with_body(sent.clone());
        let resp = client.invoke(&b, req, 3_000).await.expect("send answered");
        assert_eq!(resp.code, rs::SUCCESS, "send failed: {:?}", resp.remark);
        let queue_offset: i64 = resp.required("queueOffset").expect("queueOffset");
        let queue_id: i32 = resp.required("queueId").expect("queueId");
        assert_eq!(queue_id, 0);
        t.event(format!(
            "acked at queue offset {queue_offset} msgId {:?}",
            resp.ext("msgId")
        ));
        queue_offset
    })
    .await;

    let check_pull = |label: &'static str| {
        let (b, sent, t) = (broker.clone(), body.clone(), trace.clone());
        async move {
            let client = RemotingClient::new();
            for _ in 0..100 {
                match pull(&client, &b, "cg10", TOPIC, 0, queue_offset, 32).await {
                    Ok(r) if r.code == rs::SUCCESS => {
                        let m = &r.messages[0];
                        assert_eq!(
                            m.body, sent,
                            "{label}: pulled body differs from the sent one"
                        );
                        assert_eq!(m.topic, TOPIC);
                        assert_eq!(m.queue_offset, queue_offset);
                        assert_eq!(m.tags(), Some("TagA"));
                        assert_eq!(m.keys(), vec!["k10"]);
                        t.event(format!(
                            "{label}: pulled {} bytes at commitlog offset {}",
                            m.body.len(),
                            m.commitlog_offset
                        ));
                        return;
                    }
                    _ => apogee::rt::sleep_ms(100).await,
                }
            }
            panic!("{label}: message never pulled back");
        }
    };
    on_node(&cluster, "client", check_pull("before crash")).await;

    cluster.crash("broker-a", CrashMode::PowerLoss);
    apogee::rt::sleep_ms(harness::draw(100, 2000)).await;
    cluster.restart("broker-a");
    on_node(&cluster, "client", check_pull("after power loss")).await;

    SimOutcome {
        trace_digest: trace.digest(),
        trace_events: trace.events(),
        sim_elapsed: trace.elapsed(),
        summary: format!("body_bytes={body_len}"),
    }
}

#[test]
fn t10_send_pull() {
    harness::run("t10_send_pull", Duration::from_secs(300), scenario);
}
