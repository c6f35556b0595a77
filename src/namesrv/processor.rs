//! Request handling of the name server (RocketMQ `DefaultRequestProcessor` and
//! `ClientRequestProcessor`): decodes headers and bodies, applies them to the route table and
//! KV store, and answers with RocketMQ's codes and remarks.

use std::sync::Arc;

use crate::protocol::kv::NAMESPACE_ORDER_TOPIC_CONFIG;
use crate::protocol::parse_lenient_json;
use crate::protocol::register::{crc32_masked, RegisterBrokerBody, RegisterBrokerRequestHeader};
use crate::protocol::topic::{DataVersion, TopicConfigSerializeWrapper};
use crate::remoting::server::BoxFuture;
use crate::remoting::{request_code, response_code};
use crate::remoting::{Connection, RemotingCommand, RemotingError, RequestProcessor};
use crate::rt;

use super::route_table::BrokerRegistration;
use super::NamesrvState;

/// RocketMQ `MQVersion.Version.V3_0_11` ordinal: older brokers send a bare topic config wrapper
/// instead of a RegisterBrokerBody.
const VERSION_V3_0_11: i32 = 37;

/// FAQ suffix RocketMQ appends to TOPIC_NOT_EXIST (`FAQUrl.suggestTodo(APPLY_TOPIC_URL)`).
const APPLY_TOPIC_FAQ: &str =
    "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// The remark of a route miss, exactly as RocketMQ writes it.
pub fn topic_not_exist_remark(topic: &str) -> String {
    format!("No topic route info in name server for the topic: {topic}{APPLY_TOPIC_FAQ}")
}

pub struct NamesrvProcessor {
    pub(crate) state: Arc<NamesrvState>,
}

impl NamesrvProcessor {
    pub(crate) fn new(state: Arc<NamesrvState>) -> Self {
        NamesrvProcessor { state }
    }

