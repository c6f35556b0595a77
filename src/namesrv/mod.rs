//! Name server: route table, broker liveness, KV config. OWNER: namesrv helper.
//! Public API the binaries, standalone mode and simulations use:
//! `Namesrv::start(config: NamesrvConfig) -> Result<Namesrv, NamesrvError>` binds the port and
//! spawns the processing and the expiry scan loop through `rt`; `local_addr()`.
