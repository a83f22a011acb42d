//! Management: the `weft mgmtd` daemon that runs on every node, the trusted pool, volume
//! lifecycle, volfile generation, background tasks and the REST API (see
//! docs/ARCHITECTURE.md, "Management", and docs/MANAGEMENT.md).

pub mod api;
pub mod brick_check;
pub mod brickproc;
pub mod client;
pub mod daemon;
pub mod heal;
pub mod model;
pub mod mounts;
pub mod node;
pub mod optable;
pub mod rebalance;
pub mod store;
pub mod tasks;
pub mod types;
pub mod volgen;
