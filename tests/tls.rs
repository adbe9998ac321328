//! TLS: SNI certificate selection with HTTP/2, the HTTP→HTTPS redirect listener, upstream
//! TLS with a custom CA, downstream mTLS enforcement modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::{tls::TlsInfo, Version};
use support::{
    free_addr, public_route,
    raw::exchange,
    tls::{https_client, tls_connect, Leaf, TestCa},
    Gatehouse, Upstream,
};

/// A TLS gatehouse serving `a.test` → `ua` and `b.test` → `ub`, each with its own
/// certificate; `extra_globals` is added to the config.
struct TwoHosts {
    ca: TestCa,
    a: Leaf,
    b: Leaf,
    ua: Upstream,
    ub: Upstream,
    gh: Gatehouse,
    _dir: tempfile::TempDir,
}

async fn two_hosts(extra_globals: impl FnOnce(&std::path::Path) -> String) -> TwoHosts {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("gatehouse test CA");
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test"]);
    let (ac, ak) = a.write(dir.path(), "a");
    let (bc, bk) = b.write(dir.path(), "b");
    let ua = Upstream::start("a").await;
    let ub = Upstream::start("b").await;
    let globals = extra_globals(dir.path());
    let cfg = format!(
        "certificates:\n  - {{cert_file: {}, key_file: {}}}\n  - {{cert_file: {}, key_file: {}}}\n{globals}routes:\n{}{}",
        ac.display(),
        ak.display(),
        bc.display(),
        bk.display(),
        public_route("https://a.test", "", &ua.url(), ""),
        public_route("https://b.test", "", &ub.url(), ""),
    );
    let gh = Gatehouse::start(&cfg).await;
    TwoHosts {
        ca,
        a,
        b,
        ua,
        ub,
        gh,
        _dir: dir,
    }
}

