//! Apogee's own RocketMQ client over `remoting`: namesrv route lookups, producer (sync, oneway,
//! batch), pull consumer with offset commit, and admin operations. Used by mqadmin, mqbench and
//! the simulation workload. OWNER: client helper.
