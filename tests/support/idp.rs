//! The real OpenID Provider (npm `oidc-provider`, `idp/server.mjs`) and the hostile OP
//! (`idp/hostile.mjs`) as test processes on 127.0.0.2, and a scripted browser: an HTTP client
//! with a cookie jar that follows redirects and walks the IdP's login and consent forms.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

/// A running OP, stopped on drop.
pub struct Idp {
    pub issuer: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// One OIDC client registered at the test IdP.
pub struct ClientSpec<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    /// Origins of gatehouse (e.g. `http://127.0.0.1:PORT`); their `/oauth2/callback` and
    /// `/.gatehouse/signed_out` are registered.
    pub origins: &'a [String],
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails clearly when the npm modules are missing (never a silent skip).
fn require_node_modules() {
    let modules = repo().join("idp/node_modules/oidc-provider");
    assert!(
        modules.exists(),
        "idp/node_modules is missing: run `make deps` (npm ci in idp/) before the tests"
    );
}

impl Idp {
    /// Starts `idp/server.mjs` with one client and extra CLI arguments.
    pub fn start(client: &ClientSpec<'_>, extra: &[&str]) -> Idp {
        require_node_modules();
        let dir = tempfile::tempdir().expect("tempdir");
        let clients = serde_json::json!([{
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uris": client.origins.iter().map(|o| format!("{o}/oauth2/callback")).collect::<Vec<_>>(),
            "post_logout_redirect_uris": client.origins.iter().map(|o| format!("{o}/.gatehouse/signed_out")).collect::<Vec<_>>(),
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }]);
        let clients_path = dir.path().join("clients.json");
        std::fs::write(&clients_path, clients.to_string()).expect("write clients");
        let mut args: Vec<String> = vec![
            "idp/server.mjs".into(),
            "--host".into(),
            "127.0.0.2".into(),
            "--port".into(),
            "0".into(),
            "--exit-with-parent".into(),
            "--clients".into(),
            clients_path.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::spawn(&args, dir)
    }

    /// Starts `idp/hostile.mjs` for `client_id`/`secret`.
    pub fn hostile(client_id: &str, secret: &str) -> Idp {
        require_node_modules();
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = [
            "idp/hostile.mjs",
            "--host",
            "127.0.0.2",
            "--port",
            "0",
            "--exit-with-parent",
            "--client-id",
            client_id,
            "--client-secret",
            secret,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        Self::spawn(&args, dir)
    }

    fn spawn(args: &[String], dir: tempfile::TempDir) -> Idp {
        // Node has been seen to hang while starting on a loaded machine (in a futex, before it
        // listens): one more attempt, then a clear failure, never a test that hangs.
        let mut failure = String::new();
        for attempt in 1..=2 {
            match Self::try_spawn(args, dir.path()) {
                Ok((issuer, child)) => {
                    return Idp {
                        issuer,
                        child,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    eprintln!("IdP start, attempt {attempt}: {why}");
                    failure = why;
                }
            }
        }
        panic!("{failure}");
    }

    /// Starts node and waits (bounded) for its ready line: the issuer and the process.
    fn try_spawn(args: &[String], dir: &Path) -> Result<(String, Child), String> {
        let log = std::fs::File::create(dir.join("idp.log")).expect("idp log");
        let mut child = Command::new("node")
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            // The ready line is the first line on stdout.
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap_or(0);
            let _ = tx.send((n, line));
            // Keep draining stdout so the IdP never blocks on a full pipe.
            for _ in reader.lines() {}
        });
        let log = || std::fs::read_to_string(dir.join("idp.log")).unwrap_or_default();
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((n, line)) if n > 0 => line,
            Ok(_) => {
                let _ = child.wait();
                return Err(format!("the IdP exited before it was ready:\n{}", log()));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the IdP was not ready within 20 s:\n{}", log()));
            }
        };
        let ready: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("IdP ready line {line:?}: {e}"));
        let issuer = ready["issuer"].as_str().expect("issuer").to_owned();
        Ok((issuer, child))
    }

    /// The IdP's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("idp.log")).unwrap_or_default()
    }

    /// POSTs JSON to a test control (`/__test/...` or, for the hostile OP, `/__mode`).
    pub async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = plain_client()
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("IdP control");
        assert!(
            r.status().is_success(),
            "IdP control {path}: {}",
            r.status()
        );
        r.json().await.unwrap_or(serde_json::Value::Null)
    }

    /// GETs a JSON test endpoint (`/__test/stats`, `/__stats`).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        plain_client()
            .get(format!("{}{path}", self.issuer))
            .send()
            .await
            .expect("IdP GET")
            .json()
            .await
            .expect("IdP JSON")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- IdP log -----\n{}\n----- end -----", self.log());
        }
    }
}

