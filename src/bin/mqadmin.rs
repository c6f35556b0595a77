//! mqadmin: RocketMQ's admin tool verbs over Apogee's client. Output follows RocketMQ's
//! column layout; an error prints one line naming the namesrv/broker and what failed, exit 1.

#[cfg(not(madsim))]
fn main() {
    use clap::Parser;
    let cli = cli::Cli::parse();
    // Diagnostics go to stderr, quiet unless RUST_LOG asks for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqadmin: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let verb = cli.command.verb();
    let mut out = String::new();
    let result = runtime.block_on(cli::run(cli, &mut out));
    print!("{out}");
    if let Err(e) = result {
        eprintln!("mqadmin {verb}: {e:#}");
        std::process::exit(1);
    }
}

/// mqadmin is a real-network tool; simulations drive the client library directly.
#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
mod cli {
    use std::fmt::Write as _;

    use anyhow::{bail, Context};
    use apogee::client::admin::{format_timestamp_ms, now_ms};
    use apogee::client::body::{mq, mq_string, readable_queues};
    use apogee::client::broker_ops::{PullRequest, PullStatus};
    use apogee::client::{
        ClientConfig, Message, MessageQueue, MqClient, Producer, ProducerConfig,
        DEFAULT_NAMESRV_ADDR,
    };
    use apogee::message::MessageExt;
    use apogee::protocol::topic::{is_inherited, is_readable, is_writeable, TopicConfig};
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(name = "mqadmin", about = "Apogee / RocketMQ admin tool", version)]
    pub struct Cli {
        /// Name server address list, e.g. '192.168.0.1:9876;192.168.0.2:9876'.
        #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR", global = true,
              default_value = DEFAULT_NAMESRV_ADDR)]
        pub namesrv: String,
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(Subcommand, Debug)]
    pub enum Command {
        /// List cluster infos.
        #[command(name = "clusterList")]
        ClusterList,
        /// Fetch all topic list from name server.
        #[command(name = "topicList")]
        TopicList,
        /// Examine topic route info.
        #[command(name = "topicRoute")]
        TopicRoute {
            #[arg(short = 't', long = "topic")]
            topic: String,
        },
        /// Update or create topic.
        #[command(name = "updateTopic")]
        UpdateTopic {
            #[arg(short = 't', long = "topic")]
            topic: String,
            /// Create topic on every master of this cluster.
            #[arg(short = 'c', long = "clusterName", conflicts_with = "broker_addr")]
            cluster: Option<String>,
            /// Create topic on this broker address.
            #[arg(short = 'b', long = "brokerAddr")]
            broker_addr: Option<String>,
            #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
            read_queue_nums: i32,
            #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
            write_queue_nums: i32,
            /// Permission (2|4|6), 2:W 4:R 6:RW.
            #[arg(short = 'p', long = "perm", default_value_t = 6)]
            perm: i32,
            #[arg(short = 'o', long = "order", default_value_t = false, action = clap::ArgAction::Set)]
            order: bool,
        },
        /// Delete topic from broker and NameServer.
        #[command(name = "deleteTopic")]
        DeleteTopic {
            #[arg(short = 't', long = "topic")]
            topic: String,
            #[arg(short = 'c', long = "clusterName")]
            cluster: String,
        },
        /// Examine topic status info.
        #[command(name = "topicStatus")]
        TopicStatus {
            #[arg(short = 't', long = "topic")]
            topic: String,
        },
        /// Query consumer's progress, speed.
        #[command(name = "consumerProgress")]
        ConsumerProgress {
            #[arg(short = 'g', long = "groupName")]
            group: String,
            #[arg(short = 't', long = "topicName")]
            topic: Option<String>,
        },
        /// Fetch broker runtime status data.
        #[command(name = "brokerStatus")]
        BrokerStatus {
            #[arg(short = 'b', long = "brokerAddr")]
            broker_addr: String,
        },
        /// Wipe write perm of broker in all name server.
        #[command(name = "wipeWritePerm")]
        WipeWritePerm {
            #[arg(short = 'b', long = "brokerName")]
            broker_name: String,
        },
        /// Add write perm of broker in all name server.
        #[command(name = "addWritePerm")]
        AddWritePerm {
            #[arg(short = 'b', long = "brokerName")]
            broker_name: String,
        },
        /// Send a message.
        #[command(name = "sendMessage")]
        SendMessage {
            #[arg(short = 't', long = "topic")]
            topic: String,
            /// UTF-8 string body.
            #[arg(short = 'p', long = "body")]
            body: String,
            #[arg(short = 'k', long = "key")]
            keys: Option<String>,
            #[arg(short = 'c', long = "tags")]
            tags: Option<String>,
            /// Send to this broker name.
            #[arg(short = 'b', long = "broker")]
            broker: Option<String>,
            /// Send to this queue id (with -b).
            #[arg(short = 'i', long = "qid")]
            queue_id: Option<i32>,
        },
        /// Consume messages.
        #[command(name = "consumeMessage")]
        ConsumeMessage {
            #[arg(short = 't', long = "topic")]
            topic: String,
            #[arg(short = 'g', long = "consumerGroup", default_value = "TOOLS_CONSUMER")]
            group: String,
            #[arg(short = 'b', long = "brokerName")]
            broker: Option<String>,
            #[arg(short = 'i', long = "queueId")]
            queue_id: Option<i32>,
            #[arg(short = 'o', long = "offset")]
            offset: Option<i64>,
            /// Number of messages to consume.
            #[arg(short = 'c', long = "MessageNumber", default_value_t = 128)]
            count: usize,
        },
        /// Query Message by Id: an offset msgId, or a UNIQ_KEY when -t is given.
        #[command(name = "queryMsgById")]
        QueryMsgById {
            #[arg(short = 'i', long = "msgId")]
            msg_id: String,
            /// Topic, to look the id up as a UNIQ_KEY when it is not an offset msgId.
            #[arg(short = 't', long = "topic")]
            topic: Option<String>,
        },
        /// Query Message by Key.
        #[command(name = "queryMsgByKey")]
        QueryMsgByKey {
            #[arg(short = 't', long = "topic")]
            topic: String,
            #[arg(short = 'k', long = "msgKey")]
            key: String,
            #[arg(short = 'm', long = "maxNum", default_value_t = 64)]
            max_num: i32,
        },
    }

    impl Command {
        pub fn verb(&self) -> &'static str {
            match self {
                Command::ClusterList => "clusterList",
                Command::TopicList => "topicList",
                Command::TopicRoute { .. } => "topicRoute",
                Command::UpdateTopic { .. } => "updateTopic",
                Command::DeleteTopic { .. } => "deleteTopic",
                Command::TopicStatus { .. } => "topicStatus",
                Command::ConsumerProgress { .. } => "consumerProgress",
                Command::BrokerStatus { .. } => "brokerStatus",
                Command::WipeWritePerm { .. } => "wipeWritePerm",
                Command::AddWritePerm { .. } => "addWritePerm",
                Command::SendMessage { .. } => "sendMessage",
                Command::ConsumeMessage { .. } => "consumeMessage",
                Command::QueryMsgById { .. } => "queryMsgById",
                Command::QueryMsgByKey { .. } => "queryMsgByKey",
            }
        }
    }

    /// RocketMQ `UtilAll.frontStringAtLeast`: at most `n` leading characters.
    fn front(s: &str, n: usize) -> String {
        s.chars().take(n).collect()
    }

    /// RocketMQ `PermName.perm2String`.
    fn perm_string(perm: i32) -> String {
        format!(
            "{}{}{}",
            if is_readable(perm) { "R" } else { "-" },
            if is_writeable(perm) { "W" } else { "-" },
            if is_inherited(perm) { "X" } else { "-" }
        )
    }

    fn topic_config_string(c: &TopicConfig) -> String {
        format!(
            "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, topicFilterType={}, topicSysFlag={}, order={}, attributes={:?}]",
            c.topic_name,
            c.read_queue_nums,
            c.write_queue_nums,
            perm_string(c.perm),
            c.topic_filter_type,
            c.topic_sys_flag,
            c.order,
            c.attributes
        )
    }

    fn first_number(v: Option<&String>) -> f64 {
        v.and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    fn print_message(out: &mut String, msg: &MessageExt) {
        let props: Vec<String> = msg
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<20} {v}");
        };
        line("OffsetID:", msg.offset_msg_id());
        line("Topic:", msg.topic.clone());
        line("Tags:", format!("[{}]", msg.tags().unwrap_or("")));
        line("Keys:", format!("[{}]", msg.keys().join(" ")));
        line("Queue ID:", msg.queue_id.to_string());
        line("Queue Offset:", msg.queue_offset.to_string());
        line("CommitLog Offset:", msg.commitlog_offset.to_string());
        line("Reconsume Times:", msg.reconsume_times.to_string());
        line("Born Timestamp:", format_timestamp_ms(msg.born_timestamp));
        line("Store Timestamp:", format_timestamp_ms(msg.store_timestamp));
        line("Born Host:", msg.born_host.to_string());
        line("Store Host:", msg.store_host.to_string());
        line("System Flag:", msg.sys_flag.to_string());
        line("Properties:", format!("{{{}}}", props.join(", ")));
        line(
            "Message Body:",
            String::from_utf8_lossy(&msg.body).into_owned(),
        );
    }

    pub async fn run(cli: Cli, out: &mut String) -> anyhow::Result<()> {
        let namesrvs = ClientConfig::parse_namesrv_list(&cli.namesrv);
        if namesrvs.is_empty() {
            bail!("no name server address given (-n or NAMESRV_ADDR)");
        }
        let mut config = ClientConfig::new(namesrvs);
        config.instance_name = format!("mqadmin-{}", std::process::id());
        let client = MqClient::new(config);
        match cli.command {
            Command::ClusterList => cluster_list(&client, out).await,
            Command::TopicList => {
                for topic in client.topic_list().await? {
                    let _ = writeln!(out, "{topic}");
                }
                Ok(())
            }
            Command::TopicRoute { topic } => {
                let route = client.fetch_topic_route(&topic).await?;
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&route)?);
                Ok(())
            }
            Command::UpdateTopic {
                topic,
                cluster,
                broker_addr,
                read_queue_nums,
                write_queue_nums,
                perm,
                order,
            } => {
                let mut tc = TopicConfig::new(&topic, read_queue_nums, write_queue_nums, perm);
                tc.order = order;
                match (broker_addr, cluster) {
                    (Some(addr), _) => {
                        client.create_topic_on_broker(&addr, &tc).await?;
                        let _ = writeln!(out, "create topic to {addr} success.");
                    }
                    (None, Some(cluster)) => {
                        for addr in client.create_topic_on_cluster(&cluster, &tc).await? {
                            let _ = writeln!(out, "create topic to {addr} success.");
                        }
                    }
                    (None, None) => bail!("updateTopic needs -b brokerAddr or -c clusterName"),
                }
                let _ = writeln!(out, "{}", topic_config_string(&tc));
                Ok(())
            }
            Command::DeleteTopic { topic, cluster } => {
                client.delete_topic(&topic, &cluster).await?;
                let _ = writeln!(
                    out,
                    "delete topic [{topic}] from cluster [{cluster}] success."
                );
                let _ = writeln!(out, "delete topic [{topic}] from NameServer success.");
                Ok(())
            }
            Command::TopicStatus { topic } => {
                let rows = client.topic_status(&topic).await?;
                let _ = writeln!(
                    out,
                    "{:<32}  {:<4}  {:<20}  {:<20}    #Last Updated",
                    "#Broker Name", "#QID", "#Min Offset", "#Max Offset"
                );
                for r in rows {
                    let updated = if r.last_update_timestamp > 0 {
                        format_timestamp_ms(r.last_update_timestamp)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "{:<32}  {:<4}  {:<20}  {:<20}    {}",
                        front(&r.queue.broker_name, 32),
                        r.queue.queue_id,
                        r.min_offset,
                        r.max_offset,
                        updated
                    );
                }
                Ok(())
            }
            Command::ConsumerProgress { group, topic } => {
                let progress = client.consumer_progress(&group, topic.as_deref()).await?;
                let _ = writeln!(
                    out,
                    "{:<32}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} #LastTime",
                    "#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff"
                );
                for r in &progress.rows {
                    let last = if r.last_timestamp == 0 {
                        "N/A".to_string()
                    } else {
                        format_timestamp_ms(r.last_timestamp)
                    };
                    let _ = writeln!(
                        out,
                        "{:<32}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {}",
                        front(&r.queue.topic, 32),
                        front(&r.queue.broker_name, 32),
                        r.queue.queue_id,
                        r.broker_offset,
                        r.consumer_offset,
                        r.diff(),
                        last
                    );
                }
                let _ = writeln!(out);
                let _ = writeln!(out, "Consume TPS: {:.2}", progress.consume_tps);
                let _ = writeln!(out, "Diff Total: {}", progress.diff_total());
                Ok(())
            }
            Command::BrokerStatus { broker_addr } => {
                for (k, v) in client.broker_runtime_info(&broker_addr).await? {
                    let _ = writeln!(out, "{k:<32}: {v}");
                }
                Ok(())
            }
            Command::WipeWritePerm { broker_name } => {
                let results = client.wipe_write_perm(&broker_name).await;
                perm_results(out, "wipe", &broker_name, results)
            }
            Command::AddWritePerm { broker_name } => {
                let results = client.add_write_perm(&broker_name).await;
                perm_results(out, "add", &broker_name, results)
            }
            Command::SendMessage {
                topic,
                body,
                keys,
                tags,
                broker,
                queue_id,
            } => {
                let producer = Producer::new(client.clone(), ProducerConfig::new("PID_MQADMIN"));
                let mut msg = Message::new(&topic, body.into_bytes());
                if let Some(tags) = tags {
                    msg = msg.with_tags(&tags);
                }
                if let Some(keys) = keys {
                    let keys: Vec<&str> = keys.split_whitespace().collect();
                    msg = msg.with_keys(&keys);
                }
                let result = match (broker, queue_id) {
                    (Some(b), q) => {
                        // Without -i the broker picks a writable queue (queueId -1).
                        let mq = mq(&topic, &b, q.unwrap_or(-1));
                        producer.send_to_queue(msg, &mq).await?
                    }
                    (None, Some(_)) => bail!("-i queueId needs -b brokerName"),
                    (None, None) => producer.send(msg).await?,
                };
                let _ = writeln!(
                    out,
                    "{:<32}  {:<4}  {:<20}    #MsgId",
                    "#Broker Name", "#QID", "#Send Result"
                );
                let _ = writeln!(
                    out,
                    "{:<32}  {:<4}  {:<20}    {}",
                    result.queue.broker_name,
                    result.queue.queue_id,
                    result.status.as_str(),
                    result.msg_id
                );
                Ok(())
            }
            Command::ConsumeMessage {
                topic,
                group,
                broker,
                queue_id,
                offset,
                count,
            } => {
                consume_message(
                    &client, out, &topic, &group, broker, queue_id, offset, count,
                )
                .await
            }
            Command::QueryMsgById { msg_id, topic } => {
                let msg = client
                    .view_message_by_any_id(topic.as_deref(), &msg_id)
                    .await?;
                print_message(out, &msg);
                Ok(())
            }
            Command::QueryMsgByKey {
                topic,
                key,
                max_num,
            } => {
                let msgs = client
                    .query_message_by_key(&topic, &key, max_num, 0, i64::MAX)
                    .await?;
                let _ = writeln!(out, "{:<50} {:>4} {:>40}", "#Message ID", "#QID", "#Offset");
                for m in msgs {
                    let id = m
                        .uniq_key()
                        .map(str::to_string)
                        .unwrap_or_else(|| m.offset_msg_id());
                    let _ = writeln!(out, "{:<50} {:>4} {:>40}", id, m.queue_id, m.queue_offset);
                }
                Ok(())
            }
        }
    }

    fn perm_results(
        out: &mut String,
        verb: &str,
        broker_name: &str,
        results: Vec<apogee::client::admin::NamesrvPermResult>,
    ) -> anyhow::Result<()> {
        let mut first_error = None;
        for r in results {
            match r.result {
                Ok(count) => {
                    let _ = writeln!(
                        out,
                        "{verb} write perm of broker[{broker_name}] in name server[{}] OK, {count}",
                        r.namesrv
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{verb} write perm of broker[{broker_name}] in name server[{}] Failed",
                        r.namesrv
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn cluster_list(client: &MqClient, out: &mut String) -> anyhow::Result<()> {
        let brokers = client.cluster_list().await?;
        let _ = writeln!(
            out,
            "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>10} {:>5} {:>6}  {:<12} {:>12}",
            "#Cluster Name",
            "#Broker Name",
            "#BID",
            "#Addr",
            "#Version",
            "#InTPS(LOAD)",
            "#OutTPS(LOAD)",
            "#PCWait(ms)",
            "#Hour",
            "#SPACE",
            "#Role",
            "#HALag(B)"
        );
        let now = now_ms();
        for b in brokers {
            let empty = Default::default();
            let kv = match &b.runtime {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(broker = %b.addr, error = %e, "no runtime info");
                    &empty
                }
            };
            let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
            let in_tps = first_number(kv.get("putTps"));
            let out_tps = first_number(
                kv.get("getTransferredTps")
                    .or_else(|| kv.get("getTransferedTps")),
            );
            let hour = kv
                .get("earliestMessageTimeStamp")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&t| t > 0)
                .map(|t| (now - t) as f64 / 1000.0 / 3600.0)
                .unwrap_or(0.0);
            let space = kv
                .get("commitLogDiskRatio")
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            // RocketMQ's columns, then the role and the replication lag in bytes ("-": no
            // slave connected to this master, or no answer).
            let lag = b
                .replication_lag_bytes()
                .map_or_else(|| "-".to_string(), |l| l.to_string());
            let _ = writeln!(
                out,
                "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>10} {:>5} {:>6}  {:<12} {:>12}",
                b.cluster,
                b.broker_name,
                b.broker_id,
                b.addr,
                get("brokerVersionDesc"),
                format!(
                    "{:9.2}({},{}ms)",
                    in_tps,
                    get("sendThreadPoolQueueSize"),
                    get("sendThreadPoolQueueHeadWaitTimeMills")
                ),
                format!(
                    "{:9.2}({},{}ms)",
                    out_tps,
                    get("pullThreadPoolQueueSize"),
                    get("pullThreadPoolQueueHeadWaitTimeMills")
                ),
                get("pageCacheLockTimeMills"),
                format!("{hour:2.2}"),
                format!("{space:.4}"),
                b.role(),
                lag
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn consume_message(
        client: &MqClient,
        out: &mut String,
        topic: &str,
        group: &str,
        broker: Option<String>,
        queue_id: Option<i32>,
        offset: Option<i64>,
        count: usize,
    ) -> anyhow::Result<()> {
        let route = client.fetch_topic_route(topic).await?;
        let queues: Vec<MessageQueue> = readable_queues(topic, &route)
            .into_iter()
            .filter(|q| broker.as_deref().is_none_or(|b| q.broker_name == b))
            .filter(|q| queue_id.is_none_or(|i| q.queue_id == i))
            .collect();
        if queues.is_empty() {
            bail!("topic {topic} has no readable queue matching the given broker/queue");
        }
        let mut left = count;
        for mq in queues {
            if left == 0 {
                break;
            }
            // The master, else a slave of the group (reading on while the master is down).
            let addr = client
                .find_broker_in_subscribe(topic, &mq.broker_name, 0)
                .await
                .with_context(|| format!("no address for broker {}", mq.broker_name))?
                .addr;
            let mut next = match offset {
                Some(o) => o,
                None => client
                    .get_min_offset(&addr, &mq)
                    .await
                    .with_context(|| format!("reading the first offset of {}", mq_string(&mq)))?,
            };
            loop {
                if left == 0 {
                    break;
                }
                let pull = PullRequest {
                    group: group.to_string(),
                    queue: mq.clone(),
                    queue_offset: next,
                    max_msg_nums: left.min(32) as i32,
                    commit_offset: None,
                    suspend_timeout_ms: 0,
                    subscription: Some("*".to_string()),
                    sub_version: now_ms(),
                };
                let result = client
                    .pull_message(&addr, &pull, client.rpc_timeout_ms())
                    .await?;
                match result.status {
                    PullStatus::Found => {
                        let _ = writeln!(out, "Consume ok");
                        for m in result.messages.iter().take(left) {
                            let id = m
                                .uniq_key()
                                .map(str::to_string)
                                .unwrap_or_else(|| m.offset_msg_id());
                            let _ = writeln!(
                                out,
                                "MSGID: {id} QID: {} OFFSET: {} TAGS: {} KEYS: {} BODY: {}",
                                m.queue_id,
                                m.queue_offset,
                                m.tags().unwrap_or(""),
                                m.keys().join(" "),
                                String::from_utf8_lossy(&m.body)
                            );
                        }
                        left -= result.messages.len().min(left);
                        if result.next_begin_offset <= next {
                            break;
                        }
                        next = result.next_begin_offset;
                    }
                    PullStatus::NoMatchedMsg => {
                        if result.next_begin_offset <= next {
                            break;
                        }
                        next = result.next_begin_offset;
                    }
                    PullStatus::NoNewMsg | PullStatus::OffsetIllegal => {
                        let _ = writeln!(
                            out,
                            "{} print msg finished. status={}, offset={next}",
                            mq_string(&mq),
                            result.status.as_str()
                        );
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}
