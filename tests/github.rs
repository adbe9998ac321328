//! Sign-in with `idp_provider: github`, end to end through a browser walk.
//!
//! STAND-IN: github.com cannot be reached from here, so GitHub is played by a small HTTP
//! server in this file with the shape of github.com's OAuth endpoints and a GitHub Enterprise
//! Server's REST API (`/login/oauth/*`, `/api/v3/user*`). This is the one place the tests use
//! a stand-in instead of the real service. It checks what GitHub checks (client credentials,
//! single-use codes, the PKCE S256 verifier, the API headers) and answers as GitHub does,
//! errors of the token endpoint included (JSON `{"error": …}` with status 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::{free_addr, idp::Browser, Gatehouse, Upstream};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

const CLIENT_ID: &str = "gh-client";
const CLIENT_SECRET: &str = "gh-client-secret";
/// base64 of 32 bytes (test only).
const COOKIE_SECRET: &str = "dGVzdC1jb29raWUtc2VjcmV0LTMyLWJ5dGVzLWxvbmc=";

/// gatehouse in front of one echo upstream: `/platform` for team `acme/platform`, everything
/// else for any signed-in user.
struct Stack {
    github: StandIn,
    gh: Gatehouse,
    _upstream: Upstream,
    origin: String,
}

async fn stack() -> Stack {
    let github = StandIn::start().await;
    let upstream = Upstream::start("app").await;
    let addr: SocketAddr = free_addr();
    let origin = format!("http://{addr}");
    let config = format!(
        "insecure_server: true
idp_provider: github
idp_provider_url: {base}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
routes:
  - from: {origin}
    prefix: /platform
    to: {up}
    allowed_groups: [\"acme/platform\"]
  - from: {origin}
    prefix: /
    to: {up}
    allow_any_authenticated_user: true
",
        base = github.base,
        up = upstream.url(),
    );
    let gh = Gatehouse::start_at(addr, &config).await;
    Stack {
        github,
        gh,
        _upstream: upstream,
        origin,
    }
}

impl Stack {
    /// `/.gatehouse/user` as JSON (status, body) without following redirects.
    async fn user(&self, browser: &Browser) -> (u16, Value) {
        let r = browser
            .client
            .get(format!("{}/.gatehouse/user", self.origin))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Asserts the browser holds no session.
    async fn assert_no_session(&self, browser: &Browser) {
        assert_eq!(browser.cookie(&self.origin, "_gatehouse"), None);
        assert_eq!(self.user(browser).await.0, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_login_uses_the_numeric_id_teams_from_every_page_and_verified_email_only() {
    let s = stack().await;
    let octo = Browser::new();
    // The group route itself: `acme/platform` is on the second page of /user/teams.
    let page = octo.open(&format!("{}/platform/x", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());
    assert_eq!(page.url, format!("{}/platform/x", s.origin));
    assert!(page.trail.iter().any(|u| u.starts_with(&s.github.base)));

    let authorize = s.github.state.authorizations.lock().unwrap()[0].clone();
    assert_eq!(authorize["client_id"], CLIENT_ID);
    assert_eq!(authorize["scope"], "read:user user:email read:org");
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["allow_signup"], "false");
    assert_eq!(
        authorize["redirect_uri"],
        format!("{}/oauth2/callback", s.origin)
    );

    let (status, user) = s.user(&octo).await;
    assert_eq!(status, 200, "{user}");
    // The numeric id under the configured base URL, never the (renamable) login.
    assert_eq!(user["user"], format!("{}|1001", s.github.base));
    assert_eq!(user["email"], "octo@acme.example");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["name"], "Octo Cat");
    assert_eq!(
        user["groups"],
        json!(["acme", "acme/devs", "acme/platform"])
    );
    assert!(!user.to_string().contains("gho_"), "a token leaked: {user}");

    // A user whose primary email is unverified (and who is not on the team).
    *s.github.state.next_user.lock().unwrap() = Some("mallory");
    let mallory = Browser::new();
    let page = mallory.open(&format!("{}/app", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let (_, user) = s.user(&mallory).await;
    assert_eq!(user["user"], format!("{}|1002", s.github.base));
    assert_eq!(user["email_verified"], false, "{user}");
    assert_eq!(user["groups"], json!(["acme/devs"]));
    let page = mallory.open(&format!("{}/platform/x", s.origin)).await;
    assert_eq!(page.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verifier_a_bad_code_or_an_error_answer_makes_no_session() {
    let s = stack().await;
    let app = format!("{}/app", s.origin);

    // A code bound to another PKCE challenge (an injected code): GitHub refuses the verifier.
    let browser = Browser::new();
    let to_github = browser.client.get(&app).send().await.unwrap();
    assert_eq!(to_github.status(), 302);
    let mut authorize = url::Url::parse(location(&to_github)).unwrap();
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .into_owned()
        .map(|(k, v)| match k.as_str() {
            "code_challenge" => (k, challenge("another-verifier-another-verifier-0123456789")),
            _ => (k, v),
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.open(authorize.as_str()).await;
    assert_eq!(page.status, 502, "{page:#?}");
    s.assert_no_session(&browser).await;

    // A code GitHub never issued.
    let browser = Browser::new();
    let to_github = browser.client.get(&app).send().await.unwrap();
    let back = browser
        .client
        .get(location(&to_github))
        .send()
        .await
        .unwrap();
    let mut callback = url::Url::parse(location(&back)).unwrap();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "code" {
                (k, "bogus".into())
            } else {
                (k, v)
            }
        })
        .collect();
    callback.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.open(callback.as_str()).await;
    assert!([400, 502].contains(&page.status), "{page:#?}");
    s.assert_no_session(&browser).await;

    // GitHub's way of failing: status 200 with an error body.
    s.github.state.token_errors.store(true, Ordering::SeqCst);
    let browser = Browser::new();
    let page = browser.open(&app).await;
    assert_eq!(page.status, 502, "{page:#?}");
    s.assert_no_session(&browser).await;
    assert!(s.github.state.token_calls.load(Ordering::SeqCst) >= 3);
    assert_eq!(s.github.state.api_calls.load(Ordering::SeqCst), 0);

    // And a correct login still works.
    s.github.state.token_errors.store(false, Ordering::SeqCst);
    let page = browser.open(&app).await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_down_is_503_without_a_session_until_it_is_back() {
    let s = stack().await;
    let app = format!("{}/app", s.origin);
    s.github.state.user_status.store(500, Ordering::SeqCst);
    let browser = Browser::new();
    let page = browser.open(&app).await;
    assert_eq!(page.status, 503, "{page:#?}");
    assert!(!page.body.contains("gho_") && !page.body.contains("code="));
    s.assert_no_session(&browser).await;

    s.github.state.user_status.store(200, Ordering::SeqCst);
    let page = browser.open(&app).await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());
    assert_eq!(s.user(&browser).await.0, 200);
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()["location"].to_str().unwrap()
}

/// The PKCE S256 challenge of `verifier`.
fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

// === the GitHub stand-in ===

/// A code GitHub handed out, waiting for the token request.
struct Grant {
    challenge: String,
    redirect_uri: String,
    user: &'static str,
}

#[derive(Default)]
struct State {
    /// The user the next authorization signs in (default `octo`).
    next_user: Mutex<Option<&'static str>>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, &'static str>>,
    authorizations: Mutex<Vec<HashMap<String, String>>>,
    /// Every token request answers `{"error": "bad_verification_code"}` with 200.
    token_errors: AtomicBool,
    /// The status of `/api/v3/user` (200, or 500 for an outage).
    user_status: AtomicU16,
    token_calls: AtomicUsize,
    api_calls: AtomicUsize,
}

/// The running stand-in; stops on drop.
struct StandIn {
    /// `http://127.0.0.1:PORT`, the `idp_provider_url`.
    base: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    async fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        state.user_status.store(200, Ordering::SeqCst);
        let (st, b) = (Arc::clone(&state), base.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (st, b) = (Arc::clone(&st), b.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, &st, &b).await;
                });
            }
        });
        StandIn { base, state, task }
    }
}

/// One request per connection: read it, answer, close.
async fn serve(sock: TcpStream, st: &State, base: &str) -> std::io::Result<()> {
    let mut rd = BufReader::new(sock);
    let mut line = String::new();
    rd.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h).await? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = vec![
        0;
        headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    ];
    rd.read_exact(&mut body).await?;
    let url = url::Url::parse(&format!("{base}{target}")).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let (status, extra, body) = match (method.as_str(), url.path()) {
        ("GET", "/login/oauth/authorize") => authorize(st, query),
        ("POST", "/login/oauth/access_token") => token(st, &headers, &body),
        ("GET", path) => match path.strip_prefix("/api/v3") {
            Some(api) => api_call(st, &headers, api, &query, base),
            None => (404, vec![], "not found".into()),
        },
        _ => (404, vec![], "not found".into()),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let w = rd.get_mut();
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.shutdown().await
}

type Answer = (u16, Vec<(&'static str, String)>, String);

fn json_answer(status: u16, v: Value) -> Answer {
    (
        status,
        vec![("Content-Type", "application/json".into())],
        v.to_string(),
    )
}

/// `/login/oauth/authorize`: signs the chosen user in at once and sends the browser back.
fn authorize(st: &State, q: HashMap<String, String>) -> Answer {
    let valid = q.get("client_id").is_some_and(|c| c == CLIENT_ID)
        && q.get("code_challenge_method").is_some_and(|m| m == "S256")
        && q.get("code_challenge").is_some_and(|c| c.len() == 43)
        && q.get("state").is_some_and(|s| !s.is_empty());
    let Some(redirect_uri) = q.get("redirect_uri").filter(|_| valid).cloned() else {
        return (400, vec![], "bad authorization request".into());
    };
    let code = hex::encode(rand::random::<[u8; 10]>());
    let user = st.next_user.lock().unwrap().unwrap_or("octo");
    st.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: q["code_challenge"].clone(),
            redirect_uri: redirect_uri.clone(),
            user,
        },
    );
    let mut back = url::Url::parse(&redirect_uri).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    st.authorizations.lock().unwrap().push(q);
    (302, vec![("Location", back.to_string())], String::new())
}

/// `/login/oauth/access_token`: every failure is a 200 with `{"error": …}`, as on GitHub.
fn token(st: &State, headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    st.token_calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let error = |code: &str| {
        json_answer(
            200,
            json!({"error": code, "error_description": "stand-in", "error_uri": "https://docs.github.com/"}),
        )
    };
    if !headers
        .get("accept")
        .is_some_and(|a| a.contains("application/json"))
    {
        // Without it GitHub answers form-encoded.
        return (200, vec![], "error=not_json".into());
    }
    if st.token_errors.load(Ordering::SeqCst) {
        return error("bad_verification_code");
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return error("incorrect_client_credentials");
    }
    let grant = form
        .get("code")
        .and_then(|c| st.codes.lock().unwrap().remove(c));
    let Some(grant) = grant else {
        return error("bad_verification_code");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return error("redirect_uri_mismatch");
    }
    if form.get("code_verifier").map(|v| challenge(v)) != Some(grant.challenge) {
        return error("bad_verification_code");
    }
    let access = format!("gho_{}", hex::encode(rand::random::<[u8; 16]>()));
    st.tokens.lock().unwrap().insert(access.clone(), grant.user);
    json_answer(
        200,
        json!({"access_token": access, "token_type": "bearer", "scope": "read:org,read:user,user:email"}),
    )
}

/// The REST API, for the two users the stand-in knows.
fn api_call(
    st: &State,
    h: &HashMap<String, String>,
    path: &str,
    q: &HashMap<String, String>,
    base: &str,
) -> Answer {
    st.api_calls.fetch_add(1, Ordering::SeqCst);
    let user = h
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.lock().unwrap().get(t).copied());
    let Some(user) = user else {
        return json_answer(401, json!({"message": "Bad credentials"}));
    };
    let proper = h
        .get("accept")
        .is_some_and(|a| a == "application/vnd.github+json")
        && h.get("x-github-api-version")
            .is_some_and(|v| v == "2022-11-28")
        && h.get("user-agent").is_some_and(|v| !v.is_empty());
    if !proper {
        return json_answer(400, json!({"message": "missing API headers"}));
    }
    let octo = user == "octo";
    let team = |slug: &str| json!({"slug": slug, "name": slug, "organization": {"login": "acme", "id": 7}});
    let v = match path {
        "/user" => {
            let status = st.user_status.load(Ordering::SeqCst);
            if status != 200 {
                return (status, vec![], "<html><body>Unicorn!</body></html>".into());
            }
            if octo {
                json!({"id": 1001, "login": "octo", "name": "Octo Cat", "email": "public@other.example"})
            } else {
                json!({"id": 1002, "login": "mallory", "name": null})
            }
        }
        "/user/emails" if octo => json!([
            {"email": "old@other.example", "primary": false, "verified": false, "visibility": null},
            {"email": "octo@acme.example", "primary": true, "verified": true, "visibility": "private"},
        ]),
        "/user/emails" => json!([
            {"email": "mallory@other.example", "primary": false, "verified": true},
            {"email": "ceo@acme.example", "primary": true, "verified": false},
        ]),
        "/user/orgs" if octo => json!([{"login": "acme", "id": 7}]),
        "/user/orgs" => json!([]),
        "/user/teams" if !octo => json!([team("devs")]),
        // Two pages, linked as GitHub does.
        "/user/teams" if q.get("page").map(String::as_str) == Some("2") => {
            json!([team("platform")])
        }
        "/user/teams" => {
            let next = format!("{base}/api/v3/user/teams?per_page=100&page=2");
            let link = format!("<{next}>; rel=\"next\", <{next}>; rel=\"last\"");
            return (
                200,
                vec![("Content-Type", "application/json".into()), ("Link", link)],
                json!([team("devs")]).to_string(),
            );
        }
        _ => return json_answer(404, json!({"message": "Not Found"})),
    };
    json_answer(200, v)
}
