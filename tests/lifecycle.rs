//! Process lifecycle without downtime: SIGTERM drains every in-flight request and exits as
//! soon as they are done; Pingora's graceful binary upgrade hands the listening sockets to a
//! new process without a failed request (fresh and kept-alive connections); a config reload
//! every second under load fails nothing and an open WebSocket keeps echoing through it all.
//! Each prints its figures (`ZERO-DOWNTIME …`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use support::{
    load::{Lane, Load, Report},
    poll_until, public_route,
    raw::try_raw_request,
    ws::{connect, try_echo},
    Gatehouse, Upstream,
};
use tokio_tungstenite::tungstenite::Message;

fn config(up: &Upstream) -> String {
    format!(
        "shutdown_grace_period: 20s\nroutes:\n{}",
        public_route("http://app.test", "", &up.url(), "allow_websockets: true")
    )
}

/// Four kept-alive clients on `app.test` of `gh`.
fn keepalive_load(gh: &Gatehouse) -> Load {
    let url = gh.host_url("http", "app.test", "/load");
    Load::start(
        (0..4)
            .map(|i| Lane::json(&format!("keepalive-{i}"), &url, None))
            .collect(),
        &[("app.test", gh.addr)],
    )
}

const KEEPALIVE: [&str; 4] = ["keepalive-0", "keepalive-1", "keepalive-2", "keepalive-3"];

