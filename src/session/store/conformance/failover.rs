//! A Sentinel failover: the store follows the promoted replica by itself.

use std::time::Duration;

use ::redis::Value;
use tokio::time::Instant;

use super::super::redis_server::RedisServer;
use super::super::{open, StoreEvent, StoreOptions};
use super::{
    assert_store_error, expect_event, expect_invalidated, poll_ok, poll_until, random_id,
    wait_subscribed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed() {
    let mut master = RedisServer::start().await;
    let replica = RedisServer::start_replica_of(&master).await;
    let linked = poll_until(Duration::from_secs(10), || async {
        text(replica.command(&[b"INFO", b"replication"]).await).contains("master_link_status:up")
    })
    .await;
    assert!(linked, "replica never linked to its master");
    let sentinel = RedisServer::start_sentinel(&master, Duration::from_millis(500)).await;
    let knows_replica = poll_until(Duration::from_secs(10), || async {
        matches!(
            sentinel.command(&[b"SENTINEL", b"REPLICAS", b"mymaster"]).await,
            Value::Array(replicas) if !replicas.is_empty()
        )
    })
    .await;
    assert!(knows_replica, "sentinel never discovered the replica");

    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port());
    let store = open(&url, StoreOptions::default()).unwrap();
    let other = open(&url, StoreOptions::default()).unwrap();
    poll_ok(&store, Duration::from_secs(5)).await;
    wait_subscribed(&store).await;
    let id = random_id();
    store
        .put(&id, b"survives", Duration::from_secs(60))
        .await
        .unwrap();
    let key = format!("gatehouse:s:{}", hex::encode(id));
    let replicated = poll_until(Duration::from_secs(5), || async {
        replica.command(&[b"GET", key.as_bytes()]).await != Value::Nil
    })
    .await;
    assert!(replicated, "record never reached the replica");
    let mut events = store.subscribe();

    master.stop();
    let killed = Instant::now();
    let started = Instant::now();
    assert_store_error(store.get(&id).await, "failover");
    assert!(started.elapsed() < Duration::from_secs(2));

    let followed = poll_until(Duration::from_secs(20), || async {
        matches!(store.get(&id).await, Ok(Some(record)) if record.as_ref() == b"survives")
    })
    .await;
    assert!(followed, "store never reached the promoted replica");
    eprintln!(
        "failover: reads from the new master {:?} after the kill",
        killed.elapsed()
    );
    store
        .put(&id, b"written after failover", Duration::from_secs(60))
        .await
        .unwrap();

    expect_event(
        &mut events,
        &StoreEvent::SubscriptionDown,
        Duration::from_secs(1),
        "failover",
    )
    .await;
    expect_event(
        &mut events,
        &StoreEvent::SubscriptionUp,
        Duration::from_secs(5),
        "failover",
    )
    .await;
    wait_subscribed(&other).await;
    poll_ok(&other, Duration::from_secs(5)).await;
    let mut on_other = other.subscribe();
    let id = random_id();
    store.publish_invalidation(&id).await.unwrap();
    expect_invalidated(&mut on_other, id, "failover").await;
}

fn text(value: Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}
