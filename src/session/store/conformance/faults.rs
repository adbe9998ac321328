//! Redis down, coming back, never there, or not Redis at all: every operation stays bounded,
//! and the store recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::super::redis_server::{free_port, RedisCluster, RedisServer, TestCa};
use super::super::{open, SessionStore, StoreError, StoreEvent, StoreOptions};
use super::{
    assert_store_error, expect_event, expect_invalidated, poll_ok, random_id, wait_subscribed,
};

/// Bound asserted on every failing operation (op_timeout is 1 s).
const FAIL_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_outage_and_recovery() {
    let mut server = RedisServer::start().await;
    let url = server.url();
    let store = open(&url, StoreOptions::default()).unwrap();
    let other = open(&url, StoreOptions::default()).unwrap();
    outage_and_recovery("standalone", &store, &other, Target::Server(&mut server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_outage_and_recovery() {
    let mut master = RedisServer::start().await;
    let sentinel = RedisServer::start_sentinel(&master, Duration::from_secs(60)).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port());
    let store = open(&url, StoreOptions::default()).unwrap();
    let other = open(&url, StoreOptions::default()).unwrap();
    outage_and_recovery("sentinel", &store, &other, Target::Server(&mut master)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_outage_and_recovery() {
    let mut cluster = RedisCluster::start().await;
    let url = cluster.url();
    let store = open(&url, StoreOptions::default()).unwrap();
    let other = open(&url, StoreOptions::default()).unwrap();
    wait_subscribed(&store).await;

    // Losing the node the subscription is on: it moves to another seed node.
    let mut events = store.subscribe();
    cluster.nodes[0].stop();
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionDown,
        Duration::from_secs(3),
        "cluster: node 0 lost",
    )
    .await;
    let took = expect_event(
        &mut events,
        &StoreEvent::SubscriptionUp,
        Duration::from_secs(3),
        "cluster: moved",
    )
    .await;
    eprintln!("cluster: subscription moved to another node in {took:?}");
    cluster.nodes[0].restart().await;
    cluster.wait_ok().await;

    outage_and_recovery("cluster", &store, &other, Target::Cluster(&mut cluster)).await;
}

/// The shared outage scenario: stop → bounded failures and `SubscriptionDown`; restart on
/// the same port → commands, `SubscriptionUp` and cross-instance invalidation come back,
/// with the same store objects.
async fn outage_and_recovery(
    case: &str,
    store: &Arc<dyn SessionStore>,
    other: &Arc<dyn SessionStore>,
    mut target: Target<'_>,
) {
    wait_subscribed(store).await;
    wait_subscribed(other).await;
    let id = random_id();
    poll_ok(store, Duration::from_secs(5)).await;
    store
        .put(&id, b"before", Duration::from_secs(60))
        .await
        .unwrap();
    let mut events = store.subscribe();

    target.stop();
    let stopped = Instant::now();
    let mut slowest = Duration::ZERO;
    for attempt in 0..10 {
        let started = Instant::now();
        assert_store_error(store.get(&id).await, case);
        let took = started.elapsed();
        assert!(
            took < FAIL_WITHIN,
            "{case}: failing op #{attempt} took {took:?}"
        );
        if attempt == 0 {
            eprintln!("{case}: first operation after the kill failed in {took:?}");
        }
        slowest = slowest.max(took);
    }
    eprintln!("{case}: slowest of 10 failing operations: {slowest:?}");
    let started = Instant::now();
    assert_store_error(store.publish_invalidation(&id).await, case);
    assert!(started.elapsed() < FAIL_WITHIN);
    assert!(
        !store.health().connected,
        "{case}: health still says connected"
    );
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionDown,
        Duration::from_secs(3),
        case,
    )
    .await;
    eprintln!(
        "{case}: SubscriptionDown seen {:?} after the kill",
        stopped.elapsed()
    );
    assert!(!store.health().subscribed);

    target.restart().await;
    let restarted = Instant::now();
    poll_ok(store, Duration::from_secs(10)).await;
    eprintln!(
        "{case}: commands back {:?} after the restart",
        restarted.elapsed()
    );
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionUp,
        Duration::from_secs(5),
        case,
    )
    .await;
    eprintln!(
        "{case}: SubscriptionUp {:?} after the restart",
        restarted.elapsed()
    );
    wait_subscribed(other).await;
    poll_ok(other, Duration::from_secs(5)).await;
    let mut on_other = other.subscribe();
    let id = random_id();
    store.publish_invalidation(&id).await.unwrap();
    expect_invalidated(&mut on_other, id, case).await;
    assert!(store.health().connected && store.health().subscribed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_is_detected_and_recovered() {
    let server = RedisServer::start().await;
    let store = open(&server.url(), StoreOptions::default()).unwrap();
    poll_ok(&store, Duration::from_secs(5)).await;
    wait_subscribed(&store).await;
    let mut events = store.subscribe();

    // Frozen: connections stay open but nothing answers.
    server.pause();
    let paused = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        assert_store_error(store.get(&random_id()).await, "hung");
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("hung: slowest of 5 failing operations: {slowest:?}");
    assert!(slowest < FAIL_WITHIN, "hung: an operation took {slowest:?}");
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionDown,
        Duration::from_secs(4),
        "hung",
    )
    .await;
    eprintln!(
        "hung: SubscriptionDown {:?} after the freeze",
        paused.elapsed()
    );

    server.resume();
    let resumed = Instant::now();
    poll_ok(&store, Duration::from_secs(5)).await;
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionUp,
        Duration::from_secs(5),
        "hung",
    )
    .await;
    eprintln!(
        "hung: commands and subscription back {:?} after thawing",
        resumed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_while_redis_is_down() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let store = open(&url, StoreOptions::default()).unwrap();
    let mut events = store.subscribe();
    let id = random_id();
    for _ in 0..5 {
        let started = Instant::now();
        assert_store_error(
            store.put(&id, b"x", Duration::from_secs(60)).await,
            "down at open",
        );
        assert!(started.elapsed() < FAIL_WITHIN);
    }
    assert!(!store.health().connected && !store.health().subscribed);

    // Redis appears on that port later: the same store starts working.
    let _server = RedisServer::start_on(port).await;
    let appeared = Instant::now();
    poll_ok(&store, Duration::from_secs(5)).await;
    eprintln!(
        "open while down: usable {:?} after Redis appeared",
        appeared.elapsed()
    );
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionUp,
        Duration::from_secs(3),
        "down at open",
    )
    .await;
    store.put(&id, b"x", Duration::from_secs(60)).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().as_deref(), Some(&b"x"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_server_fails_fast() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0
                        || socket
                            .write_all(b"HTTP/1.1 200 OK\r\n\r\nhello")
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis+cluster://127.0.0.1:{port}"),
        format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
    ] {
        assert_bounded_failures(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_fails_within_timeout() {
    // Accepts connections and never answers (a hung Redis, a black hole behind a proxy).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    assert_bounded_failures(&format!("redis://127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verification() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::create(dir.path());
    let server = RedisServer::start_tls(&ca).await;
    let port = server.port();

    // A certificate from an unknown CA is refused, boundedly.
    assert_bounded_failures(&format!("rediss://127.0.0.1:{port}")).await;
    // Plain text against a TLS port fails boundedly too.
    assert_bounded_failures(&format!("redis://127.0.0.1:{port}")).await;

    // Trusted by name and by IP, and with verification off.
    for url in [
        format!(
            "rediss://localhost:{port}?tls_ca_file={}",
            ca.ca_file.display()
        ),
        format!("rediss://127.0.0.1:{port}?tls_skip_verify=true"),
    ] {
        let store = open(&url, StoreOptions::default()).unwrap();
        poll_ok(&store, Duration::from_secs(5)).await;
        wait_subscribed(&store).await;
    }
}

#[test]
fn open_needs_a_runtime_for_redis() {
    let outside = open("redis://127.0.0.1:6379", StoreOptions::default());
    assert!(
        matches!(outside, Err(StoreError::Config(_))),
        "outside a runtime: Config error"
    );
    assert!(
        open("memory", StoreOptions::default()).is_ok(),
        "memory needs no runtime"
    );

    // With an explicit runtime handle it works from anywhere, and the operations may run on
    // other runtimes (as on Pingora's per-service runtimes).
    let background = tokio::runtime::Runtime::new().unwrap();
    let server = background.block_on(RedisServer::start());
    let options = StoreOptions {
        runtime: Some(background.handle().clone()),
        ..StoreOptions::default()
    };
    let store = open(&server.url(), options).unwrap();
    let elsewhere = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    elsewhere.block_on(async {
        poll_ok(&store, Duration::from_secs(5)).await;
        let id = random_id();
        store
            .put(&id, b"across runtimes", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.get(&id).await.unwrap().as_deref(),
            Some(&b"across runtimes"[..])
        );
        wait_subscribed(&store).await;
    });
    drop(store);
    drop(server);
}

#[tokio::test]
async fn zero_timeout_is_rejected() {
    let options = StoreOptions {
        op_timeout: Duration::ZERO,
        ..StoreOptions::default()
    };
    assert!(matches!(
        open("memory", options),
        Err(StoreError::Config(_))
    ));
}

// === helpers ===

/// What an outage test stops and restarts.
enum Target<'a> {
    Server(&'a mut RedisServer),
    Cluster(&'a mut RedisCluster),
}

impl Target<'_> {
    fn stop(&mut self) {
        match self {
            Self::Server(server) => server.stop(),
            Self::Cluster(cluster) => cluster.nodes.iter_mut().for_each(RedisServer::stop),
        }
    }

    async fn restart(&mut self) {
        match self {
            Self::Server(server) => server.restart().await,
            Self::Cluster(cluster) => {
                for node in &mut cluster.nodes {
                    node.restart().await;
                }
            }
        }
    }
}

/// Every operation against `url` fails with a store error in less than [`FAIL_WITHIN`].
async fn assert_bounded_failures(url: &str) {
    let store = open(url, StoreOptions::default()).unwrap();
    let id = random_id();
    let code: [u8; 32] = rand::random();
    for round in 0..3 {
        let started = Instant::now();
        let first = store.get(&id).await;
        if round == 0 {
            eprintln!("{url}: first error: {first:?}");
        }
        assert_store_error(first, url);
        assert_store_error(store.put(&id, b"x", Duration::from_secs(1)).await, url);
        assert_store_error(store.delete(&id).await, url);
        assert_store_error(
            store.put_code(&code, b"x", Duration::from_secs(1)).await,
            url,
        );
        assert_store_error(store.take_code(&code).await, url);
        assert_store_error(store.try_lock(b"lease", Duration::from_secs(1)).await, url);
        assert_store_error(store.publish_invalidation(&id).await, url);
        let took = started.elapsed();
        eprintln!("{url}: round {round}: 7 failing operations in {took:?}");
        // The first round may wait out the first connection attempt; after that the
        // store knows it is down and fails at once.
        let bound = if round == 0 {
            FAIL_WITHIN * 4
        } else {
            FAIL_WITHIN
        };
        assert!(took < bound, "{url}: round {round} took {took:?}");
    }
    assert!(!store.health().subscribed);
}

/// Redis restarted while this store was idle: its command connection broke unnoticed. The
/// first operation afterwards must still succeed (one retry on a fresh connection within the
/// timeout), not fail and leave the recovery to the next caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_operation_after_an_idle_restart_succeeds() {
    let mut server = RedisServer::start_persistent().await;
    let store = open(&server.url(), StoreOptions::default()).unwrap();
    let id = random_id();
    poll_ok(&store, Duration::from_secs(5)).await;
    store
        .put(&id, b"kept", Duration::from_secs(60))
        .await
        .unwrap();
    // The condition under test is a connection that had been healthy (idle) when Redis went
    // away; younger ones are treated as flapping and back off. Time itself is the input here.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    server.restart().await;
    let got = store.get(&id).await;
    assert_eq!(got, Ok(Some(bytes::Bytes::from_static(b"kept"))));
}