fn print_figures(what: &str, report: &Report, extra: &str) {
    println!(
        "ZERO-DOWNTIME {what}: requests={}, failed={}, max_latency_ms={}, status_counts={:?}{extra}",
        report.of(&KEEPALIVE).count(),
        report.failed(&KEEPALIVE, &[200]),
        report.max_latency(&KEEPALIVE).as_millis(),
        report.status_counts(&KEEPALIVE),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    const SLOW: usize = 6;
    let up = Upstream::start("app").await;
    up.set_delay(Duration::from_millis(1500));
    let mut gh = Gatehouse::plain(&config(&up)).await;
    let addr = gh.addr;
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            tokio::spawn(async move {
                let req = b"GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
                try_raw_request(addr, req).await
            })
        })
        .collect();
    let started = poll_until(Duration::from_secs(5), || async {
        (up.inflight() == SLOW).then_some(())
    })
    .await;
    assert!(
        started.is_some(),
        "the slow requests never all reached the upstream ({} did)",
        up.inflight()
    );

    let t0 = Instant::now();
    gh.signal("TERM");
    let mut completed = 0;
    for task in slow {
        let r = task.await.unwrap().expect("an in-flight request was cut");
        assert_eq!(r.status, 200, "{}", r.dump());
        completed += 1;
    }
    // Exits once drained — well before the 20 s grace period.
    let status = gh.wait_exit(Duration::from_secs(8)).await;
    let exit_ms = t0.elapsed().as_millis();
    assert!(status.is_some(), "still running {exit_ms} ms after SIGTERM");
    assert!(status.unwrap().success(), "{:?}", status);
    assert_eq!(up.hits(), SLOW);
    println!(
        "ZERO-DOWNTIME sigterm-drain: in_flight={SLOW}, completed={completed}, exit_ms={exit_ms} (each request takes 1500 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_under_load_fails_no_request() {
    let up = Upstream::start("app").await;
    let mut old = Gatehouse::plain(&config(&up)).await;
    let addr = old.addr;

    // A new connection per request, and kept-alive clients.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut fresh = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        fresh.push(tokio::spawn(async move {
            let req = b"GET /load HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
            while !stop.load(Ordering::Relaxed) {
                match try_raw_request(addr, req).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let load = keepalive_load(&old);
    poll_until(Duration::from_secs(5), || async {
        (ok.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await
    .expect("load never got going");

    let mut new = old.spawn_upgrade();
    // The new process waits for the sockets on the upgrade socket; give it a moment to
    // listen there before the old one sends them (Pingora retries the send as well).
    poll_until(Duration::from_secs(10), || async {
        old.dir().join("upgrade.sock").exists().then_some(())
    })
    .await
    .expect("the new process never opened the upgrade socket");
    let t0 = Instant::now();
    old.signal("QUIT");
    let exited = old.wait_exit(Duration::from_secs(30)).await;
    let old_exit_ms = t0.elapsed().as_millis();
    let before = ok.load(Ordering::Relaxed);
    // The new process alone serves now.
    poll_until(Duration::from_secs(5), || async {
        (ok.load(Ordering::Relaxed) > before + 50).then_some(())
    })
    .await
    .expect("no requests served after the old process left");
    stop.store(true, Ordering::Relaxed);
    for task in fresh {
        task.await.unwrap();
    }
    let report = load.stop().await;
    let _ = new.kill();
    let _ = new.wait();
    print_figures(
        "binary-upgrade",
        &report,
        &format!(
            "; fresh connections: requests={}, failed={}; old process exited {old_exit_ms} ms after SIGQUIT",
            ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ),
    );
    assert!(
        exited.is_some(),
        "the old process did not exit after SIGQUIT"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests on fresh connections during the upgrade ({} succeeded)",
        ok.load(Ordering::Relaxed)
    );
    for lane in KEEPALIVE {
        report.assert_lane(lane, &[200], false);
    }
}

/// Reload seconds (one reload per second); `ZERO_DOWNTIME_RELOAD_SECONDS` overrides 30.
fn reload_seconds() -> u64 {
    std::env::var("ZERO_DOWNTIME_RELOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_every_second_under_load_fails_nothing_and_keeps_websockets_open() {
    let up = Upstream::start("app").await;
    // Each reload adds a route: every one is a real new snapshot, seen served.
    let cfg = |i: u64| {
        format!(
            "{}{}",
            config(&up),
            public_route(&format!("http://r{i}.test"), "", &up.url(), "")
        )
    };
    let gh = Gatehouse::plain(&cfg(0)).await;
    let load = keepalive_load(&gh);

    // A WebSocket echoing every 100 ms the whole time.
    let mut ws = connect(&gh, "/live").await.expect("upgrade");
    let ws_stop = Arc::new(AtomicBool::new(false));
    let stop = ws_stop.clone();
    let echoes = tokio::spawn(async move {
        let (mut ok, mut failures) = (0usize, Vec::new());
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match try_echo(&mut ws, Message::text(format!("message {n}"))).await {
                Ok(()) => ok += 1,
                Err(e) => {
                    failures.push(e);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = ws.close(None).await;
        (ok, failures)
    });

    let seconds = reload_seconds();
    let t0 = Instant::now();
    let mut applied = 0;
    for i in 1..=seconds {
        tokio::time::sleep_until((t0 + Duration::from_secs(i)).into()).await;
        gh.reload_with(&cfg(i));
        let served = poll_until(Duration::from_secs(2), || async {
            (gh.get(&format!("r{i}.test"), "/").await.status == 200).then_some(())
        })
        .await;
        applied += usize::from(served.is_some());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    ws_stop.store(true, Ordering::Relaxed);
    let (ws_ok, ws_failures) = echoes.await.unwrap();
    let report = load.stop().await;
    print_figures(
        "reload-every-second",
        &report,
        &format!(
            "; reloads={seconds}, applied={applied}, websocket echoes={ws_ok}, websocket failures={}",
            ws_failures.len()
        ),
    );
    assert_eq!(applied as u64, seconds, "not every reload was applied");
    for lane in KEEPALIVE {
        report.assert_lane(lane, &[200], false);
    }
    assert!(
        ws_failures.is_empty(),
        "the WebSocket broke: {ws_failures:?}"
    );
    // Before, during and after: one echo every ~100 ms the whole time.
    assert!(
        ws_ok as u64 >= seconds * 5,
        "only {ws_ok} echoes in {seconds} s"
    );
}
