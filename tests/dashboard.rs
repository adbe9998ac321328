//! The shipped Grafana dashboard (`grafana/dashboards/gatehouse.json`) is well-formed and
//! asks only for series gatehouse exports: a real gatehouse (real IdP, Redis session store,
//! echo upstream) serves a sign-in, allowed, denied, anonymous, public and failing requests,
//! a token refresh, a sign-out and a reload; then every PromQL expression of the dashboard
//! (panels, rows, annotations, template variables) is checked against its `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "dashboard/promql.rs"]
mod promql;

#[path = "../src/session/store/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::Duration,
};

use redis_server::RedisServer;
use serde_json::Value;
use support::{
    free_addr, free_port,
    idp::{hidden_input, Browser, ClientSpec, Idp},
    poll_until, Gatehouse, Upstream,
};

const DASHBOARD: &str = "grafana/dashboards/gatehouse.json";
/// The dashboard's datasource variable; every panel and query must use it.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";
const CLIENT_ID: &str = "gatehouse-dashboard";
const CLIENT_SECRET: &str = "dashboard-secret";
/// base64 of 32 bytes (test only).
const COOKIE_SECRET: &str = "ZGFzaGJvYXJkLXRlc3QtY29va2llLXNlY3JldC0zMmI=";

fn dashboard() -> Value {
    let path = support::idp::repo_path(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, rows' nested panels included, in document order.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression with where it is: each `expr` anywhere in the document
/// (targets, annotations) and each query variable's query.
fn expressions(dashboard: &Value) -> Vec<(String, String, bool)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String, bool)>) {
        match v {
            Value::Object(map) => {
                let here = map
                    .get("title")
                    .or_else(|| map.get("name"))
                    .and_then(Value::as_str)
                    .map_or_else(|| at.to_owned(), |t| format!("{at} / {t}"));
                for (k, child) in map {
                    match (k.as_str(), child) {
                        ("expr", Value::String(e)) => out.push((here.clone(), e.clone(), false)),
                        ("templating", _) => {}
                        _ => walk(child, &here, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, at, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "dashboard", &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] == "query" {
            let query = var["query"]["query"].as_str().or(var["query"].as_str());
            let name = var["name"].as_str().unwrap_or("?");
            let query = query.unwrap_or_else(|| panic!("variable {name} has no query"));
            out.push((format!("variable ${name}"), query.to_owned(), true));
        }
    }
    out
}

/// Series (and so family) names used by the dashboard, with where each is used.
fn used_series(dashboard: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (at, expr, is_variable) in expressions(dashboard) {
        let names = if is_variable {
            promql::variable_series_names(&expr)
        } else {
            promql::series_names(&expr)
        };
        match names {
            Ok(names) => {
                for n in names {
                    used.entry(n).or_default().insert(at.clone());
                }
            }
            Err(e) => errors.push(format!("{at}: {e}\n    {expr}")),
        }
    }
    assert!(
        errors.is_empty(),
        "unreadable PromQL:\n{}",
        errors.join("\n")
    );
    used
}

fn uses_datasource_variable(ds: &Value) -> bool {
    ds["uid"] == DATASOURCE_UID && ds["type"] == "prometheus"
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    for key in ["title", "uid"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "no {key}");
    }
    assert!(d["schemaVersion"].as_u64().is_some(), "no schemaVersion");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "DS_PROMETHEUS"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable DS_PROMETHEUS"
    );
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert!(
            uses_datasource_variable(&v["datasource"]),
            "variable {}: datasource {}",
            v["name"],
            v["datasource"]
        );
    }

    let panels = all_panels(&d);
    assert!(panels.len() > 20, "only {} panels", panels.len());
    let mut ids = HashSet::new();
    let mut boxes = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no integer id"));
        assert!(ids.insert(id), "{title}: panel id {id} is used twice");
        assert!(p["type"].as_str().is_some(), "{title}: no type");
        assert!(
            uses_datasource_variable(&p["datasource"]),
            "{title}: datasource {} (want the {DATASOURCE_UID} variable)",
            p["datasource"]
        );
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k} missing"))
        });
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g}");
        boxes.push((title, x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("{title}: no targets"));
        let mut refs = HashSet::new();
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without expr"
            );
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId used twice"
            );
            assert!(
                uses_datasource_variable(&t["datasource"]),
                "{title}: target datasource {}",
                t["datasource"]
            );
        }
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart =
                a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
            assert!(apart, "panels {:?} and {:?} overlap", a.0, b.0);
        }
    }
}

