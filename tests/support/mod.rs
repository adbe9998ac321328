//! Shared harness for the integration tests: a `Gatehouse` process guard, echo upstreams,
//! a raw-socket client, test certificates and HTTP clients. Everything listens on ports
//! chosen at run time and is stopped on drop.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod h2;
pub mod hpack;
pub mod idp;
pub mod load;
pub mod raw;
pub mod tcp_proxy;
pub mod tls;
pub mod upstream;
pub mod ws;

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub use raw::{raw_request, raw_request_from, try_raw_request, RawConn, RawResponse};
pub use upstream::Upstream;

/// How long `Gatehouse::start` waits for `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A `127.0.0.1:PORT` address that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

/// `gatehouse check -c FILE` on `yaml` written to a fresh file: the exit code (-1 if killed),
/// what it printed, the file's path and its directory (removed on drop).
pub fn check_config(yaml: &str) -> (i32, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text, path, dir)
}

/// A running `gatehouse run -c FILE`, killed on drop. Its output goes to `gatehouse.log` in
/// its tempdir and is printed when the test thread panics.
pub struct Gatehouse {
    /// The public listener (`address`).
    pub addr: SocketAddr,
    /// The admin listener (`metrics_address`).
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Child,
}

impl Gatehouse {
    /// Starts gatehouse with `insecure_server: true` and the given YAML (routes etc.).
    pub async fn plain(body: &str) -> Gatehouse {
        Self::start(&format!("insecure_server: true\n{body}")).await
    }

    /// Starts gatehouse with `address` and `metrics_address` on fresh ports, followed by
    /// `body` (which says whether the listener is TLS). Waits until `/readyz` answers 200.
    pub async fn start(body: &str) -> Gatehouse {
        Self::start_at(free_addr(), body).await
    }

    /// [`Gatehouse::start`] on a given public address (when the config must name it, e.g.
    /// for an IdP client's redirect URI registered before gatehouse starts).
    pub async fn start_at(addr: SocketAddr, body: &str) -> Gatehouse {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = free_addr();
        let config_path = dir.path().join("gatehouse.yaml");
        let log_path = dir.path().join("gatehouse.log");
        fs::write(&config_path, compose(addr, admin, body)).expect("write config");
        let log = fs::File::create(&log_path).expect("create log");
        let child = Command::new(binary())
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .arg("--upgrade-sock")
            .arg(dir.path().join("upgrade.sock"))
            .arg("--pid-file")
            .arg(dir.path().join("gatehouse.pid"))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn gatehouse");
        let mut gh = Gatehouse {
            addr,
            admin,
            dir,
            config_path,
            log_path,
            child,
        };
        gh.wait_ready().await;
        gh
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gatehouse exited before ready ({status}):\n{}", self.log());
            }
            let probe = format!(
                "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.admin
            );
            if let Ok(r) = try_raw_request(self.admin, probe.as_bytes()).await {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "gatehouse not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tempdir holding the config and the log; tests may put certificates here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT{path}` of the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://HOST:PORT{path}`, for clients that resolve `HOST` to the public listener.
    pub fn host_url(&self, scheme: &str, host: &str, path: &str) -> String {
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// Rewrites the config file in place (same ports) without signalling.
    pub fn write_config(&self, body: &str) {
        fs::write(&self.config_path, compose(self.addr, self.admin, body)).expect("write config");
    }

    /// Rewrites the config file (plain listener) but restores its modification time, so
    /// the file watcher sees no change and only a SIGHUP can make gatehouse reload it.
    pub fn write_config_unnoticed(&self, body: &str) {
        let before = fs::metadata(&self.config_path)
            .and_then(|m| m.modified())
            .expect("config mtime");
        self.write_config(&format!("insecure_server: true\n{body}"));
        fs::File::options()
            .write(true)
            .open(&self.config_path)
            .and_then(|f| f.set_modified(before))
            .expect("restore config mtime");
    }

    /// Rewrites the config file (plain listener) and sends SIGHUP.
    pub fn reload_with(&self, body: &str) {
        self.write_config(&format!("insecure_server: true\n{body}"));
        self.sighup();
    }

    /// Sends SIGHUP to the process.
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// Sends a signal (`TERM`, `QUIT`, `HUP`…) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a second process on the same config that takes over this one's listening
    /// sockets (Pingora's graceful upgrade); the caller then sends SIGQUIT to this one.
    pub fn spawn_upgrade(&self) -> Child {
        let log = fs::File::create(self.dir.path().join("gatehouse-upgraded.log")).expect("log");
        Command::new(binary())
            .arg("run")
            .arg("-c")
            .arg(&self.config_path)
            .arg("--upgrade")
            .arg("--upgrade-sock")
            .arg(self.dir.path().join("upgrade.sock"))
            .arg("--pid-file")
            .arg(self.dir.path().join("gatehouse-upgraded.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn upgraded gatehouse")
    }

    /// GET on the admin listener; returns the response.
    pub async fn admin_get(&self, path: &str) -> RawResponse {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        );
        raw_request(self.admin, req.as_bytes()).await
    }

    /// A plain GET through the public listener with the given Host, over a fresh connection.
    pub async fn get(&self, host: &str, path: &str) -> RawResponse {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        raw_request(self.addr, req.as_bytes()).await
    }

    /// An HTTP client resolving each of `hosts` to the public listener.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let mut b = http_client_builder();
        for h in hosts {
            b = b.resolve(h, self.addr);
        }
        b.build().expect("client")
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- gatehouse log ({}) -----\n{}\n----- end -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

fn compose(addr: SocketAddr, admin: SocketAddr, body: &str) -> String {
    format!("address: {addr}\nmetrics_address: {admin}\n{body}")
}

/// reqwest defaults for tests: no proxy from the environment, no redirects, bounded time.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A route block allowing public access, for YAML composed in tests.
pub fn public_route(from: &str, matcher: &str, to: &str, extra: &str) -> String {
    let mut s = format!("  - from: {from}\n");
    if !matcher.is_empty() {
        s.push_str(&format!("    {matcher}\n"));
    }
    s.push_str(&format!(
        "    to: {to}\n    allow_public_unauthenticated_access: true\n"
    ));
    // `extra` is YAML at the route's own indentation level (flow style keeps it one-line).
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s
}

/// Asserts a gatehouse error page in JSON: status, reason phrase, and a request id equal
/// to the `X-Request-Id` header.
pub fn assert_error_page(r: &RawResponse, status: u16, reason: &str) {
    assert_eq!(r.status, status, "status; response:\n{}", r.dump());
    let id = r
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id:\n{}", r.dump()));
    assert!(!id.is_empty(), "empty X-Request-Id");
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("error page is not JSON ({e}):\n{}", r.dump()));
    assert_eq!(v["status"], status, "body status: {v}");
    assert_eq!(v["error"], reason, "body error: {v}");
    assert_eq!(v["request_id"], id, "body request_id vs X-Request-Id: {v}");
}
