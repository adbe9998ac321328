//! Hot reload: a good change is served within 2 s (file change alone, or SIGHUP); a bad
//! one keeps the old routes serving and is reported by the reload metric.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{poll_until, public_route, Gatehouse, Upstream};

const RELOAD_DEADLINE: Duration = Duration::from_secs(2);

fn config(a: &Upstream, b: Option<&Upstream>) -> String {
    let mut cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "prefix: /a", &a.url(), "")
    );
    if let Some(b) = b {
        cfg += &public_route("http://app.test", "prefix: /b", &b.url(), "");
    }
    cfg
}

async fn name_at(gh: &Gatehouse, path: &str) -> Option<String> {
    let r = gh.get("app.test", path).await;
    (r.status == 200).then(|| r.json()["name"].as_str().unwrap_or_default().to_string())
}

/// Waits up to `RELOAD_DEADLINE` for `/b` to be served by "b"; returns how long it took.
async fn wait_for_b(gh: &Gatehouse, since: Instant) -> Duration {
    let served = poll_until(RELOAD_DEADLINE + Duration::from_millis(200), || async {
        (name_at(gh, "/b").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let took = since.elapsed();
    assert!(
        served.is_some() && took <= RELOAD_DEADLINE,
        "new route not served within {RELOAD_DEADLINE:?} (waited {took:?})"
    );
    took
}

/// The value of `gatehouse_config_last_reload_success`, if exported.
async fn reload_success_metric(gh: &Gatehouse) -> Option<f64> {
    let m = gh.admin_get("/metrics").await;
    String::from_utf8_lossy(&m.body)
        .lines()
        .find(|l| l.starts_with("gatehouse_config_last_reload_success"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_change_alone_is_served_within_2s() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gh = Gatehouse::plain(&config(&a, None)).await;
    assert_eq!(gh.get("app.test", "/b").await.status, 404);
    let t0 = Instant::now();
    gh.write_config(&format!("insecure_server: true\n{}", config(&a, Some(&b))));
    wait_for_b(&gh, t0).await;
    assert_eq!(name_at(&gh, "/a").await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_is_served_within_2s() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gh = Gatehouse::plain(&config(&a, None)).await;
    assert_eq!(gh.get("app.test", "/b").await.status, 404);
    // The new file keeps the old mtime, so the watcher cannot be what reloads it.
    gh.write_config_unnoticed(&config(&a, Some(&b)));
    tokio::time::sleep(Duration::from_millis(1200)).await; // > two watcher ticks
    assert_eq!(
        gh.get("app.test", "/b").await.status,
        404,
        "reloaded without SIGHUP"
    );
    let t0 = Instant::now();
    gh.sighup();
    wait_for_b(&gh, t0).await;
    assert_eq!(name_at(&gh, "/a").await.as_deref(), Some("a"));
}

/// Applies `bad` (which also adds `/b`) and checks that the old routes keep serving.
async fn assert_bad_config_keeps_old(bad: impl Fn(&str) -> String) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gh = Gatehouse::plain(&config(&a, None)).await;
    gh.reload_with(&bad(&config(&a, Some(&b))));

    // The failure is visible on the metric; wait for it rather than sleeping.
    let failed = poll_until(Duration::from_secs(3), || async {
        (reload_success_metric(&gh).await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(
        name_at(&gh, "/a").await.as_deref(),
        Some("a"),
        "old route must keep serving"
    );
    assert_eq!(
        gh.get("app.test", "/b").await.status,
        404,
        "nothing of the bad config may be applied"
    );
    assert!(gh
        .get("app.test", "/a")
        .await
        .header("x-request-id")
        .is_some());
    assert!(
        failed.is_some(),
        "gatehouse_config_last_reload_success never became 0 (now {:?})",
        reload_success_metric(&gh).await
    );

    // A good config afterwards is applied again.
    let t0 = Instant::now();
    gh.reload_with(&config(&a, Some(&b)));
    wait_for_b(&gh, t0).await;
    let ok = poll_until(Duration::from_secs(2), || async {
        (reload_success_metric(&gh).await == Some(1.0)).then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "gatehouse_config_last_reload_success back to 1 after a good reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_keeps_the_old_routes() {
    assert_bad_config_keeps_old(|good| format!("{good}    not_a_real_key: 1\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_regex_keeps_the_old_routes() {
    assert_bad_config_keeps_old(|good| format!("{good}  - from: http://app.test\n    regex: \"([unclosed\"\n    to: http://127.0.0.1:9\n    allow_public_unauthenticated_access: true\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_keeps_the_old_routes() {
    assert_bad_config_keeps_old(|good| format!("{good}  - from: [unterminated\n")).await;
}
