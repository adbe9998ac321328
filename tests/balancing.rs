//! Load balancing and upstream failures: round robin, weights, ring hash, least request,
//! health-check ejection and return, 503 when all are down, 502 refused, 504 timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use support::{
    assert_error_page, free_addr, poll_until, public_route, raw_request_from, Gatehouse, Upstream,
};

const HEALTH: &str = "health_checks: [{timeout: 1s, interval: 1s, healthy_threshold: 1, unhealthy_threshold: 1, http_health_check: {path: /health}}]";

async fn pool(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Upstream::start(&format!("b{i}")).await);
    }
    v
}

fn to_list(ups: &[Upstream]) -> String {
    format!(
        "[{}]",
        ups.iter().map(Upstream::url).collect::<Vec<_>>().join(", ")
    )
}

async fn start(to: &str, extra: &str) -> Gatehouse {
    let cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "", to, extra)
    );
    Gatehouse::plain(&cfg).await
}

/// GET through the proxy from `local`; returns (status, upstream name or "").
async fn hit(gh: &Gatehouse, local: &str, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    let ip: IpAddr = local.parse().unwrap();
    let r = raw_request_from(ip, gh.addr, req.as_bytes()).await.unwrap();
    let name = if r.status == 200 {
        r.json()["name"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    (r.status, name)
}

async fn tally(gh: &Gatehouse, local: &str, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let (status, name) = hit(gh, local, "/").await;
        assert_eq!(status, 200);
        *m.entry(name).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let ups = pool(3).await;
    let gh = start(&to_list(&ups), "load_balancing_policy: ROUND_ROBIN").await;
    let m = tally(&gh, "127.0.0.1", 30).await;
    assert_eq!(
        m.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_honours_weights() {
    let ups = pool(2).await;
    let to = format!("[\"{},3\", \"{},1\"]", ups[0].url(), ups[1].url());
    let gh = start(&to, "").await;
    let m = tally(&gh, "127.0.0.1", 40).await;
    assert_eq!(
        (m.get("b0").copied(), m.get("b1").copied()),
        (Some(30), Some(10)),
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_sticks_to_one_backend_per_client_ip() {
    let ups = pool(3).await;
    let gh = start(&to_list(&ups), "load_balancing_policy: RING_HASH").await;
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let m = tally(&gh, ip, 15).await;
        assert_eq!(m.len(), 1, "client {ip} was spread: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_idle_backend() {
    let ups = pool(2).await;
    let gh = start(&to_list(&ups), "load_balancing_policy: LEAST_REQUEST").await;
    let addr = gh.addr;
    let slow = tokio::spawn(async move {
        let req =
            b"GET /slow?delay_ms=8000 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        support::raw_request(addr, req).await.status
    });
    let busy = poll_until(Duration::from_secs(3), || async {
        ups.iter().position(|u| u.inflight() == 1)
    })
    .await
    .expect("the slow request reaches a backend");
    let idle = ups[1 - busy].name().to_string();
    // Only while the slow request is still in flight does "least request" mean the idle one
    // (on a loaded machine the fast requests may outlast it): check that before each.
    let mut checked = 0;
    for i in 0..6 {
        let (status, name) = hit(&gh, "127.0.0.1", "/fast").await;
        assert_eq!(status, 200);
        if ups[busy].inflight() != 1 {
            break;
        }
        assert_eq!(name, idle, "request {i} went to the busy backend");
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the slow request ended before 3 requests were checked"
    );
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_ejects_and_recovery_restores() {
    let ups = pool(2).await;
    let gh = start(&to_list(&ups), HEALTH).await;
    poll_until(Duration::from_secs(5), || async {
        (ups[1].health_checks() > 0).then_some(())
    })
    .await
    .expect("backends are health-checked");

    ups[1].set_healthy(false);
    let ejected = poll_until(Duration::from_secs(10), || async {
        let m = tally(&gh, "127.0.0.1", 6).await;
        (m.len() == 1 && m.contains_key("b0")).then_some(())
    })
    .await;
    assert!(
        ejected.is_some(),
        "b1 still served 10 s after failing its health check"
    );
    let m = tally(&gh, "127.0.0.1", 10).await;
    assert_eq!(m.get("b1"), None, "b1 must stay out while unhealthy: {m:?}");

    ups[1].set_healthy(true);
    let back = poll_until(Duration::from_secs(10), || async {
        let m = tally(&gh, "127.0.0.1", 4).await;
        m.contains_key("b1").then_some(())
    })
    .await;
    assert!(back.is_some(), "b1 did not come back 10 s after recovering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_unhealthy_is_503() {
    let ups = pool(2).await;
    for u in &ups {
        u.set_healthy(false);
    }
    let gh = start(&to_list(&ups), HEALTH).await;
    let got = poll_until(Duration::from_secs(10), || async {
        let r = gh.get("app.test", "/").await;
        (r.status == 503).then_some(r)
    })
    .await
    .expect("503 within 10 s of every backend failing its health check");
    assert_error_page(&got, 503, "Service Unavailable");
    let before: usize = ups.iter().map(Upstream::hits).sum();
    assert_error_page(&gh.get("app.test", "/").await, 503, "Service Unavailable");
    assert_eq!(
        ups.iter().map(Upstream::hits).sum::<usize>(),
        before,
        "no request to an unhealthy backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_502() {
    let dead = free_addr();
    let gh = start(&format!("http://{dead}"), "").await;
    assert_error_page(&gh.get("app.test", "/").await, 502, "Bad Gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_retried_on_another_backend() {
    let up = Upstream::start("alive").await;
    let dead = free_addr();
    let gh = start(
        &format!("[http://{dead}, {}]", up.url()),
        "load_balancing_policy: ROUND_ROBIN",
    )
    .await;
    for i in 0..6 {
        let (status, name) = hit(&gh, "127.0.0.1", "/").await;
        assert_eq!((status, name.as_str()), (200, "alive"), "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_route_timeout_is_504() {
    let up = Upstream::start("slow").await;
    up.set_delay(Duration::from_secs(3));
    let gh = start(&up.url(), "timeout: 1s").await;
    let t0 = Instant::now();
    let r = gh.get("app.test", "/").await;
    let took = t0.elapsed();
    assert_error_page(&r, 504, "Gateway Timeout");
    assert!(
        took < Duration::from_millis(2500),
        "504 after {took:?}, route timeout is 1 s"
    );
}
