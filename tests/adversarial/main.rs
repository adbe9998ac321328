//! The adversarial suite (SECURITY.md): every kind of attack in the brief, sent as raw bytes
//! (HTTP/1.1 over TCP, HTTP/2 as hand-built frames), because clients normalize and attackers
//! do not. Each module is one kind; its test starts one stack (real IdP, gatehouse, an echo
//! upstream per route, real sessions) and runs the kind's table of cases against the public,
//! the group-protected and the WebSocket route alike. Every case asserts the response *and*
//! what the upstreams received, and every failure of a table is reported in one run.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

#[path = "../../src/session/store/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

mod runner;
mod stack;

mod callback;
mod connections;
mod exhaustion;
mod headers;
mod http2;
mod http2_limits;
mod jwt;
mod paths;
mod redirects;
mod sessions;
mod smuggling;