fn peer_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_a_certificate_per_sni_host() {
    let t = two_hosts(|_| String::new()).await;
    let client = https_client(&t.ca.pem, &["a.test", "b.test"], t.gh.addr, None);
    for (host, leaf, up) in [("a.test", &t.a, &t.ua), ("b.test", &t.b, &t.ub)] {
        let r = client
            .get(t.gh.host_url("https", host, "/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.version(), Version::HTTP_2, "{host}: ALPN h2");
        assert_eq!(
            peer_cert(&r),
            leaf.der,
            "{host} must be served its own certificate"
        );
        let hsts = r
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(hsts.is_some_and(|v| v.contains("max-age=")), "HSTS on TLS");
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["name"], up.name(), "{echo}");
        assert_eq!(echo["path"], "/x", "{echo}");
        let proto = support::upstream::header_values(&echo, "x-forwarded-proto");
        assert_eq!(proto, ["https"], "{echo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_not_matching_sni_is_421() {
    let t = two_hosts(|_| String::new()).await;
    let tls = tls_connect(&t.ca.pem, "a.test", t.gh.addr).await.unwrap();
    let req =
        b"GET / HTTP/1.1\r\nHost: b.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            .to_vec();
    let r = exchange(tls, req).await.unwrap();
    support::assert_error_page(&r, 421, "Misdirected Request");
    assert_eq!(t.ub.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirect_addr_answers_301_to_https() {
    let redirect = free_addr();
    let t = two_hosts(|_| format!("http_redirect_addr: {redirect}\n")).await;
    let r = support::raw_request(
        redirect,
        b"GET /some/path?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 301, "{}", r.dump());
    let loc = r.header("location").expect("Location");
    // Same host; the port is either the default or gatehouse's own HTTPS port.
    let with_port = format!("https://a.test:{}/some/path?q=1", t.gh.addr.port());
    assert!(
        loc == "https://a.test/some/path?q=1" || loc == with_port,
        "Location {loc}"
    );
    assert_eq!(t.ua.hits(), 0);
}

/// A plain gatehouse proxying to a TLS upstream (leaf for `upstream.test` and 127.0.0.1)
/// with the given extra route keys.
async fn to_tls_upstream(
    extra: impl FnOnce(&std::path::Path) -> String,
) -> (Gatehouse, Upstream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    ca.write(dir.path(), "upstream-ca");
    let up = Upstream::start_tls("tls-up", &ca.leaf(&["upstream.test", "127.0.0.1"])).await;
    let cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "", &up.url(), &extra(dir.path()))
    );
    let gh = Gatehouse::plain(&cfg).await;
    (gh, up, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_with_custom_ca_and_server_name_works() {
    let (gh, up, _d) = to_tls_upstream(|d| {
        format!(
            "tls_custom_ca_file: {}\ntls_server_name: upstream.test",
            d.join("upstream-ca.pem").display()
        )
    })
    .await;
    let r = gh.get("app.test", "/secure").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json()["name"], "tls-up");
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_without_the_ca_is_502() {
    let (gh, up, _d) = to_tls_upstream(|_| "tls_server_name: upstream.test".to_owned()).await;
    support::assert_error_page(&gh.get("app.test", "/secure").await, 502, "Bad Gateway");
    assert_eq!(
        up.hits(),
        0,
        "no request may be sent over an unverified connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_with_wrong_server_name_is_502() {
    let (gh, up, _d) = to_tls_upstream(|d| {
        format!(
            "tls_custom_ca_file: {}\ntls_server_name: wrong.test",
            d.join("upstream-ca.pem").display()
        )
    })
    .await;
    support::assert_error_page(&gh.get("app.test", "/secure").await, 502, "Bad Gateway");
    assert_eq!(up.hits(), 0);
}

/// A TLS gatehouse with `downstream_mtls` in `mode`, plus a client CA and a client leaf.
async fn mtls(mode: &str) -> (TwoHosts, Leaf, Leaf) {
    let client_ca = TestCa::new("client CA");
    let good = client_ca.leaf(&["client.test"]);
    let other_ca = TestCa::new("other CA");
    let stranger = other_ca.leaf(&["client.test"]);
    let pem = client_ca.pem.clone();
    let t = two_hosts(move |d| {
        let p = d.join("client-ca.pem");
        std::fs::write(&p, pem).unwrap();
        format!(
            "downstream_mtls: {{ca_file: {}, enforcement: {mode}}}\n",
            p.display()
        )
    })
    .await;
    (t, good, stranger)
}

async fn get_a(t: &TwoHosts, id: Option<&Leaf>) -> reqwest::Result<reqwest::Response> {
    let client = https_client(&t.ca.pem, &["a.test"], t.gh.addr, id.map(Leaf::identity));
    client
        .get(t.gh.host_url("https", "a.test", "/"))
        .header("accept", "application/json")
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_policy_with_default_deny_needs_a_valid_client_cert() {
    let (t, good, _) = mtls("policy_with_default_deny").await;
    let r = get_a(&t, None).await.unwrap();
    // ASSUMPTION (to confirm with the lead): 495 as Pomerium.
    assert_eq!(r.status().as_u16(), 495, "no client certificate");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(t.ua.hits(), 0);
    let r = get_a(&t, Some(&good)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.ua.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_policy_mode_does_not_require_a_cert() {
    let (t, good, _) = mtls("policy").await;
    assert_eq!(get_a(&t, None).await.unwrap().status(), 200);
    assert_eq!(get_a(&t, Some(&good)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_reject_connection_fails_the_handshake_without_a_valid_cert() {
    let (t, good, stranger) = mtls("reject_connection").await;
    assert!(
        get_a(&t, None).await.is_err(),
        "no client certificate must fail the connection"
    );
    assert!(
        get_a(&t, Some(&stranger)).await.is_err(),
        "a certificate from another CA must fail the connection"
    );
    assert_eq!(t.ua.hits(), 0);
    assert_eq!(get_a(&t, Some(&good)).await.unwrap().status(), 200);
    assert_eq!(t.ua.hits(), 1);
}
