//! Metrics and the access log against a real login: a scripted sequence (two sign-ins, an
//! allowed, a denied and an anonymous request, an unreachable upstream, reloads) must move
//! exactly the metric values it should, and every access line must carry the audit fields
//! and no secret. Also `metrics_basic_auth` and `access_log_fields`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use support::{
    free_addr, free_port,
    idp::{Browser, ClientSpec, Idp},
    poll_until, raw_request, Gatehouse, Upstream,
};

const CLIENT_ID: &str = "gatehouse-obs";
const CLIENT_SECRET: &str = "gatehouse-obs-secret";
/// base64 of 32 bytes (test only).
const COOKIE_SECRET: &str = "dGVzdC1jb29raWUtc2VjcmV0LTMyLWJ5dGVzLWxvbmc=";

/// The value of the series `name{labels}` (labels matched as a subset), summed over every
/// matching series; 0 when none is exported.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, want)| rest.contains(&format!("{k}=\"{want}\"")));
            all.then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn config(origin: &str, issuer: &str, up: &str, dead: &str, extra_route: &str) -> String {
    format!(
        "insecure_server: true
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
pass_identity_headers: true
routes:
  - name: public
    from: {origin}
    prefix: /public
    to: {up}
    allow_public_unauthenticated_access: true
  - name: broken
    from: {origin}
    prefix: /broken
    to: {dead}
    allow_public_unauthenticated_access: true
  - name: admin
    from: {origin}
    prefix: /admin
    to: {up}
    allowed_groups: [admins]
  - name: app
    from: {origin}
    prefix: /
    to: {up}
    allow_any_authenticated_user: true
{extra_route}"
    )
}

