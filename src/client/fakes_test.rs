//! Scripted fake name server and brokers for client tests (loopback tokio tests and madsim
//! tests share them).
// Each runtime's tests use a different subset of the fakes.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::body::{BrokerData, ClusterInfo, QueueData, TopicRouteData};
use super::*;
use crate::remoting::server::BoxFuture;
use crate::remoting::{request_code, response_code, Connection, RemotingCommand, RequestProcessor};

/// What a fake broker does with the next send: answer with a code, or never answer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Script {
    Code(i32),
    Hang,
}

/// (min offset, encoded entries from the min offset on).
pub(crate) type FakeQueue = (i64, Vec<Vec<u8>>);

#[derive(Default)]
pub(crate) struct FakeBroker {
    pub(crate) name: String,
    pub(crate) sends: Mutex<VecDeque<Script>>,
    pub(crate) received: Mutex<Vec<RemotingCommand>>,
    pub(crate) consumer_ids: Mutex<Vec<String>>,
    pub(crate) connections: Mutex<Vec<Connection>>,
    pub(crate) heartbeats: Mutex<usize>,
    /// queue id → (min offset, encoded entries from the min offset on).
    pub(crate) store: Mutex<BTreeMap<i32, FakeQueue>>,
}

impl FakeBroker {
    /// Appends a message to `queue_id` as a stored entry (optionally zlib-compressed).
    pub(crate) fn put(&self, topic: &str, queue_id: i32, tags: &str, body: &[u8], compress: bool) {
        use std::io::Write;
        let mut store = self.store.lock().unwrap();
        let (min, entries) = store.entry(queue_id).or_insert((0, Vec::new()));
        let queue_offset = *min + entries.len() as i64;
        let props = crate::message::encode_properties(
            &[("TAGS".to_string(), tags.to_string())]
                .into_iter()
                .collect(),
        );
        let (sys_flag, stored_body) = if compress {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
            e.write_all(body).unwrap();
            (crate::message::sysflag::COMPRESSED, e.finish().unwrap())
        } else {
            (0, body.to_vec())
        };
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let mut out = Vec::new();
        crate::message::entry::encode_entry(
            &crate::message::entry::EntryFields {
                queue_id,
                flag: 0,
                queue_offset,
                commitlog_offset: 1000 + queue_offset * 100,
                sys_flag,
                born_timestamp: 1,
                born_host: host,
                store_timestamp: 2,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: &stored_body,
                topic,
                properties: props.as_bytes(),
            },
            &mut out,
        )
        .unwrap();
        entries.push(out);
    }

    fn pull(&self, request: &RemotingCommand) -> RemotingCommand {
        let queue_id: i32 = request.required("queueId").unwrap();
        let offset: i64 = request.required("queueOffset").unwrap();
        let max: usize = request.required("maxMsgNums").unwrap();
        let store = self.store.lock().unwrap();
        let (min, entries) = store.get(&queue_id).cloned().unwrap_or((0, Vec::new()));
        let max_offset = min + entries.len() as i64;
        let (code, next, body) = if offset < min || offset > max_offset {
            (response_code::PULL_OFFSET_MOVED, min, Vec::new())
        } else if offset == max_offset {
            (response_code::PULL_NOT_FOUND, offset, Vec::new())
        } else {
            let from = (offset - min) as usize;
            let to = (from + max).min(entries.len());
            (
                response_code::SUCCESS,
                min + to as i64,
                entries[from..to].concat(),
            )
        };
        request
            .response(code, None)
            .with_ext("nextBeginOffset", next)
            .with_ext("minOffset", min)
            .with_ext("maxOffset", max_offset)
            .with_ext("suggestWhichBrokerId", 0)
            .with_body(body)
    }
}