    /// Handles one request synchronously (no await while a lock is held).
    pub fn handle(&self, conn: Option<&Connection>, request: &RemotingCommand) -> RemotingCommand {
        let result = match request.code {
            request_code::PUT_KV_CONFIG => self.put_kv_config(request),
            request_code::GET_KV_CONFIG => self.get_kv_config(request),
            request_code::DELETE_KV_CONFIG => self.delete_kv_config(request),
            request_code::GET_KVLIST_BY_NAMESPACE => self.get_kv_list_by_namespace(request),
            request_code::REGISTER_BROKER => self.register_broker(conn, request),
            request_code::UNREGISTER_BROKER => self.unregister_broker(request),
            request_code::GET_ROUTEINFO_BY_TOPIC => self.get_route_info_by_topic(request),
            request_code::GET_BROKER_CLUSTER_INFO => Ok(self.get_broker_cluster_info(request)),
            request_code::WIPE_WRITE_PERM_OF_BROKER => self.update_write_perm(request, false),
            request_code::ADD_WRITE_PERM_OF_BROKER => self.update_write_perm(request, true),
            request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Ok(self.get_all_topic_list(request))
            }
            request_code::DELETE_TOPIC_IN_NAMESRV => self.delete_topic(request),
            request_code::GET_TOPICS_BY_CLUSTER => self.get_topics_by_cluster(request),
            request_code::QUERY_DATA_VERSION => self.query_data_version(request),
            _ => {
                tracing::debug!(code = request.code, "request code not supported by namesrv");
                return request.not_supported();
            }
        };
        result.unwrap_or_else(|err| {
            tracing::warn!(code = request.code, error = %err, "namesrv request rejected");
            request.error_response(&err)
        })
    }

    fn success(request: &RemotingCommand) -> RemotingCommand {
        request.response(response_code::SUCCESS, None)
    }

    fn put_kv_config(&self, request: &RemotingCommand) -> Result<RemotingCommand, RemotingError> {
        let namespace: String = request.required("namespace")?;
        let key: String = request.required("key")?;
        let value: String = request.required("value")?;
        self.state.kv_mut().put(&namespace, &key, &value);
        Ok(Self::success(request))
    }

    fn get_kv_config(&self, request: &RemotingCommand) -> Result<RemotingCommand, RemotingError> {
        let namespace: String = request.required("namespace")?;
        let key: String = request.required("key")?;
        let value = self.state.kv().get(&namespace, &key).map(str::to_string);
        Ok(match value {
            Some(value) => Self::success(request).with_ext("value", value),
            None => request.response(
                response_code::QUERY_NOT_FOUND,
                format!("No config item, Namespace: {namespace} Key: {key}"),
            ),
        })
    }

    fn delete_kv_config(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let namespace: String = request.required("namespace")?;
        let key: String = request.required("key")?;
        self.state.kv_mut().delete(&namespace, &key);
        Ok(Self::success(request))
    }

    fn get_kv_list_by_namespace(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let namespace: String = request.required("namespace")?;
        let table = self.state.kv().list(&namespace);
        Ok(match table {
            Some(table) => Self::success(request).with_body(table.encode()),
            None => request.response(
                response_code::QUERY_NOT_FOUND,
                format!("No config item, Namespace: {namespace}"),
            ),
        })
    }

    fn register_broker(
        &self,
        conn: Option<&Connection>,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let header = RegisterBrokerRequestHeader::from_command(request)?;
        if header.body_crc32 != 0 && crc32_masked(&request.body) != header.body_crc32 {
            tracing::warn!(
                broker_addr = %header.broker_addr,
                peer = ?conn.map(Connection::peer_addr),
                "register broker: crc32 not match"
            );
            return Ok(request.response(response_code::SYSTEM_ERROR, "crc32 not match".to_string()));
        }
        let decoded = if request.version >= VERSION_V3_0_11 {
            RegisterBrokerBody::decode(&request.body, header.compressed, request.version)
                .map_err(|e| e.to_string())
        } else {
            decode_legacy_register_body(&request.body)
        };
        let body = match decoded {
            Ok(body) => body,
            Err(reason) => {
                tracing::warn!(broker_addr = %header.broker_addr, %reason, "bad register body");
                return Ok(request.response(
                    response_code::SYSTEM_ERROR,
                    format!(
                        "invalid register body from {}: {reason}",
                        header.broker_addr
                    ),
                ));
            }
        };
        let registration = BrokerRegistration {
            cluster_name: header.cluster_name,
            broker_addr: header.broker_addr,
            broker_name: header.broker_name,
            broker_id: header.broker_id,
            ha_server_addr: header.ha_server_addr,
            heartbeat_timeout_ms: header.heartbeat_timeout_ms,
            topic_config_wrapper: body.topic_config_serialize_wrapper,
            filter_server_list: body.filter_server_list,
            connection_id: conn.map(Connection::id),
        };
        tracing::debug!(
            cluster = %registration.cluster_name,
            broker_name = %registration.broker_name,
            broker_id = registration.broker_id,
            broker_addr = %registration.broker_addr,
            topics = registration.topic_config_wrapper.topic_config_table.len(),
            "register broker"
        );
        let mut routes = self.state.routes_mut();
        // A registration read just before its connection closed can be processed after the
        // close was handled; recording it would leave a dead broker routed until expiry. The
        // remoting layer marks a connection closed before calling `on_connection_closed`, which
        // needs this lock: so either we see the close here, or the close handler runs after us
        // and removes what we record.
        if conn.is_some_and(Connection::is_closed) {
            drop(routes);
            tracing::info!(
                broker_addr = %registration.broker_addr,
                "registration arrived on a connection that has closed; ignored"
            );
            return Ok(
                request.response(response_code::SYSTEM_ERROR, "connection closed".to_string())
            );
        }
        let outcome = routes.register_broker(registration, rt::now_ms());
        drop(routes);
        let mut response = Self::success(request);
        if let Some(ha) = outcome.ha_server_addr {
            response.set_ext("haServerAddr", ha);
        }
        if let Some(master) = outcome.master_addr {
            response.set_ext("masterAddr", master);
        }
        // RocketMQ returns the order-topic KV list to brokers (returnOrderTopicConfigToBroker).
        if let Some(table) = self.state.kv().list(NAMESPACE_ORDER_TOPIC_CONFIG) {
            response.body = table.encode().into();
        }
        Ok(response)
    }

    fn unregister_broker(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let broker_name: String = request.required("brokerName")?;
        let broker_addr: String = request.required("brokerAddr")?;
        let cluster_name: String = request.required("clusterName")?;
        let broker_id: i64 = request.required("brokerId")?;
        tracing::info!(%cluster_name, %broker_name, broker_id, %broker_addr, "unregister broker");
        self.state.routes_mut().unregister_broker(
            &cluster_name,
            &broker_addr,
            &broker_name,
            broker_id,
        );
        Ok(Self::success(request))
    }

    fn get_route_info_by_topic(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let topic: String = request.required("topic")?;
        let route = self.state.routes().pickup_topic_route_data(&topic);
        Ok(match route {
            Some(route) => Self::success(request).with_body(route.encode()),
            None => request.response(
                response_code::TOPIC_NOT_EXIST,
                topic_not_exist_remark(&topic),
            ),
        })
    }

    fn get_broker_cluster_info(&self, request: &RemotingCommand) -> RemotingCommand {
        let info = self.state.routes().cluster_info();
        Self::success(request).with_body(info.encode())
    }

    fn update_write_perm(
        &self,
        request: &RemotingCommand,
        add: bool,
    ) -> Result<RemotingCommand, RemotingError> {
        let broker_name: String = request.required("brokerName")?;
        let mut routes = self.state.routes_mut();
        let (count, header) = if add {
            (
                routes.add_write_perm_of_broker(&broker_name),
                "addTopicCount",
            )
        } else {
            (
                routes.wipe_write_perm_of_broker(&broker_name),
                "wipeTopicCount",
            )
        };
        drop(routes);
        tracing::info!(%broker_name, add, topics = count, "write perm of broker changed");
        Ok(Self::success(request).with_ext(header, count))
    }

    fn get_all_topic_list(&self, request: &RemotingCommand) -> RemotingCommand {
        if !self.state.config.enable_all_topic_list {
            return request.response(response_code::SYSTEM_ERROR, "disable".to_string());
        }
        let topics = self.state.routes().all_topics();
        Self::success(request).with_body(topics.encode())
    }

    fn delete_topic(&self, request: &RemotingCommand) -> Result<RemotingCommand, RemotingError> {
        let topic: String = request.required("topic")?;
        let cluster: Option<String> = request.optional("clusterName")?;
        self.state
            .routes_mut()
            .delete_topic(&topic, cluster.as_deref());
        Ok(Self::success(request))
    }

    fn get_topics_by_cluster(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let cluster: String = request.required("cluster")?;
        let topics = self.state.routes().topics_by_cluster(&cluster);
        Ok(Self::success(request).with_body(topics.encode()))
    }

    fn query_data_version(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        let _broker_name: String = request.required("brokerName")?;
        let broker_addr: String = request.required("brokerAddr")?;
        let cluster_name: String = request.required("clusterName")?;
        let _broker_id: i64 = request.required("brokerId")?;
        let Ok(version) =
            parse_lenient_json::<DataVersion>(&String::from_utf8_lossy(&request.body))
        else {
            return Ok(request.response(
                response_code::SYSTEM_ERROR,
                "QUERY_DATA_VERSION body is not a DataVersion".to_string(),
            ));
        };
        let mut routes = self.state.routes_mut();
        let changed = routes.is_broker_topic_config_changed(&cluster_name, &broker_addr, &version);
        routes.update_broker_timestamp(&cluster_name, &broker_addr, rt::now_ms());
        let stored = routes
            .live_info(&cluster_name, &broker_addr)
            .map(|live| live.data_version.clone());
        drop(routes);
        let mut response = Self::success(request).with_ext("changed", changed);
        if let Some(stored) = stored {
            response.body = serde_json::to_vec(&stored).unwrap_or_default().into();
        }
        Ok(response)
    }
}

/// Brokers older than V3_0_11 send only a TopicConfigSerializeWrapper.
fn decode_legacy_register_body(body: &[u8]) -> Result<RegisterBrokerBody, String> {
    let wrapper: TopicConfigSerializeWrapper = if body.is_empty() {
        TopicConfigSerializeWrapper::default()
    } else {
        parse_lenient_json(&String::from_utf8_lossy(body)).map_err(|e| e.to_string())?
    };
    Ok(RegisterBrokerBody {
        topic_config_serialize_wrapper: wrapper,
        filter_server_list: Vec::new(),
    })
}

impl RequestProcessor for NamesrvProcessor {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move { Some(self.handle(Some(&conn), &request)) })
    }

    fn on_connection_closed(&self, conn: &Connection) {
        let removed = self.state.routes_mut().on_connection_closed(conn.id());
        for broker in removed {
            tracing::info!(
                cluster = %broker.cluster_name,
                broker_addr = %broker.broker_addr,
                peer = %conn.peer_addr(),
                "broker connection closed; removed from routes"
            );
        }
    }
}
