//! The fleet store: standalone Redis, Sentinel or Cluster, all through one command path.
//!
//! Commands go through a [`link::Link`], a supervised connection that is (re)established in
//! the background; invalidations arrive on a dedicated subscription connection
//! ([`subscription`]). Neither ever makes an operation wait longer than `op_timeout`.
//!
//! Keys: `{prefix}s:{hex id}` (records), `{prefix}c:{hex code}` (one-time codes),
//! `{prefix}l:{hex name}` (leases); channel `{prefix}invalidate`, whose messages are the 16
//! raw id bytes. Needs Redis ≥ 6.2 (GETDEL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::{cmd, RedisError, Script, Value};
use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::{
    clamp_ttl, LockToken, SessionId, SessionStore, StoreError, StoreEvent, StoreHealth,
    StoreOptions, EVENT_CAPACITY, MAX_CODE_TTL, MAX_TTL,
};

mod config;
mod link;
mod nodes;
mod subscription;

pub(super) use config::RedisConfig;

/// Releases a lease only if it still holds our token.
const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Shortest time allowed for establishing a connection, whatever `op_timeout` is: TLS and
/// Sentinel lookups take several round trips.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest error message taken from a Redis error (a garbage answer could be long).
const MAX_MESSAGE: usize = 200;

/// A [`SessionStore`] on Redis.
pub(super) struct RedisStore {
    link: link::Link,
    prefix: Vec<u8>,
    channel: Vec<u8>,
    events: broadcast::Sender<StoreEvent>,
    subscribed: Arc<AtomicBool>,
    unlock: Script,
    /// The background tasks, stopped when the store is dropped.
    tasks: [AbortHandle; 2],
}

/// Timeouts shared by the background tasks.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    op: Duration,
    connect: Duration,
}

/// Turns Redis errors into [`StoreError`]s with every URL password scrubbed out.
#[derive(Clone)]
struct Redactor {
    secrets: Arc<[String]>,
}

// === impl RedisStore ===

impl RedisStore {
    /// Starts the connection supervisor and the subscription on `runtime`; never waits for
    /// Redis.
    pub(super) fn start(
        config: RedisConfig,
        options: StoreOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        if !config.ignored_params.is_empty() {
            tracing::warn!(
                params = ?config.ignored_params,
                "session_store: ignoring Pomerium connection-tuning parameters; every store operation is bounded by the store timeout instead"
            );
        }
        if config.tls.as_ref().is_some_and(|tls| tls.skip_verify) {
            tracing::warn!(
                "session_store: TLS certificate verification is disabled (tls_skip_verify); anyone on the path to Redis can read and change sessions"
            );
        }
        let redactor = Redactor {
            secrets: config.secrets().into(),
        };
        let timeouts = Timeouts {
            op: options.op_timeout,
            connect: options.op_timeout.max(MIN_CONNECT_TIMEOUT),
        };
        // Each task gets its own clients, so a slow Sentinel lookup by one never holds up
        // the other.
        let command_nodes = nodes::Nodes::build(&config, timeouts)?;
        let subscription_nodes = nodes::Nodes::build(&config, timeouts)?;

        let mut channel = options.key_prefix.as_bytes().to_vec();
        channel.extend_from_slice(b"invalidate");
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let subscribed = Arc::new(AtomicBool::new(false));

        let (link, link_task) =
            link::Link::start(command_nodes, timeouts, redactor.clone(), runtime);
        let subscription_task = runtime
            .spawn(subscription::run(
                subscription_nodes,
                channel.clone(),
                events.clone(),
                subscribed.clone(),
                timeouts,
                redactor,
            ))
            .abort_handle();

        Ok(Self {
            link,
            prefix: options.key_prefix.into_bytes(),
            channel,
            events,
            subscribed,
            unlock: Script::new(UNLOCK_SCRIPT),
            tasks: [link_task, subscription_task],
        })
    }

