//! The invalidation subscription: a dedicated pub/sub connection, kept up by a background
//! task, that turns messages on `{prefix}invalidate` into [`StoreEvent::Invalidated`].
//!
//! A loss is noticed when the server closes the connection, or within about
//! [`HEARTBEAT`] + `op_timeout` when it silently stops answering (a PING goes out every
//! [`HEARTBEAT`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::PubSub;
use ::redis::Value;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::link::{Backoff, STABLE_AFTER};
use super::nodes::Nodes;
use super::{Redactor, Timeouts};
use crate::session::store::{SessionId, StoreEvent};

/// How often the subscription connection is checked.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Keeps a subscription to `channel` up for as long as the store lives (the task is aborted
/// when the store is dropped).
pub(super) async fn run(
    mut nodes: Nodes,
    channel: Vec<u8>,
    events: broadcast::Sender<StoreEvent>,
    subscribed: Arc<AtomicBool>,
    timeouts: Timeouts,
    redactor: Redactor,
) {
    let mut backoff = Backoff::new();
    // Which cluster seed node to try; moves on after every failure.
    let mut attempt = 0_usize;
    let mut reported_failure = false;
    loop {
        let connecting = async {
            let mut pubsub = nodes.pubsub(attempt).await?;
            pubsub.subscribe(channel.as_slice()).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(timeouts.connect, connecting).await {
            Ok(Ok(pubsub)) => {
                reported_failure = false;
                subscribed.store(true, Ordering::Relaxed);
                let _ = events.send(StoreEvent::SubscriptionUp);
                tracing::info!("session store: invalidation subscription up");
                let up_since = Instant::now();
                let reason = listen(pubsub, &events, timeouts.op).await;
                subscribed.store(false, Ordering::Relaxed);
                let _ = events.send(StoreEvent::SubscriptionDown);
                tracing::warn!(
                    reason,
                    "session store: invalidation subscription lost; resubscribing"
                );
                attempt = attempt.wrapping_add(1);
                if up_since.elapsed() >= STABLE_AFTER {
                    // It was healthy until now: resubscribe at once.
                    backoff.reset();
                    continue;
                }
                // Lost right after subscribing: back off rather than flap in a tight loop.
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Ok(Err(error)) => {
                if !reported_failure {
                    tracing::warn!(error = %redactor.error(&error), "session store: cannot subscribe to invalidations; retrying");
                    reported_failure = true;
                }
            }
            Err(_elapsed) => {
                if !reported_failure {
                    tracing::warn!(
                        "session store: subscribing to invalidations timed out; retrying"
                    );
                    reported_failure = true;
                }
            }
        }
        attempt = attempt.wrapping_add(1);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Forwards messages until the connection is lost; returns why.
async fn listen(
    pubsub: PubSub,
    events: &broadcast::Sender<StoreEvent>,
    op_timeout: Duration,
) -> &'static str {
    let (mut sink, mut stream) = pubsub.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "connection closed";
                };
                // Anything that is not an id is ignored: the channel is not authenticated
                // beyond Redis access, and a bad message must not stop the listener.
                if let Some(id) = decode(message.get_payload_bytes()) {
                    let _ = events.send(StoreEvent::Invalidated(id));
                }
            }
            _ = heartbeat.tick() => {
                match tokio::time::timeout(op_timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "heartbeat failed",
                    Err(_) => return "heartbeat timed out",
                }
            }
        }
    }
}

/// A message payload: the 16 raw id bytes, or their 32 hex digits.
fn decode(payload: &[u8]) -> Option<SessionId> {
    match payload.len() {
        16 => payload.try_into().ok(),
        32 => {
            let mut id = [0_u8; 16];
            hex::decode_to_slice(payload, &mut id).ok()?;
            Some(id)
        }
        _ => None,
    }
}
