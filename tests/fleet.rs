//! A fleet: two gatehouse processes sharing one real Redis (standalone, then a three-master
//! Redis Cluster). A login through A works through B; a sign-out through B is refused by A
//! within a second; with Redis stopped a cached session keeps working and an uncached one
//! gets 503 with its cookie kept; with Redis back everything recovers without restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../src/session/store/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::{net::SocketAddr, time::Duration};

use redis_server::{RedisCluster, RedisServer};
use support::{
    free_addr,
    idp::{hidden_input, Browser, ClientSpec, Idp},
    poll_until, Gatehouse, Upstream,
};

const CLIENT_ID: &str = "gatehouse-fleet";
const CLIENT_SECRET: &str = "fleet-secret";
const COOKIE_SECRET: &str = "BiedRsPouHIeW0oHTf1KvXmN+49vlmIxD9Y5RGA0vHI=";
const SIGNING_KEY: &str = "  -----BEGIN PRIVATE KEY-----
  MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKdJPFlBnwPfsXTnD
  Am4JNNB+9R0tN7Xw087IANG9RUOhRANCAAS7CPo86iSMrSaxQVwRghAwNL3ZsZFR
  jJNAotrhOBK73PQmy4s4X1eLIXnUJdwzlCAd2vvNjY8MVNLVZFVfg+SN
  -----END PRIVATE KEY-----";

struct Fleet {
    _idp: Idp,
    a: Gatehouse,
    b: Gatehouse,
    _upstream: Upstream,
    origin_a: String,
    origin_b: String,
}

async fn fleet(store_url: &str) -> Fleet {
    let (addr_a, addr_b): (SocketAddr, SocketAddr) = (free_addr(), free_addr());
    let (origin_a, origin_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: &[origin_a.clone(), origin_b.clone()],
        },
        &[],
    );
    let upstream = Upstream::start("app").await;
    let config = |origin: &str| {
        format!(
            "insecure_server: true
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
signing_key: |
{SIGNING_KEY}
session_store: {store_url}
routes:
  - from: {origin}
    to: {up}
    allow_any_authenticated_user: true
",
            issuer = idp.issuer,
            up = upstream.url(),
        )
    };
    let a = Gatehouse::start_at(addr_a, &config(&origin_a)).await;
    let b = Gatehouse::start_at(addr_b, &config(&origin_b)).await;
    Fleet {
        _idp: idp,
        a,
        b,
        _upstream: upstream,
        origin_a,
        origin_b,
    }
}

async fn status(browser: &Browser, url: &str) -> u16 {
    browser
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What goes down and comes back.
enum Outage<'a> {
    /// A persistent server killed and started again on its port.
    Restart(&'a mut RedisServer),
    /// Every cluster node frozen (SIGSTOP) and thawed.
    Freeze(&'a RedisCluster),
}

impl Outage<'_> {
    fn stop(&mut self) {
        match self {
            Outage::Restart(server) => server.stop(),
            Outage::Freeze(cluster) => cluster.nodes.iter().for_each(RedisServer::pause),
        }
    }

    async fn start(&mut self) {
        match self {
            Outage::Restart(server) => server.restart().await,
            Outage::Freeze(cluster) => {
                cluster.nodes.iter().for_each(RedisServer::resume);
                cluster.wait_ok().await;
            }
        }
    }
}

/// Runs the fleet scenario on `store_url`, with `outage` taking the store down and back.
async fn scenario(store_url: &str, mut outage: Outage<'_>) {
    let f = fleet(store_url).await;
    let app_a = format!("{}/app", f.origin_a);
    let app_b = format!("{}/app", f.origin_b);

    // Login through A works through B (cookies ignore ports: one jar serves both).
    let alice = Browser::new();
    let page = alice.login(&app_a, "alice", "alice").await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", f.a.log());
    assert_eq!(status(&alice, &app_b).await, 200, "{}", f.b.log());

    // Sign-out through B: A refuses the same cookie within a second.
    let page = alice.open(&format!("{}/.gatehouse/", f.origin_b)).await;
    let csrf = hidden_input(&page.body, "csrf").expect("csrf");
    let r = alice
        .post_form(
            &format!("{}/.gatehouse/sign_out", f.origin_b),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 302);
    // The browser's cookie was cleared by B; replay the old one explicitly on A.
    let refused = poll_until(Duration::from_secs(1), || async {
        (status(&alice, &app_a).await == 302).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "A still accepts a session signed out on B"
    );

    // Two sessions: `cached` used on A, `uncached` only ever seen by B.
    let cached = Browser::new();
    assert_eq!(cached.login(&app_a, "alice", "alice").await.status, 200);
    assert_eq!(status(&cached, &app_a).await, 200);
    let uncached = Browser::new();
    assert_eq!(uncached.login(&app_b, "bob", "bob").await.status, 200);

    outage.stop();
    // Cached on A: keeps working through the outage (also after the short TTL that applies
    // while invalidations cannot arrive).
    for _ in 0..3 {
        assert_eq!(status(&cached, &app_a).await, 200, "{}", f.a.log());
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(status(&cached, &app_a).await, 200, "{}", f.a.log());
    // Never seen by A: 503, quickly, and the cookie is kept (no Set-Cookie).
    let started = std::time::Instant::now();
    let r = uncached.client.get(&app_a).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        r.headers().get("set-cookie").is_none(),
        "cookie touched during an outage"
    );

    outage.start().await;
    let recovered = poll_until(Duration::from_secs(15), || async {
        (status(&uncached, &app_a).await == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "A did not recover:\n{}", f.a.log());
    assert_eq!(status(&cached, &app_b).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_one_redis_server() {
    // Persistent, so a stop and start keeps the sessions (as a production Redis would).
    let mut redis = RedisServer::start_persistent().await;
    let url = redis.url();
    scenario(&url, Outage::Restart(&mut redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_a_redis_cluster() {
    // The outage here is every node frozen (SIGSTOP): connections stay open and nothing
    // answers, so each store call runs into its timeout.
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    scenario(&url, Outage::Freeze(&cluster)).await;
}