#[test]
fn dashboard_shows_exactly_the_expected_families() {
    // Not vacuous, and no label or function taken for a metric: the extractor must find
    // exactly the families the dashboard is meant to show.
    let used: BTreeSet<String> = used_series(&dashboard())
        .keys()
        .map(|s| promql::family(s).to_owned())
        .collect();
    assert!(
        used.len() > 15,
        "only {} families found: {used:?}",
        used.len()
    );
    for family in [
        "gatehouse_http_requests_total",
        "gatehouse_http_request_duration_seconds",
        "gatehouse_upstream_request_duration_seconds",
        "gatehouse_upstream_errors_total",
        "gatehouse_upstream_backend_healthy",
        "gatehouse_authz_decisions_total",
        "gatehouse_authz_cache_lookups_total",
        "gatehouse_session_cache_lookups_total",
        "gatehouse_session_store_operations_total",
        "gatehouse_session_store_duration_seconds",
        "gatehouse_session_store_up",
        "gatehouse_idp_requests_total",
        "gatehouse_logins_total",
        "gatehouse_sign_outs_total",
        "gatehouse_session_refreshes_total",
        "gatehouse_downstream_connections",
        "gatehouse_config_last_reload_success",
        "gatehouse_config_last_reload_success_timestamp_seconds",
        "gatehouse_config_reloads_total",
        "gatehouse_build_info",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
}

/// Sample names in a Prometheus text exposition.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn config(
    issuer: &str,
    origin: &str,
    store: &str,
    app: &str,
    dead: &str,
    extra_route: &str,
) -> String {
    format!(
        "idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
session_store: {store}
pass_identity_headers: true
routes:
  - from: {origin}
    prefix: /public
    to: {app}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /dead
    to: {dead}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /admin
    to: {app}
    allowed_groups: [admins]
{extra_route}  - from: {origin}
    prefix: /
    to: {app}
    allow_any_authenticated_user: true
    health_checks: [{{timeout: 1s, interval: 1s, healthy_threshold: 1, unhealthy_threshold: 1, http_health_check: {{path: /health}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_uses_is_exported() {
    let used = used_series(&dashboard());

    let redis = RedisServer::start().await;
    let addr = free_addr();
    let origin = format!("http://{addr}");
    // Tokens shorter than the refresh margin, so that requests cause refreshes.
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: std::slice::from_ref(&origin),
        },
        &["--access-ttl", "20", "--id-token-ttl", "20"],
    );
    let app = Upstream::start("app").await;
    // Nothing listens there: proxied requests fail with 502.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = |extra: &str| config(&idp.issuer, &origin, &redis.url(), &app.url(), &dead, extra);
    let gh = Gatehouse::start_at(addr, &format!("insecure_server: true\n{}", cfg(""))).await;
    let api = gh.client(&[]);
    let get = |path: &str| {
        api.get(format!("{origin}{path}"))
            .header("accept", "application/json")
            .send()
    };

    // Sign-in (IdP discovery, JWKS, token; store save), allowed, denied, cached requests.
    let bob = Browser::new();
    let page = bob.login(&format!("{origin}/app"), "bob", "bob").await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", gh.log());
    for _ in 0..3 {
        assert_eq!(
            bob.client
                .get(format!("{origin}/app"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        bob.client
            .get(format!("{origin}/admin/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // Anonymous, public and failing upstream.
    assert_eq!(get("/app").await.unwrap().status(), 401);
    assert_eq!(get("/public/x").await.unwrap().status(), 200);
    assert_eq!(get("/dead/x").await.unwrap().status(), 502);
    // A token refresh (the tokens are always due): wait until one has been counted.
    let refreshed = poll_until(Duration::from_secs(15), || async {
        let _ = bob.client.get(format!("{origin}/app")).send().await;
        let m = gh.admin_get("/metrics").await;
        String::from_utf8_lossy(&m.body)
            .contains("gatehouse_session_refreshes_total{")
            .then_some(())
    })
    .await;
    assert!(
        refreshed.is_some(),
        "no token refresh was counted within 15 s"
    );
    // Sign-out (store delete) and a reload.
    let page = bob.open(&format!("{origin}/.gatehouse/")).await;
    let csrf = hidden_input(&page.body, "csrf").expect("csrf input on the user page");
    let r = bob
        .post_form(&format!("{origin}/.gatehouse/sign_out"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 302);
    let extra = format!("  - from: {origin}\n    prefix: /more\n    to: {}\n    allow_public_unauthenticated_access: true\n", app.url());
    gh.reload_with(&cfg(&extra));
    let reloaded = poll_until(Duration::from_secs(5), || async {
        (get("/more/x").await.ok()?.status() == 200).then_some(())
    })
    .await;
    assert!(
        reloaded.is_some(),
        "the reload was not applied\n{}",
        gh.log()
    );

    let m = gh.admin_get("/metrics").await;
    assert_eq!(m.status, 200);
    let exposition = String::from_utf8_lossy(&m.body).into_owned();
    let exported = exported_series(&exposition);
    assert!(
        exported.len() > 10,
        "hardly anything exported:\n{exposition}"
    );
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (series, places) in &used {
        if !exported.contains(series) {
            let e = missing.entry(promql::family(series)).or_default();
            e.extend(places.iter().map(String::as_str));
        }
    }
    let report: Vec<String> = missing
        .iter()
        .map(|(family, places)| {
            let places: Vec<&str> = places.iter().copied().collect();
            format!("  {family}\n      used by: {}", places.join("; "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} families the dashboard uses are not exported by /metrics:\n{}\n\n/metrics:\n{exposition}",
        missing.len(),
        used.keys().map(|s| promql::family(s)).collect::<BTreeSet<_>>().len(),
        report.join("\n")
    );
}