fn plain_client() -> reqwest::Client {
    super::http_client_builder().build().expect("client")
}

/// A browser stand-in: cookie jar, no automatic redirects (each hop is visible), HTML
/// `Accept`, and a log of every URL visited.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

/// The last response of a walk.
#[derive(Debug)]
pub struct Page {
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// Every URL visited, in order.
    pub trail: Vec<String>,
}

impl Browser {
    pub fn new() -> Browser {
        Self::resolving(&[])
    }

    /// A browser that resolves each `(name, address)` to that address (for host names that
    /// only exist in a test).
    pub fn resolving(names: &[(&str, std::net::SocketAddr)]) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let mut builder = super::http_client_builder();
        for (name, addr) in names {
            builder = builder.resolve(name, *addr);
        }
        let client = builder
            .cookie_provider(Arc::clone(&jar))
            .default_headers({
                let mut h = reqwest::header::HeaderMap::new();
                h.insert(
                    reqwest::header::ACCEPT,
                    reqwest::header::HeaderValue::from_static(
                        "text/html,application/xhtml+xml,*/*;q=0.8",
                    ),
                );
                h
            })
            .build()
            .expect("browser client");
        Browser { client, jar }
    }

    /// Opens `url` and follows redirects (at most 20 hops) without filling any form.
    pub async fn open(&self, url: &str) -> Page {
        self.walk(url, None).await
    }

    /// Opens `url`, follows redirects, signs in at the IdP as `user` (password = `password`)
    /// and continues through the consent form, until a page that is neither.
    pub async fn login(&self, url: &str, user: &str, password: &str) -> Page {
        self.walk(url, Some((user, password))).await
    }

    async fn walk(&self, url: &str, creds: Option<(&str, &str)>) -> Page {
        let mut trail = Vec::new();
        let mut next = Request::Get(url.to_owned());
        for _ in 0..30 {
            let (current, response) = match &next {
                Request::Get(u) => (u.clone(), self.client.get(u).send().await),
                Request::Post(u, form) => (u.clone(), self.client.post(u).form(form).send().await),
            };
            trail.push(current.clone());
            let response = response.unwrap_or_else(|e| panic!("{current}: {e}\ntrail: {trail:#?}"));
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if (300..400).contains(&status) {
                let location = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_else(|| panic!("{status} without Location at {current}"));
                let base = url::Url::parse(&current).expect("url");
                next = Request::Get(base.join(location).expect("location").to_string());
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            let base = url::Url::parse(&current).expect("url");
            if let (Some((user, password)), Some(action)) = (creds, form_action(&body, "/login\""))
            {
                let target = base.join(&action).expect("action").to_string();
                next = Request::Post(
                    target,
                    vec![
                        ("login".into(), user.into()),
                        ("password".into(), password.into()),
                    ],
                );
                continue;
            }
            if let (Some(_), Some(action)) = (creds, form_action(&body, "/confirm\"")) {
                let target = base.join(&action).expect("action").to_string();
                next = Request::Post(target, Vec::new());
                continue;
            }
            return Page {
                url: current,
                status,
                headers,
                body,
                trail,
            };
        }
        panic!("too many hops:\n{trail:#?}");
    }

    /// Submits a form (e.g. the sign-out form of the user page).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(url).form(form).send().await.expect("post")
    }

    /// The value of cookie `name` the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url::Url::parse(url).ok()?)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}

enum Request {
    Get(String),
    Post(String, Vec<(String, String)>),
}

/// The `action` of the first `<form method="post" action="…X">` whose action ends with the
/// given suffix (`/login"`, `/confirm"`).
pub fn form_action(html: &str, suffix: &str) -> Option<String> {
    let mut rest = html;
    while let Some(i) = rest.find("action=\"") {
        let after = &rest[i + 8..];
        let end = after.find('"')?;
        let action = &after[..end];
        if format!("{action}\"").ends_with(suffix) {
            return Some(action.replace("&amp;", "&"));
        }
        rest = &after[end..];
    }
    None
}

/// A hidden input's value (`<input type="hidden" name="NAME" value="…">`).
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

/// Path of the repository (for scripts).
pub fn repo_path(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// Whether a path exists (tests assert on required tools with a clear message).
pub fn exists(p: &Path) -> bool {
    p.exists()
}
