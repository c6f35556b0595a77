//! The broker: request processors over the store, topic/subscription/offset managers, consumer
//! membership, long polling, namesrv registration. OWNER: broker helper.
//! Public API the binary, standalone mode and simulations use:
//! `Broker::start(config: BrokerConfig, disk: Arc<dyn Disk>) -> Result<Broker, BrokerError>`
//! (opens the store, binds listenPort and listenPort-2, starts registration), `shutdown()`.
