//! Pieces every splatfleet role shares: configuration, telemetry, shutdown, the RabbitMQ
//! broker (topology, typed publish and consume), the PostgreSQL pool and migrations, and the
//! messages that travel between roles, and the artifact store.

pub mod artifacts;
pub mod bittensor;
pub mod broker;
pub mod config;
pub mod db;
pub mod discovery;
pub mod http_client;
pub mod ledger;
pub mod messages;
pub mod protocol;
pub mod role;
pub mod shutdown;
pub mod splat;
pub mod telemetry;
