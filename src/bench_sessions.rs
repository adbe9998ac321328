//! `gatehouse bench-clone-session`: copies one real session many times, for load tests.
//!
//! The benchmark's cold-session lane and its million-session check need many distinct sessions
//! in the store, each one real-format. Logging in a million times through the IdP is not
//! practical, so one real login is made and its record is stored again under fresh tickets
//! (new id and per-session secret each), exactly as a sign-in stores a session. Whoever runs
//! this holds the `cookie_secret` and can write to the store, so it grants nothing new.

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt as _;

use crate::{
    config::{Config, SessionStoreUrl},
    session::{store, Lookup, Sealer, SessionRecord, Sessions, Ticket},
};

/// Sessions written to the store at once.
const CONCURRENCY: usize = 256;

/// How long to wait for the store to answer the first read.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Stores `count` copies of the session of `cookie` (a `NAME=VALUE` pair or a bare value)
/// in `config`'s session store and writes one `NAME=VALUE` cookie per copy to `out`.
pub fn clone_session(
    config: &Config,
    cookie: &str,
    count: usize,
    out: &mut dyn Write,
) -> Result<(), String> {
    let identity = &config.identity;
    let secret = identity
        .cookie_secret
        .as_ref()
        .ok_or("the configuration has no cookie_secret")?;
    let url = match &identity.session_store {
        SessionStoreUrl::Memory => return Err("session_store is memory; use a shared store".into()),
        SessionStoreUrl::Redis(url) => url.clone(),
    };
    let sealer = Sealer::new(secret);
    let name = &identity.cookie_name;
    let value = cookie
        .trim()
        .strip_prefix(name.as_str())
        .and_then(|rest| rest.strip_prefix('='))
        .unwrap_or(cookie.trim());
    let ticket =
        Ticket::open(&sealer, value).ok_or("the cookie is not a session of this cookie_secret")?;

    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let store = store::open(&url, store::StoreOptions::default())
            .map_err(|e| format!("session_store: {e}"))?;
        let sessions = Sessions::new(store, 1);
        let record = read_record(&sessions, &ticket).await?;
        let mut writes = futures_util::stream::iter(0..count)
            .map(|_| sessions.create(&record, SystemTime::now()))
            .buffer_unordered(CONCURRENCY);
        while let Some(written) = writes.next().await {
            let ticket = written.map_err(|e| format!("session store: {e}"))?;
            writeln!(out, "{name}={}", ticket.seal(&sealer)).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())
    })
}

/// The record behind `ticket`, waiting for the store to connect.
async fn read_record(sessions: &Sessions, ticket: &Ticket) -> Result<SessionRecord, String> {
    let started = Instant::now();
    loop {
        match sessions.load(ticket, SystemTime::now()).await {
            Lookup::Found(loaded) => return Ok(loaded.record.clone()),
            Lookup::Missing => return Err("no such session in the store (expired?)".into()),
            Lookup::Unavailable if started.elapsed() < CONNECT_DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Lookup::Unavailable => return Err("the session store does not answer".into()),
        }
    }
}
