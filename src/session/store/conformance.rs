//! One conformance suite, run against every store: memory, Redis standalone (plain and TLS),
//! Sentinel and Cluster, each a real `redis-server` started by the test. Then what only a
//! networked store can get wrong: outages, recovery, garbage answers, URLs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::redis_server::{RedisCluster, RedisServer, TestCa};
use super::{open, SessionId, SessionStore, StoreError, StoreEvent, StoreOptions};

mod failover;
mod faults;
mod redis_details;
mod urls;

/// Two instances of one store: for Redis two independent `open`s of the same URL (two
/// gatehouse instances), for memory two handles on the same store.
struct Pair {
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
}

// === the suite ===

/// Runs every case; they use distinct random keys, so they run concurrently and the slow
/// ones (TTLs) overlap.
async fn suite(pair: &Pair) {
    wait_subscribed(&pair.a).await;
    wait_subscribed(&pair.b).await;
    tokio::join!(
        records(pair),
        record_expiry(pair),
        codes(pair),
        code_expiry(pair),
        code_race(pair),
        locks(pair),
        lock_expiry(pair),
        invalidation(pair),
    );
}

async fn records(pair: &Pair) {
    let Pair { a, b } = pair;
    let id = random_id();
    assert_eq!(a.get(&id).await.unwrap(), None, "records: absent at first");
    a.put(&id, b"first", Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        b.get(&id).await.unwrap().as_deref(),
        Some(&b"first"[..]),
        "records: put/get"
    );
    b.put(&id, b"second", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        a.get(&id).await.unwrap().as_deref(),
        Some(&b"second"[..]),
        "records: overwrite"
    );
    let big = vec![0xa5_u8; 64 * 1024];
    a.put(&id, &big, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        b.get(&id).await.unwrap().as_deref(),
        Some(big.as_slice()),
        "records: 64 KiB"
    );
    a.put(&id, b"", Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        b.get(&id).await.unwrap().as_deref(),
        Some(&b""[..]),
        "records: empty record"
    );
    b.delete(&id).await.unwrap();
    assert_eq!(a.get(&id).await.unwrap(), None, "records: delete");
    a.delete(&id).await.unwrap();
}

async fn record_expiry(pair: &Pair) {
    let Pair { a, b } = pair;
    let id = random_id();
    let start = Instant::now();
    a.put(&id, b"short-lived", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        b.get(&id).await.unwrap().is_some(),
        "record_expiry: present after put"
    );
    let gone = poll_until(Duration::from_secs(4), || async {
        b.get(&id).await.unwrap().is_none()
    })
    .await;
    assert!(gone, "record_expiry: still there 4 s after a 1 s TTL");
    let lived = start.elapsed();
    assert!(
        lived >= Duration::from_millis(900),
        "record_expiry: gone too early ({lived:?})"
    );
    // Zero TTL is accepted (rounded up to 1 ms) and the entry is gone at once.
    let id = random_id();
    a.put(&id, b"x", Duration::ZERO).await.unwrap();
    let gone = poll_until(Duration::from_secs(1), || async {
        b.get(&id).await.unwrap().is_none()
    })
    .await;
    assert!(gone, "record_expiry: zero TTL");
}

async fn codes(pair: &Pair) {
    let Pair { a, b } = pair;
    let code: [u8; 32] = rand::random();
    assert!(
        a.put_code(&code, b"one", Duration::from_secs(30))
            .await
            .unwrap(),
        "codes: first put"
    );
    assert!(
        !b.put_code(&code, b"two", Duration::from_secs(30))
            .await
            .unwrap(),
        "codes: second put must fail"
    );
    assert_eq!(
        b.take_code(&code).await.unwrap().as_deref(),
        Some(&b"one"[..]),
        "codes: take"
    );
    assert_eq!(
        a.take_code(&code).await.unwrap(),
        None,
        "codes: taken once only"
    );
    assert_eq!(
        a.take_code(&rand::random()).await.unwrap(),
        None,
        "codes: unknown code"
    );
    // A TTL above the 60 s cap is accepted (and shortened).
    let code: [u8; 32] = rand::random();
    assert!(a
        .put_code(&code, b"capped", Duration::from_secs(3600))
        .await
        .unwrap());
    assert_eq!(
        b.take_code(&code).await.unwrap().as_deref(),
        Some(&b"capped"[..])
    );
}

