//! gatehouse: an identity-aware reverse proxy on Pingora.
//!
//! Pure core (`config`, `path`, `policy`, `routes`) and I/O at the edge (`proxy`, `listeners`,
//! `upstreams`, `admin`, `supervisor`, `server`). See DESIGN.md for the request path.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod authn;
pub mod authz;
pub mod bench_sessions;
pub mod config;
pub mod downstream;
pub mod header_deadline;
pub mod identity;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod raw_head;
pub mod routes;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod supervisor;
pub mod upstreams;
