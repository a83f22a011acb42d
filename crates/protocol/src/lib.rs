//! Weft's network translators and the brick server.
//!
//! - [`server`]: `protocol/server` and [`server::BrickServer`], which serves every brick of
//!   a server volfile from one process on one port, with bricks attached and detached at
//!   run time through a control socket (`weft brickd`).
//! - [`client`]: `protocol/client`, the translator that sends FOPs to a brick and keeps
//!   its connection up.
//! - [`auth`]: `auth.allow` / `auth.reject` address lists; [`tls`]: optional rustls;
//!   [`identity`]: identity squashing (`server.root-squash`, `server.all-squash`) and
//!   certificate names (`auth.ssl-allow`); [`resume`]: the session ids that let a client
//!   that reconnects within a brick's `grace-timeout` get its open files and locks back.
//!
//! Both ends speak the frames and messages of `weft-wire`.

pub mod auth;
pub mod client;
pub mod identity;
pub mod resume;
pub mod server;
pub mod stream;
pub mod tls;

pub use server::{register, BrickServer, Limits};