async fn code_expiry(pair: &Pair) {
    let Pair { a, b } = pair;
    let code: [u8; 32] = rand::random();
    let start = Instant::now();
    assert!(a
        .put_code(&code, b"old", Duration::from_secs(1))
        .await
        .unwrap());
    // Once expired, the code is absent again: put_code succeeds (readiness-style poll).
    let replaced = poll_until(Duration::from_secs(4), || async {
        b.put_code(&code, b"new", Duration::from_secs(30))
            .await
            .unwrap()
    })
    .await;
    assert!(replaced, "code_expiry: code did not expire");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "code_expiry: expired too early"
    );
    assert_eq!(
        a.take_code(&code).await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

async fn code_race(pair: &Pair) {
    let Pair { a, b } = pair;
    for round in 0..20 {
        let code: [u8; 32] = rand::random();
        assert!(a
            .put_code(&code, b"v", Duration::from_secs(30))
            .await
            .unwrap());
        let (from_a, from_b) = tokio::join!(a.take_code(&code), b.take_code(&code));
        let winners = [from_a.unwrap(), from_b.unwrap()].iter().flatten().count();
        assert_eq!(winners, 1, "code_race: round {round}: {winners} winners");
    }
}

async fn locks(pair: &Pair) {
    let Pair { a, b } = pair;
    let name = random_id();
    let held = a
        .try_lock(&name, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("locks: acquire");
    assert!(
        b.try_lock(&name, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "locks: exclusive"
    );
    assert!(
        a.try_lock(&name, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "locks: not reentrant"
    );
    // Someone else's token releases nothing.
    b.unlock(&name, &super::LockToken::random()).await.unwrap();
    assert!(
        b.try_lock(&name, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "locks: foreign unlock"
    );
    b.unlock(&name, &held).await.unwrap();
    let next = b
        .try_lock(&name, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("locks: after unlock");
    assert_ne!(next, held, "locks: fresh token");
    // The old holder's late unlock must not release the new holder's lease.
    a.unlock(&name, &held).await.unwrap();
    assert!(
        a.try_lock(&name, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "locks: stale unlock"
    );
    b.unlock(&name, &next).await.unwrap();
}

async fn lock_expiry(pair: &Pair) {
    let Pair { a, b } = pair;
    let name = random_id();
    let start = Instant::now();
    let old = a
        .try_lock(&name, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("lock_expiry: acquire");
    let deadline = Instant::now() + Duration::from_secs(4);
    let taken = loop {
        if let Some(token) = b.try_lock(&name, Duration::from_secs(30)).await.unwrap() {
            break Some(token);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let expired = taken.is_some();
    assert!(expired, "lock_expiry: lease never expired");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "lock_expiry: expired too early"
    );
    a.unlock(&name, &old).await.unwrap();
    assert!(
        a.try_lock(&name, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none(),
        "lock_expiry: taken over"
    );
    if let Some(token) = taken {
        b.unlock(&name, &token).await.unwrap();
    }
}

async fn invalidation(pair: &Pair) {
    let Pair { a, b } = pair;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let id = random_id();
    a.publish_invalidation(&id).await.unwrap();
    expect_invalidated(&mut on_b, id, "invalidation: other instance").await;
    expect_invalidated(&mut on_a, id, "invalidation: publishing instance").await;
    let id = random_id();
    b.publish_invalidation(&id).await.unwrap();
    expect_invalidated(&mut on_a, id, "invalidation: reverse direction").await;
}

// === the suite against each store ===

#[tokio::test]
async fn memory_conforms() {
    let store = open("memory", StoreOptions::default()).unwrap();
    assert_eq!(store.kind(), "memory");
    suite(&Pair {
        a: store.clone(),
        b: store,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_standalone_conforms() {
    let server = RedisServer::start().await;
    let pair = pair(&server.url());
    assert_eq!(pair.a.kind(), "redis");
    suite(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::create(dir.path());
    let server = RedisServer::start_tls(&ca).await;
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca_file={}",
        server.port(),
        ca.ca_file.display()
    );
    suite(&pair(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_conforms() {
    let master = RedisServer::start().await;
    let sentinel = RedisServer::start_sentinel(&master, Duration::from_secs(60)).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port());
    suite(&pair(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_conforms() {
    let cluster = RedisCluster::start().await;
    suite(&pair(&cluster.url())).await;
}

// === helpers ===

fn pair(url: &str) -> Pair {
    Pair {
        a: open(url, StoreOptions::default()).unwrap(),
        b: open(url, StoreOptions::default()).unwrap(),
    }
}

fn random_id() -> SessionId {
    rand::random()
}

/// Calls `check` every 50 ms until it returns true or `within` has passed.
async fn poll_until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `store` receives invalidations from others (publications before that are
/// lost).
async fn wait_subscribed(store: &Arc<dyn SessionStore>) {
    let up = poll_until(Duration::from_secs(5), || async {
        store.health().subscribed
    })
    .await;
    assert!(up, "subscription not up within 5 s");
}

/// Polls a put until it succeeds.
async fn poll_ok(store: &Arc<dyn SessionStore>, within: Duration) {
    let id = random_id();
    let ok = poll_until(within, || async {
        store
            .put(&id, b"probe", Duration::from_secs(5))
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "store not usable within {within:?}");
}

/// Waits up to 1 s for `Invalidated(id)`, skipping other events.
async fn expect_invalidated(
    events: &mut broadcast::Receiver<StoreEvent>,
    id: SessionId,
    case: &str,
) {
    let wanted = StoreEvent::Invalidated(id);
    expect_event(events, &wanted, Duration::from_secs(1), case).await;
}

/// Waits up to `within` for `wanted`, skipping other events; returns the time it took.
async fn expect_event(
    events: &mut broadcast::Receiver<StoreEvent>,
    wanted: &StoreEvent,
    within: Duration,
    case: &str,
) -> Duration {
    let start = Instant::now();
    let found = tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(event) if event == *wanted => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("{case}: event channel closed"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "{case}: no {wanted:?} within {within:?}");
    start.elapsed()
}

/// Asserts `result` is an `Unavailable` or `Protocol` error (never a hang, never success).
fn assert_store_error<T: std::fmt::Debug>(result: Result<T, StoreError>, case: &str) {
    match result {
        Err(StoreError::Unavailable(_) | StoreError::Protocol(_)) => {}
        other => panic!("{case}: expected Unavailable or Protocol, got {other:?}"),
    }
}
