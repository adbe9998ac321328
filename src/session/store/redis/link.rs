//! The supervised command connection.
//!
//! A background task owns the connecting: it connects at start, and again whenever an
//! operation reports the connection broken. Operations never connect themselves, so a Redis
//! outage costs each operation at most one failed round trip, and afterwards nothing: while
//! the link is `Down` they fail at once, and the task retries with a backoff capped at
//! [`MAX_BACKOFF`], so service resumes within about a second of Redis coming back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::RedisResult;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::nodes::{Conn, Nodes};
use super::{needs_reconnect, Redactor, Timeouts};
use crate::session::store::StoreError;

/// First retry delay after a failed connection attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between connection attempts: bounds the time to recover.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A connection that lived this long was healthy: losing it reconnects at once.
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(5);

/// Handle on the supervised connection, used by operations.
pub(super) struct Link {
    state: Arc<watch::Sender<State>>,
    redactor: Redactor,
    op_timeout: Duration,
}

#[derive(Clone)]
enum State {
    /// A connection attempt is under way after a healthy period (or at start): operations
    /// wait for its outcome, within their timeout.
    Connecting,
    /// Connected; `generation` tells this connection from its successors.
    Up { conn: Conn, generation: u64 },
    /// The last attempt failed; operations fail at once with this error while the task keeps
    /// retrying.
    Down(StoreError),
}

/// Exponential backoff with jitter, so a fleet does not reconnect in lockstep.
pub(super) struct Backoff {
    next: Duration,
}

// === impl Link ===

impl Link {
    /// Spawns the supervisor on `runtime`; returns at once.
    pub(super) fn start(
        nodes: Nodes,
        timeouts: Timeouts,
        redactor: Redactor,
        runtime: &tokio::runtime::Handle,
    ) -> (Self, AbortHandle) {
        let state = Arc::new(watch::Sender::new(State::Connecting));
        let task = runtime
            .spawn(supervise(nodes, state.clone(), timeouts, redactor.clone()))
            .abort_handle();
        let link = Self {
            state,
            redactor,
            op_timeout: timeouts.op,
        };
        (link, task)
    }

    /// Runs `op` on the current connection, all within `op_timeout`. A connection-level
    /// failure or a timeout hands the connection back to the supervisor to be replaced.
    pub(super) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut used = None;
        let attempt = tokio::time::timeout(self.op_timeout, async {
            // A connection that broke while idle (Redis restarted) is only noticed on use:
            // then one more try on its replacement, within the same timeout, so the first
            // request after an outage does not fail.
            let mut retried = false;
            loop {
                let (conn, generation) = self.acquire().await?;
                used = Some(generation);
                match op(conn).await {
                    Ok(v) => return Ok(v),
                    Err(error) if needs_reconnect(&error) => {
                        self.report_broken(generation);
                        if retried {
                            return Err(self.redactor.error(&error));
                        }
                        retried = true;
                    }
                    Err(error) => return Err(self.redactor.error(&error)),
                }
            }
        })
        .await;
        match attempt {
            Ok(result) => result,
            Err(_elapsed) => {
                if let Some(generation) = used {
                    self.report_broken(generation);
                }
                Err(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    self.op_timeout.as_millis()
                )))
            }
        }
    }

    /// Whether commands currently have a connection.
    pub(super) fn is_up(&self) -> bool {
        matches!(*self.state.borrow(), State::Up { .. })
    }

    async fn acquire(&self) -> Result<(Conn, u64), StoreError> {
        let mut state = self.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Up { conn, generation } => return Ok((conn.clone(), *generation)),
                State::Down(error) => return Err(error.clone()),
                State::Connecting => {}
            }
            // The sender lives as long as `self`.
            if state.changed().await.is_err() {
                return Err(StoreError::Unavailable("session store closed".into()));
            }
        }
    }

    fn report_broken(&self, generation: u64) {
        self.state.send_if_modified(|state| match state {
            State::Up {
                generation: current,
                ..
            } if *current == generation => {
                *state = State::Connecting;
                true
            }
            _ => false,
        });
    }
}

/// The supervisor: connect, wait until the connection is reported broken, repeat.
async fn supervise(
    mut nodes: Nodes,
    state: Arc<watch::Sender<State>>,
    timeouts: Timeouts,
    redactor: Redactor,
) {
    let mut backoff = Backoff::new();
    let mut generation = 0_u64;
    // Log only transitions, never per attempt.
    let mut reported_down = false;
    loop {
        let error = match tokio::time::timeout(timeouts.connect, nodes.connect()).await {
            Ok(Ok(conn)) => {
                generation += 1;
                state.send_replace(State::Up { conn, generation });
                if reported_down {
                    tracing::info!("session store: redis connection restored");
                    reported_down = false;
                }
                let up_since = Instant::now();
                let mut watcher = state.subscribe();
                let _ = watcher
                    .wait_for(|state| !matches!(state, State::Up { generation: g, .. } if *g == generation))
                    .await;
                if up_since.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                    continue;
                }
                // It broke right after connecting: pause, failing fast meanwhile, rather
                // than reconnect in a tight loop.
                state.send_replace(State::Down(StoreError::Unavailable(
                    "redis connection keeps failing; reconnecting".into(),
                )));
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Ok(Err(error)) => redactor.error(&error),
            Err(_elapsed) => StoreError::Unavailable(format!(
                "could not connect within {} ms",
                timeouts.connect.as_millis()
            )),
        };
        if !reported_down {
            tracing::warn!(%error, "session store: redis unavailable; retrying in the background");
            reported_down = true;
        }
        state.send_replace(State::Down(error));
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

// === impl Backoff ===

impl Backoff {
    pub(super) fn new() -> Self {
        Self { next: MIN_BACKOFF }
    }

    pub(super) fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }

    /// The delay to wait now (±20 % jitter); doubles the next one, up to [`MAX_BACKOFF`].
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay.mul_f64(rand::random_range(0.8..1.2)).min(MAX_BACKOFF)
    }
}
