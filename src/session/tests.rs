//! [`Sessions`] over a store that fails on demand and whose subscription events the test
//! sends: what a cached session does while the store is down and when the subscription
//! comes back.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::broadcast;

use super::store::{LockToken, StoreHealth, StoreOptions};
use super::*;

/// The memory store, with `get` failing while `down`, never answering while `frozen`, and
/// subscription events from `events`.
struct Flaky {
    inner: Arc<dyn SessionStore>,
    down: AtomicBool,
    frozen: AtomicBool,
    events: broadcast::Sender<StoreEvent>,
}

#[async_trait::async_trait]
impl SessionStore for Flaky {
    async fn get(&self, id: &SessionId) -> Result<Option<bytes::Bytes>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("down for the test".into()));
        }
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.get(id).await
    }
    async fn put(&self, id: &SessionId, record: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.inner.put(id, record, ttl).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn put_code(&self, c: &[u8; 32], v: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.inner.put_code(c, v, ttl).await
    }
    async fn take_code(&self, c: &[u8; 32]) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.take_code(c).await
    }
    async fn try_lock(&self, n: &[u8], ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        self.inner.try_lock(n, ttl).await
    }
    async fn unlock(&self, n: &[u8], t: &LockToken) -> Result<(), StoreError> {
        self.inner.unlock(n, t).await
    }
    async fn publish_invalidation(&self, id: &SessionId) -> Result<(), StoreError> {
        let _ = self.events.send(StoreEvent::Invalidated(*id));
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
    fn health(&self) -> StoreHealth {
        StoreHealth {
            connected: !self.down.load(Ordering::SeqCst),
            subscribed: true,
        }
    }
    fn kind(&self) -> &'static str {
        "redis"
    }
}

fn record(now: SystemTime) -> SessionRecord {
    SessionRecord {
        version: 1,
        kind: SessionKind::Browser,
        subject: Subject {
            user_id: "https://idp.example|alice".into(),
            ..Subject::default()
        },
        issuer: "https://idp.example".into(),
        created_at: unix(now),
        expires_at: unix(now) + 3600,
        refreshed_at: unix(now),
        tokens: IdpTokens::default(),
    }
}

/// Sends `event` and waits until the listener has handled it (the next event is seen).
async fn deliver(store: &Flaky, event: StoreEvent) {
    let mut probe = store.events.subscribe();
    store.events.send(event.clone()).unwrap();
    while probe.recv().await.unwrap() != event {}
    // The listener task runs on the same runtime; let it take its turn.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Sessions over a working [`Flaky`] store, listening, with the subscription up.
async fn subscribed() -> (Arc<Flaky>, Arc<Sessions>) {
    let flaky = Arc::new(Flaky {
        inner: store::open("memory", StoreOptions::default()).unwrap(),
        down: AtomicBool::new(false),
        frozen: AtomicBool::new(false),
        events: broadcast::channel(16).0,
    });
    let sessions = Sessions::new(Arc::clone(&flaky) as Arc<dyn SessionStore>, 100);
    sessions.listen();
    deliver(&flaky, StoreEvent::SubscriptionUp).await;
    (flaky, sessions)
}

#[tokio::test]
async fn cached_sessions_survive_the_subscription_coming_back_before_the_store() {
    let (flaky, sessions) = subscribed().await;
    let now = SystemTime::now();
    let ticket = sessions.create(&record(now), now).await.unwrap();
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Found(_)
    ));
    assert!(sessions.load_cached(&ticket, now).is_some(), "cached");

    // The store goes away; invalidations may have been missed meanwhile. The subscription
    // comes back before commands work again: the cached copy is no longer trusted on its
    // own, but it still answers while the store cannot.
    flaky.down.store(true, Ordering::SeqCst);
    deliver(&flaky, StoreEvent::SubscriptionDown).await;
    deliver(&flaky, StoreEvent::SubscriptionUp).await;
    assert!(
        sessions.load_cached(&ticket, now).is_none(),
        "re-read after invalidations may have been missed"
    );
    assert!(
        matches!(sessions.load(&ticket, now).await, Lookup::Found(_)),
        "our outage must not turn a cached session into a 503"
    );

    // The store is back and the session was ended elsewhere (its invalidation missed): the
    // re-read says so, and no copy is left to fall back on in a later outage.
    flaky.down.store(false, Ordering::SeqCst);
    flaky.inner.delete(&ticket.id).await.unwrap();
    assert!(matches!(sessions.load(&ticket, now).await, Lookup::Missing));
    flaky.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Unavailable
    ));
}

#[tokio::test]
async fn an_unreadable_record_leaves_no_fallback() {
    let (flaky, sessions) = subscribed().await;
    let now = SystemTime::now();
    let ticket = sessions.create(&record(now), now).await.unwrap();
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Found(_)
    ));

    // The record is overwritten with junk and the change missed; once re-read it is no
    // session, and an outage afterwards must not bring the old copy back.
    flaky
        .inner
        .put(&ticket.id, b"junk", Duration::from_secs(60))
        .await
        .unwrap();
    deliver(&flaky, StoreEvent::SubscriptionUp).await;
    assert!(matches!(sessions.load(&ticket, now).await, Lookup::Missing));
    flaky.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Unavailable
    ));
}

#[tokio::test]
async fn after_a_failure_a_frozen_store_costs_a_cached_session_only_the_short_wait() {
    let (flaky, sessions) = subscribed().await;
    let now = SystemTime::now();
    let ticket = sessions.create(&record(now), now).await.unwrap();
    let other = sessions.create(&record(now), now).await.unwrap();
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Found(_)
    ));
    assert!(matches!(sessions.load(&other, now).await, Lookup::Found(_)));
    // Invalidations may have been missed: cached copies are re-read from now on.
    deliver(&flaky, StoreEvent::SubscriptionDown).await;
    deliver(&flaky, StoreEvent::SubscriptionUp).await;

    // One read fails; the store then hangs instead of failing (SIGSTOP).
    flaky.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        sessions.load(&ticket, now).await,
        Lookup::Found(_)
    ));
    flaky.down.store(false, Ordering::SeqCst);
    flaky.frozen.store(true, Ordering::SeqCst);
    let answer = tokio::time::timeout(Duration::from_millis(500), sessions.load(&other, now))
        .await
        .expect("a cached session waited for a frozen store");
    assert!(matches!(answer, Lookup::Found(_)));

    // Answers still win: the store is back and the session was ended elsewhere.
    flaky.frozen.store(false, Ordering::SeqCst);
    flaky.inner.delete(&other.id).await.unwrap();
    assert!(matches!(sessions.load(&other, now).await, Lookup::Missing));
}
