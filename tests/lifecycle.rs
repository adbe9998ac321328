//! Process lifecycle: SIGTERM drains in-flight requests and exits as soon as they are done;
//! Pingora's graceful binary upgrade hands the listening sockets to a new process without
//! a failed request.

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use support::{poll_until, public_route, raw::try_raw_request, Gatehouse, Upstream};

fn config(up: &Upstream) -> String {
    format!(
        "shutdown_grace_period: 20s\nroutes:\n{}",
        public_route("http://app.test", "", &up.url(), "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let up = Upstream::start("app").await;
    up.set_delay(Duration::from_millis(1500));
    let mut gh = Gatehouse::plain(&config(&up)).await;
    let addr = gh.addr;
    let slow = tokio::spawn(async move {
        let req = b"GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        try_raw_request(addr, req).await
    });
    let started = poll_until(Duration::from_secs(5), || async {
        (up.inflight() == 1).then_some(())
    })
    .await;
    assert!(
        started.is_some(),
        "the slow request never reached the upstream"
    );

    let t0 = Instant::now();
    gh.signal("TERM");
    let r = slow.await.unwrap().expect("the in-flight request was cut");
    assert_eq!(r.status, 200, "{}", r.dump());
    // Exits once drained — well before the 20 s grace period.
    let status = gh.wait_exit(Duration::from_secs(8)).await;
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM",
        t0.elapsed()
    );
    assert!(status.unwrap().success(), "{:?}", status);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_under_load_fails_no_request() {
    let up = Upstream::start("app").await;
    let mut old = Gatehouse::plain(&config(&up)).await;
    let addr = old.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let req = b"GET /load HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
            while !stop.load(Ordering::Relaxed) {
                match try_raw_request(addr, req).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
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
    old.signal("QUIT");
    let exited = old.wait_exit(Duration::from_secs(30)).await;
    let before = ok.load(Ordering::Relaxed);
    // The new process alone serves now.
    poll_until(Duration::from_secs(5), || async {
        (ok.load(Ordering::Relaxed) > before + 50).then_some(())
    })
    .await
    .expect("no requests served after the old process left");
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let _ = new.kill();
    let _ = new.wait();
    assert!(
        exited.is_some(),
        "the old process did not exit after SIGQUIT"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during the upgrade ({} succeeded)",
        ok.load(Ordering::Relaxed)
    );
}