impl RequestProcessor for FakeBroker {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            self.connections.lock().unwrap().push(conn);
            self.received.lock().unwrap().push(request.clone());
            match request.code {
                request_code::SEND_MESSAGE_V2 | request_code::SEND_BATCH_MESSAGE => {
                    let script = self
                        .sends
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or(Script::Code(response_code::SUCCESS));
                    match script {
                        Script::Hang => {
                            futures::future::pending::<()>().await;
                            None
                        }
                        Script::Code(code) => Some(
                            request
                                .response(code, Some(format!("scripted by {}", self.name)))
                                .with_ext("msgId", "7F00000100002A9F0000000000000000")
                                .with_ext("queueId", request.ext("e").unwrap_or("0"))
                                .with_ext("queueOffset", 5),
                        ),
                    }
                }
                request_code::HEART_BEAT => {
                    *self.heartbeats.lock().unwrap() += 1;
                    Some(request.response(response_code::SUCCESS, None))
                }
                request_code::GET_CONSUMER_LIST_BY_GROUP => {
                    let ids = self.consumer_ids.lock().unwrap().clone();
                    let body = serde_json::json!({ "consumerIdList": ids }).to_string();
                    Some(
                        request
                            .response(response_code::SUCCESS, None)
                            .with_body(body),
                    )
                }
                request_code::QUERY_CONSUMER_OFFSET => Some(
                    request
                        .response(response_code::SUCCESS, None)
                        .with_ext("offset", 0),
                ),
                request_code::UPDATE_CONSUMER_OFFSET | request_code::UNREGISTER_CLIENT => {
                    Some(request.response(response_code::SUCCESS, None))
                }
                request_code::PULL_MESSAGE => Some(self.pull(&request)),
                code => Some(request.response(
                    response_code::REQUEST_CODE_NOT_SUPPORTED,
                    Some(format!("fake broker: code {code}")),
                )),
            }
        })
    }
}

pub(crate) struct FakeNamesrv {
    pub(crate) route: TopicRouteData,
}

impl RequestProcessor for FakeNamesrv {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            match request.code {
                request_code::GET_ROUTEINFO_BY_TOPIC if request.ext("topic") == Some("T") => Some(
                    request
                        .response(response_code::SUCCESS, None)
                        .with_body(serde_json::to_vec(&self.route).unwrap()),
                ),
                request_code::GET_ROUTEINFO_BY_TOPIC => Some(request.response(
                    response_code::TOPIC_NOT_EXIST,
                    Some("No topic route info in name server for the topic".to_string()),
                )),
                request_code::GET_BROKER_CLUSTER_INFO => {
                    let mut info = ClusterInfo::default();
                    for bd in &self.route.broker_datas {
                        info.broker_addr_table
                            .insert(bd.broker_name.clone(), bd.clone());
                    }
                    info.cluster_addr_table.insert(
                        "c".to_string(),
                        self.route
                            .broker_datas
                            .iter()
                            .map(|b| b.broker_name.clone())
                            .collect(),
                    );
                    Some(
                        request
                            .response(response_code::SUCCESS, None)
                            .with_body(serde_json::to_vec(&info).unwrap()),
                    )
                }
                _ => Some(request.response(response_code::REQUEST_CODE_NOT_SUPPORTED, None)),
            }
        })
    }
}

pub(crate) fn client_for(namesrvs: Vec<String>, instance: &str) -> MqClient {
    let mut config = ClientConfig::new(namesrvs);
    config.instance_name = instance.to_string();
    config.rpc_timeout_ms = 1_000;
    MqClient::new(config)
}

pub(crate) fn sends(b: &FakeBroker) -> Vec<RemotingCommand> {
    b.received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.code == request_code::SEND_MESSAGE_V2 || r.code == request_code::SEND_BATCH_MESSAGE
        })
        .cloned()
        .collect()
}

/// A route of topic T over `brokers` (name, master address), 2 read/write queues each.
pub(crate) fn fake_route(brokers: &[(&str, String)]) -> TopicRouteData {
    let mut route = TopicRouteData::default();
    for (name, addr) in brokers {
        route.queue_datas.push(QueueData {
            broker_name: name.to_string(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: 6,
            topic_sys_flag: 0,
        });
        let mut data = BrokerData::new("c", name);
        data.broker_addrs = BTreeMap::from([(0, addr.clone())]);
        route.broker_datas.push(data);
    }
    route
}
