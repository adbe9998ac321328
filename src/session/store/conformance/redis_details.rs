//! What only the Redis store has: its key layout, the channel's message format, passwords,
//! the subscription's heartbeat and the release of its connections.

use std::time::Duration;

use ::redis::Value;

use super::super::redis_server::RedisServer;
use super::super::{open, StoreError, StoreEvent, StoreOptions};
use super::{expect_invalidated, poll_ok, poll_until, random_id, wait_subscribed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_and_code_cap() {
    let server = RedisServer::start().await;
    let options = StoreOptions {
        key_prefix: "gh-test:".into(),
        ..StoreOptions::default()
    };
    let store = open(&server.url(), options).unwrap();

    let id = [0xab_u8; 16];
    store
        .put(&id, b"record", Duration::from_secs(60))
        .await
        .unwrap();
    let key = format!("gh-test:s:{}", hex::encode(id));
    assert_eq!(
        server.command(&[b"GET", key.as_bytes()]).await,
        Value::BulkString(b"record".to_vec())
    );

    let code = [0xcd_u8; 32];
    store
        .put_code(&code, b"c", Duration::from_secs(3600))
        .await
        .unwrap();
    let key = format!("gh-test:c:{}", hex::encode(code));
    let Value::Int(pttl) = server.command(&[b"PTTL", key.as_bytes()]).await else {
        panic!("PTTL is not an integer");
    };
    assert!(
        (1..=60_000).contains(&pttl),
        "code TTL {pttl} ms above the 60 s cap"
    );

    let token = store
        .try_lock(b"refresh", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let key = format!("gh-test:l:{}", hex::encode(b"refresh"));
    assert_eq!(
        server.command(&[b"GET", key.as_bytes()]).await,
        Value::BulkString(token.as_bytes().to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_key_of_another_type_reads_as_absent() {
    let server = RedisServer::start().await;
    let store = open(&server.url(), StoreOptions::default()).unwrap();
    let id = random_id();
    let key = format!("gatehouse:s:{}", hex::encode(id));
    server
        .command(&[b"HSET", key.as_bytes(), b"field", b"value"])
        .await;
    poll_ok(&store, Duration::from_secs(5)).await;
    assert_eq!(store.get(&id).await, Ok(None));
    // The store stays usable, and a new record replaces the foreign value.
    store
        .put(&id, b"record", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().as_deref(),
        Some(&b"record"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_ignored_and_hex_accepted() {
    let server = RedisServer::start().await;
    let store = open(&server.url(), StoreOptions::default()).unwrap();
    wait_subscribed(&store).await;
    let mut events = store.subscribe();
    let channel = b"gatehouse:invalidate";
    for junk in [
        &b""[..],
        b"short",
        &[0_u8; 17],
        b"zz000000000000000000000000000000",
    ] {
        server.command(&[b"PUBLISH", channel, junk]).await;
    }
    let id = random_id();
    server
        .command(&[b"PUBLISH", channel, hex::encode(id).as_bytes()])
        .await;
    // The first event is the valid one: nothing was made of the junk, and the
    // subscription survived it.
    let first = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
    assert_eq!(first.unwrap().unwrap(), StoreEvent::Invalidated(id));
    let id = random_id();
    server.command(&[b"PUBLISH", channel, &id]).await;
    expect_invalidated(&mut events, id, "raw id").await;
    assert!(store.health().subscribed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_outlives_heartbeats() {
    let server = RedisServer::start().await;
    let pair = super::pair(&server.url());
    wait_subscribed(&pair.a).await;
    wait_subscribed(&pair.b).await;
    let mut events = pair.b.subscribe();
    // Several heartbeats (1 s apart) go by without a hiccup.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(events.try_recv().is_err(), "no event expected while idle");
    let id = random_id();
    pair.a.publish_invalidation(&id).await.unwrap();
    expect_invalidated(&mut events, id, "after heartbeats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_work_and_never_leak() {
    let secret = "s3cret-Pa55";
    let server = RedisServer::start_args(&["--requirepass", secret]).await;
    let port = server.port();
    for url in [
        format!("redis://:{secret}@127.0.0.1:{port}"),
        format!("redis://default:{secret}@127.0.0.1:{port}/1"),
    ] {
        let store = open(&url, StoreOptions::default()).unwrap();
        poll_ok(&store, Duration::from_secs(5)).await;
        wait_subscribed(&store).await;
    }
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis://:wrong-{secret}@127.0.0.1:{port}"),
    ] {
        let store = open(&url, StoreOptions::default()).unwrap();
        let error = store.get(&random_id()).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Unavailable(_) | StoreError::Protocol(_)),
            "{error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "password in {shown:?}");
        eprintln!("bad credentials: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_closes_its_connections() {
    let server = RedisServer::start().await;
    let clients = || async {
        let Value::BulkString(info) = server.command(&[b"INFO", b"clients"]).await else {
            panic!("INFO is not a string");
        };
        let info = String::from_utf8(info).unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("connected_clients:"))
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    // Our own probe connection counts as one.
    let baseline = clients().await;
    let store = open(&server.url(), StoreOptions::default()).unwrap();
    poll_ok(&store, Duration::from_secs(5)).await;
    wait_subscribed(&store).await;
    assert_eq!(
        clients().await,
        baseline + 2,
        "one command and one subscription connection"
    );
    drop(store);
    let closed = poll_until(Duration::from_secs(3), || async {
        clients().await == baseline
    })
    .await;
    assert!(closed, "connections still open after drop");
}