    /// `{prefix}{tag}:{hex raw}`.
    fn key(&self, tag: u8, raw: &[u8]) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = Vec::with_capacity(self.prefix.len() + 2 + 2 * raw.len());
        key.extend_from_slice(&self.prefix);
        key.push(tag);
        key.push(b':');
        for byte in raw {
            key.push(HEX[usize::from(byte >> 4)]);
            key.push(HEX[usize::from(byte & 0x0f)]);
        }
        key
    }

    /// `SET key value NX PX ttl`: true if it was set.
    async fn set_if_absent(
        &self,
        key: Vec<u8>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut command = cmd("SET");
        command
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let answer: Value = self
            .link
            .run(|mut conn| {
                let command = &command;
                async move { command.query_async(&mut conn).await }
            })
            .await?;
        match answer {
            Value::Okay => Ok(true),
            Value::SimpleString(text) if text == "OK" => Ok(true),
            Value::Nil => Ok(false),
            _ => Err(StoreError::Protocol("unexpected answer to SET NX".into())),
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Bytes>, StoreError> {
        let mut command = cmd("GET");
        command.arg(self.key(b's', id));
        self.link
            .run(|mut conn| {
                let command = &command;
                async move {
                    match command.query_async(&mut conn).await {
                        // The key holds another type: whatever it is, it is no record. As an
                        // error it would answer this session with 503 until the key expires.
                        Err(error) if error.code() == Some("WRONGTYPE") => Ok(None),
                        answer => answer,
                    }
                }
            })
            .await
    }

    async fn put(&self, id: &SessionId, record: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut command = cmd("SET");
        command
            .arg(self.key(b's', id))
            .arg(record)
            .arg("PX")
            .arg(millis(clamp_ttl(ttl, MAX_TTL)));
        self.link
            .run(|mut conn| {
                let command = &command;
                async move { command.query_async(&mut conn).await }
            })
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let mut command = cmd("DEL");
        command.arg(self.key(b's', id));
        self.link
            .run(|mut conn| {
                let command = &command;
                async move { command.query_async(&mut conn).await }
            })
            .await
    }

    async fn put_code(
        &self,
        code: &[u8; 32],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.set_if_absent(self.key(b'c', code), value, clamp_ttl(ttl, MAX_CODE_TTL))
            .await
    }

    async fn take_code(&self, code: &[u8; 32]) -> Result<Option<Bytes>, StoreError> {
        let mut command = cmd("GETDEL");
        command.arg(self.key(b'c', code));
        self.link
            .run(|mut conn| {
                let command = &command;
                async move { command.query_async(&mut conn).await }
            })
            .await
    }

    async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let token = LockToken::random();
        let acquired = self
            .set_if_absent(
                self.key(b'l', name),
                token.as_bytes(),
                clamp_ttl(ttl, MAX_TTL),
            )
            .await?;
        Ok(acquired.then_some(token))
    }

    async fn unlock(&self, name: &[u8], token: &LockToken) -> Result<(), StoreError> {
        let mut invocation = self.unlock.prepare_invoke();
        invocation
            .key(self.key(b'l', name))
            .arg(token.as_bytes().as_slice());
        let _released: i64 = self
            .link
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(())
    }

    async fn publish_invalidation(&self, id: &SessionId) -> Result<(), StoreError> {
        // This instance learns at once, even if Redis is down; it hears its own message
        // again through the subscription, which is harmless.
        let _ = self.events.send(StoreEvent::Invalidated(*id));
        let mut command = cmd("PUBLISH");
        command.arg(self.channel.as_slice()).arg(id.as_slice());
        let _receivers: i64 = self
            .link
            .run(|mut conn| {
                let command = &command;
                async move { command.query_async(&mut conn).await }
            })
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            connected: self.link.is_up(),
            subscribed: self.subscribed.load(Ordering::Relaxed),
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// A TTL (already clamped to ≥ 1 ms) as Redis `PX` milliseconds.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

// === impl Redactor ===

impl Redactor {
    /// Classifies a Redis error: an answer that is garbled or that the store cannot use is
    /// `Protocol`; anything that means "cannot be served now" (including credentials the
    /// server refuses) is `Unavailable`.
    fn error(&self, error: &RedisError) -> StoreError {
        use ::redis::{ErrorKind, ServerErrorKind};
        let text = self.scrub(&error.to_string());
        let refused = matches!(
            error.code(),
            Some("NOAUTH" | "WRONGPASS" | "NOPERM" | "LOADING" | "MASTERDOWN" | "READONLY")
        );
        match error.kind() {
            _ if refused => StoreError::Unavailable(text),
            ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Extension
            | ErrorKind::Client
            | ErrorKind::RESP3NotSupported
            | ErrorKind::Server(
                ServerErrorKind::ResponseError
                | ServerErrorKind::ExecAbort
                | ServerErrorKind::NoScript
                | ServerErrorKind::CrossSlot
                | ServerErrorKind::NotBusy
                | ServerErrorKind::NoSub,
            ) => StoreError::Protocol(text),
            _ => StoreError::Unavailable(text),
        }
    }

    /// One line of at most [`MAX_MESSAGE`] characters without any URL password.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for secret in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        if let Some((cut, _)) = text.char_indices().nth(MAX_MESSAGE) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// Whether the connection that produced `error` must be replaced.
fn needs_reconnect(error: &RedisError) -> bool {
    error.is_unrecoverable_error()
        || error.is_io_error()
        || error.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::ReadOnly)
}
