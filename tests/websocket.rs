//! WebSocket upgrades through the proxy: only with `allow_websockets`, and an idle socket
//! is not cut by the route's request timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{
    public_route,
    upstream::header_values,
    ws::{connect, echo_once},
    Gatehouse, Upstream,
};
use tokio_tungstenite::tungstenite::Message;

async fn start(up: &Upstream, extra: &str) -> Gatehouse {
    let cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "", &up.url(), extra)
    );
    Gatehouse::plain(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_when_enabled() {
    let up = Upstream::start("ws").await;
    let gh = start(&up, "allow_websockets: true").await;
    let mut ws = connect(&gh, "/socket?room=1")
        .await
        .expect("upgrade through the proxy");
    echo_once(&mut ws, Message::text("hello through gatehouse")).await;
    echo_once(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    echo_once(&mut ws, Message::text("x".repeat(200_000))).await;
    ws.close(None).await.unwrap();

    let req = up.last();
    assert_eq!(req["path"], "/socket?room=1", "{req}");
    assert!(
        header_values(&req, "upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket")),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_not_performed_when_disabled() {
    let up = Upstream::start("ws").await;
    let gh = start(&up, "").await;
    let res = connect(&gh, "/socket").await;
    assert!(
        res.is_err(),
        "the upgrade must not succeed without allow_websockets"
    );
    // Either refused by gatehouse, or forwarded as a plain request without Upgrade.
    for req in up.requests() {
        assert!(
            header_values(&req, "upgrade").is_empty(),
            "Upgrade reached the upstream: {req}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_outlives_the_route_timeout() {
    let up = Upstream::start("ws").await;
    let gh = start(&up, "allow_websockets: true\ntimeout: 1s").await;
    let mut ws = connect(&gh, "/idle").await.expect("upgrade");
    echo_once(&mut ws, Message::text("before")).await;
    // Idle for twice the route timeout: there is nothing to poll for here.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    echo_once(&mut ws, Message::text("after idling")).await;
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_websocket_survives_reloads() {
    let up = Upstream::start("ws").await;
    let gh = start(&up, "allow_websockets: true").await;
    let mut ws = connect(&gh, "/live").await.expect("upgrade");
    echo_once(&mut ws, Message::text("before")).await;
    for i in 0..3 {
        // A new route each time, so every reload is a real new snapshot.
        let cfg = format!(
            "routes:\n{}{}",
            public_route("http://app.test", "", &up.url(), "allow_websockets: true"),
            public_route(&format!("http://r{i}.test"), "", &up.url(), "")
        );
        gh.reload_with(&cfg);
        let applied = support::poll_until(Duration::from_secs(5), || async {
            (gh.get(&format!("r{i}.test"), "/").await.status == 200).then_some(())
        })
        .await;
        assert!(applied.is_some(), "reload {i} never applied");
        echo_once(&mut ws, Message::text(format!("after reload {i}"))).await;
    }
    ws.close(None).await.unwrap();
}