/// The access lines in gatehouse's log, parsed.
fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_access_log_follow_a_scripted_sequence() {
    let addr: SocketAddr = free_addr();
    let origin = format!("http://{addr}");
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: std::slice::from_ref(&origin),
        },
        &[],
    );
    let upstream = Upstream::start("app").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let body = config(&origin, &idp.issuer, &upstream.url(), &dead, "");
    let gh = Gatehouse::start_at(addr, &body).await;
    let before = gh.admin_get("/metrics").await.body_text();

    // Two sign-ins through the real IdP.
    let alice = Browser::new();
    let page = alice
        .login(&format!("{origin}/app/a"), "alice", "alice")
        .await;
    assert_eq!(page.status, 200, "{page:#?}");
    let bob = Browser::new();
    let page = bob.login(&format!("{origin}/app/b"), "bob", "bob").await;
    assert_eq!(page.status, 200, "{page:#?}");

    // Allowed (alice is in admins), denied (bob is not), anonymous API client, dead upstream.
    assert_eq!(
        alice
            .open(&format!("{origin}/admin/x?code=query-secret&state=def"))
            .await
            .status,
        200
    );
    assert_eq!(bob.open(&format!("{origin}/admin/x")).await.status, 403);
    let anon = gh.get(&addr.to_string(), "/app/c").await;
    assert_eq!(anon.status, 401, "{}", anon.dump());
    let broken = gh.get(&addr.to_string(), "/broken/").await;
    assert_eq!(broken.status, 502, "{}", broken.dump());

    // The logging phase runs after the response is sent: wait for the last request's count.
    let after = poll_until(Duration::from_secs(5), || async {
        let text = gh.admin_get("/metrics").await.body_text();
        let done = value(
            &text,
            "gatehouse_http_requests_total",
            &[("route", "broken"), ("status_class", "5xx")],
        ) >= 1.0;
        done.then_some(text)
    })
    .await
    .expect("the last request is counted");
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta("gatehouse_logins_total", &[("result", "success")]),
        2.0
    );
    assert_eq!(
        delta(
            "gatehouse_idp_requests_total",
            &[("op", "token"), ("result", "ok")]
        ),
        2.0
    );
    assert!(
        value(
            &after,
            "gatehouse_idp_requests_total",
            &[("op", "discovery"), ("result", "ok")]
        ) >= 1.0
    );
    let decisions = "gatehouse_authz_decisions_total";
    assert_eq!(
        delta(
            decisions,
            &[
                ("route", "admin"),
                ("decision", "allow"),
                ("reason", "groups-ok")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            decisions,
            &[
                ("route", "admin"),
                ("decision", "deny"),
                ("reason", "groups-unauthorized")
            ]
        ),
        1.0
    );
    // alice's and bob's first visits, and the anonymous API client.
    assert_eq!(
        delta(
            decisions,
            &[
                ("route", "app"),
                ("decision", "login"),
                ("reason", "user-unauthenticated")
            ]
        ),
        3.0
    );
    let requests = "gatehouse_http_requests_total";
    assert_eq!(
        delta(requests, &[("route", "admin"), ("status_class", "2xx")]),
        1.0
    );
    assert_eq!(
        delta(requests, &[("route", "admin"), ("status_class", "4xx")]),
        1.0
    );
    assert_eq!(
        delta(requests, &[("route", "broken"), ("status_class", "5xx")]),
        1.0
    );
    assert_eq!(
        delta(
            "gatehouse_http_request_duration_seconds_count",
            &[("route", "admin")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "gatehouse_upstream_request_duration_seconds_count",
            &[("route", "admin")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "gatehouse_upstream_errors_total",
            &[("route", "broken"), ("kind", "connect_refused")]
        ),
        1.0
    );
    assert!(
        delta(
            "gatehouse_session_store_operations_total",
            &[("op", "put"), ("result", "ok")]
        ) >= 2.0
    );
    assert!(
        delta(
            "gatehouse_session_store_duration_seconds_count",
            &[("op", "put")]
        ) >= 2.0
    );
    assert!(
        delta(
            "gatehouse_session_cache_lookups_total",
            &[("result", "hit")]
        ) >= 2.0
    );
    assert!(delta("gatehouse_authz_cache_lookups_total", &[]) >= 5.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(value(&after, "gatehouse_build_info", &[]), 1.0);
    assert!(
        after.contains("\ngatehouse_downstream_connections "),
        "{after}"
    );

    // The access log: one line per request, the audit fields, no secret.
    let log = gh.log();
    let lines = access_lines(&log);
    let denied = lines
        .iter()
        .find(|l| l["route"] == "admin" && l["status"] == 403)
        .unwrap_or_else(|| panic!("no access line for the denied request:\n{log}"));
    assert_eq!(denied["decision"], "deny");
    assert_eq!(
        denied["reasons"],
        serde_json::json!(["groups-unauthorized"])
    );
    assert_eq!(denied["method"], "GET");
    assert_eq!(denied["path"], "/admin/x");
    assert_eq!(denied["ip"], "127.0.0.1");
    assert!(
        denied["email"].as_str().unwrap().starts_with("bob@"),
        "{denied}"
    );
    assert!(
        denied["user"].as_str().unwrap().ends_with("|bob"),
        "{denied}"
    );
    assert_eq!(denied["upstream"], serde_json::Value::Null);
    let rid = denied["request_id"].as_str().unwrap();
    assert!(
        rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{rid}"
    );
    let allowed = lines
        .iter()
        .find(|l| l["route"] == "admin" && l["status"] == 200)
        .unwrap_or_else(|| panic!("no access line for the allowed request:\n{log}"));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["path"], "/admin/x", "the query is never logged");
    assert_eq!(allowed["upstream"], upstream.addr.to_string());
    assert!(allowed["upstream_duration_ms"].is_f64(), "{allowed}");
    assert!(
        allowed["duration_ms"].as_f64().unwrap()
            >= allowed["upstream_duration_ms"].as_f64().unwrap()
    );
    assert!(allowed["bytes_sent"].as_u64().unwrap() > 0);
    assert_eq!(allowed["error"], serde_json::Value::Null);
    // A failed upstream is in its access line, and Pingora's own ERROR line per failed
    // request is not written (it would flood the log during an outage).
    let broken_line = lines
        .iter()
        .find(|l| l["status"] == 502)
        .unwrap_or_else(|| panic!("no access line for the dead upstream:\n{log}"));
    assert_eq!(broken_line["error"], "connect_refused", "{broken_line}");
    assert!(!log.contains("Fail to proxy"), "{log}");
    assert!(
        lines.iter().any(|l| l["path"] == "/oauth2/callback"),
        "callback logged"
    );
    let cookie = alice
        .cookie(&origin, "_gatehouse")
        .expect("alice's session cookie");
    for secret in [
        cookie.as_str(),
        "code=",
        "state=",
        // (A query value that cannot occur in a hex request id by chance, as "abc" did.)
        "query-secret",
        "Bearer",
        "_gatehouse=",
    ] {
        for line in log.lines().filter(|l| l.contains("\"target\":\"access\"")) {
            assert!(
                !line.contains(secret),
                "{secret:?} in an access line: {line}"
            );
        }
    }

    // A good reload, then a bad one.
    let reloads = "gatehouse_config_reloads_total";
    let extra = format!("  - name: extra\n    from: http://extra.test\n    to: {}\n    allow_public_unauthenticated_access: true\n", upstream.url());
    gh.reload_with(
        &config(&origin, &idp.issuer, &upstream.url(), &dead, &extra)
            ["insecure_server: true\n".len()..],
    );
    let reloaded = poll_until(Duration::from_secs(10), || async {
        let text = gh.admin_get("/metrics").await.body_text();
        (value(&text, reloads, &[("result", "success")]) >= 1.0).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("no successful reload counted:\n{}", gh.log()));
    assert_eq!(
        value(&reloaded, "gatehouse_config_last_reload_success", &[]),
        1.0
    );
    assert!(
        value(
            &reloaded,
            "gatehouse_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    assert_eq!(gh.get("extra.test", "/").await.status, 200);
    gh.reload_with("routes: [oops");
    let failed = poll_until(Duration::from_secs(10), || async {
        let text = gh.admin_get("/metrics").await.body_text();
        (value(&text, reloads, &[("result", "failure")]) >= 1.0).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("no failed reload counted:\n{}", gh.log()));
    assert_eq!(
        value(&failed, "gatehouse_config_last_reload_success", &[]),
        0.0
    );
    drop(idp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_basic_auth_guards_metrics_only_and_fields_are_selectable() {
    let upstream = Upstream::start("app").await;
    // base64("prom:s3cret")
    let gh = Gatehouse::plain(&format!(
        "metrics_basic_auth: cHJvbTpzM2NyZXQ=
access_log_fields: [method, response-code, path]
routes:
  - from: http://app.test
    to: {}
    allow_public_unauthenticated_access: true
",
        upstream.url()
    ))
    .await;
    let get = |auth: Option<&str>| {
        let admin = gh.admin;
        let header = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        async move {
            let req = format!(
                "GET /metrics HTTP/1.1\r\nHost: {admin}\r\n{header}Connection: close\r\n\r\n"
            );
            raw_request(admin, req.as_bytes()).await
        }
    };
    let none = get(None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"gatehouse metrics\"")
    );
    assert!(!none.body_text().contains("gatehouse_"));
    // base64("prom:wrong"), base64("prom:s3cret!"), base64("prom")
    for wrong in [
        "Basic cHJvbTp3cm9uZw==",
        "Basic cHJvbTpzM2NyZXQh",
        "Basic cHJvbQ==",
        "Bearer cHJvbTpzM2NyZXQ=",
    ] {
        assert_eq!(get(Some(wrong)).await.status, 401, "{wrong}");
    }
    let ok = get(Some("basic cHJvbTpzM2NyZXQ=")).await;
    assert_eq!(ok.status, 200);
    assert!(ok.body_text().contains("gatehouse_http_requests_total"));
    assert_eq!(
        gh.admin_get("/healthz").await.status,
        200,
        "health checks stay open"
    );

    assert_eq!(gh.get("app.test", "/x?token=t0ps3cret").await.status, 200);
    let line = poll_until(Duration::from_secs(5), || async {
        access_lines(&gh.log())
            .into_iter()
            .find(|l| l["path"] == "/x")
    })
    .await
    .unwrap_or_else(|| panic!("no access line:\n{}", gh.log()));
    let log = gh.log();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{line}");
    for key in ["level", "target", "method", "status", "path"] {
        assert!(keys.contains(&key), "{key} missing: {line}");
    }
    assert!(!log.contains("t0ps3cret"), "query logged:\n{log}");
}
