//! Test helper: real `redis-server` processes (standalone, TLS, Sentinel, Cluster) started
//! by the tests on free loopback ports and killed when dropped.
//!
//! A missing `redis-server` is a test failure with a clear message, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// How long a server gets to accept connections after being spawned.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// One `redis-server` process.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    /// Where its files live (config, cluster state, log); removed on drop.
    dir: TempDir,
    /// The CA of a TLS-only server.
    tls_ca: Option<Vec<u8>>,
}

/// A three-master Redis Cluster without replicas.
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisServer>,
}

/// Files of a throwaway CA and a server certificate for `localhost` and `127.0.0.1`.
pub(crate) struct TestCa {
    pub(crate) ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

// === impl RedisServer ===

impl RedisServer {
    /// A standalone server without persistence.
    pub(crate) async fn start() -> Self {
        Self::start_with(|_port, _dir| Vec::new(), None).await
    }

    /// A standalone server with extra `redis-server` arguments (e.g. `--requirepass`).
    pub(crate) async fn start_args(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        Self::start_with(move |_port, _dir| extra.clone(), None).await
    }

    /// A replica of `master`.
    pub(crate) async fn start_replica_of(master: &RedisServer) -> Self {
        let master_port = master.port.to_string();
        Self::start_with(
            move |_port, _dir| {
                vec![
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    master_port.clone(),
                ]
            },
            None,
        )
        .await
    }

    /// A standalone server speaking only TLS, with a certificate issued by `ca`.
    pub(crate) async fn start_tls(ca: &TestCa) -> Self {
        let (cert, key, ca_file) = (
            path_arg(&ca.cert_file),
            path_arg(&ca.key_file),
            path_arg(&ca.ca_file),
        );
        Self::start_with(
            move |port, _dir| {
                vec![
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    cert.clone(),
                    "--tls-key-file".into(),
                    key.clone(),
                    "--tls-ca-cert-file".into(),
                    ca_file.clone(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            },
            Some(std::fs::read(&ca.ca_file).unwrap()),
        )
        .await
    }

    /// A Sentinel monitoring `master` under the name `mymaster`, with quorum 1; it fails
    /// over after `down_after` of silence.
    pub(crate) async fn start_sentinel(master: &RedisServer, down_after: Duration) -> Self {
        let master_port = master.port;
        let down_after = down_after.as_millis();
        Self::start_with(
            move |port, dir| {
                let config = dir.join("sentinel.conf");
                let text = format!(
                    "port {port}\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds mymaster {down_after}\n\
                     sentinel failover-timeout mymaster 2000\n"
                );
                std::fs::write(&config, text).unwrap();
                vec![path_arg(&config), "--sentinel".into()]
            },
            None,
        )
        .await
    }

    /// A server that is part of a cluster to be formed.
    async fn start_cluster_node() -> Self {
        Self::start_with(
            |port, dir| {
                vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    path_arg(&dir.join(format!("nodes-{port}.conf"))),
                ]
            },
            None,
        )
        .await
    }

    /// Spawns with `--port` and the arguments built by `extra` for the chosen port; tries
    /// other ports if one was taken meanwhile.
    /// A standalone server that keeps its data across [`RedisServer::restart`] (append-only
    /// file, fsync on every write): a real stop and start, not a flush.
    pub(crate) async fn start_persistent() -> Self {
        Self::start_with_tail(
            |_port, _dir| Vec::new(),
            &["--appendonly", "yes", "--appendfsync", "always"],
            None,
        )
        .await
    }

    async fn start_with(
        extra: impl Fn(u16, &Path) -> Vec<String>,
        tls_ca: Option<Vec<u8>>,
    ) -> Self {
        Self::start_with_tail(extra, &[], tls_ca).await
    }

    /// `extra` goes first (a config file must), `tail` after the defaults (so it overrides them).
    async fn start_with_tail(
        extra: impl Fn(u16, &Path) -> Vec<String>,
        tail: &[&str],
        tls_ca: Option<Vec<u8>>,
    ) -> Self {
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            // A config file, if any, must come first.
            let mut args = extra(port, dir.path());
            // A TLS server listens on `--tls-port` only.
            let plain_port = if tls_ca.is_some() { 0 } else { port };
            args.extend(["--port".to_owned(), plain_port.to_string()]);
            args.extend(
                ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"].map(str::to_owned),
            );
            args.push("--dir".into());
            args.push(path_arg(dir.path()));
            args.extend(tail.iter().map(|a| (*a).to_owned()));
            let mut server = Self {
                child: None,
                port,
                args,
                dir,
                tls_ca: tls_ca.clone(),
            };
            server.spawn();
            if server.wait_ready().await {
                return server;
            }
            last_log = server.log();
            server.stop();
        }
        panic!("redis-server did not become ready; last log:\n{last_log}");
    }

    /// A standalone server on a given port (for "Redis appears later" tests).
    pub(crate) async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--port".to_owned(), port.to_string()];
        args.extend(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"].map(str::to_owned));
        args.push("--dir".into());
        args.push(path_arg(dir.path()));
        let mut server = Self {
            child: None,
            port,
            args,
            dir,
            tls_ca: None,
        };
        server.spawn();
        assert!(
            server.wait_ready().await,
            "redis-server did not start on port {port}:\n{}",
            server.log()
        );
        server
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL: no chance to say goodbye) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id).unwrap();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again with the same port and arguments.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(
            self.wait_ready().await,
            "redis-server did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// Sends one command with the `redis` crate and returns its answer.
    pub(crate) async fn command(&self, args: &[&[u8]]) -> ::redis::Value {
        let mut conn = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut command = ::redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(&mut conn).await.unwrap()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run redis-server ({error}): the session store tests need a real Redis; \
                     install Debian's redis-server package (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_exited)) = child.try_wait() {
                    return false;
                }
            }
            if self.answers().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Whether our own process answers on the port (and not some other test's server that
    /// took the port first: then ours exited, and another port is tried).
    async fn answers(&self) -> bool {
        let probe = async {
            let mut conn = self
                .client()
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            let info: String = ::redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.lines()
                .find_map(|line| line.strip_prefix("process_id:"))
                .and_then(|pid| pid.trim().parse::<u32>().ok())
        };
        let ours = self.child.as_ref().map(Child::id);
        matches!(
            tokio::time::timeout(Duration::from_millis(500), probe).await,
            Ok(Some(pid)) if Some(pid) == ours
        )
    }

    /// A client with the server's password and CA, if any.
    fn client(&self) -> ::redis::Client {
        use ::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates};
        let mut redis = RedisConnectionInfo::default();
        if let Some(pair) = self.args.windows(2).find(|pair| pair[0] == "--requirepass") {
            redis = redis.set_password(&pair[1]);
        }
        let host = "127.0.0.1".to_owned();
        let addr = match self.tls_ca {
            None => ConnectionAddr::Tcp(host, self.port),
            Some(_) => ConnectionAddr::TcpTls {
                host,
                port: self.port,
                insecure: false,
                tls_params: None,
            },
        };
        let info = addr
            .into_connection_info()
            .unwrap()
            .set_redis_settings(redis);
        match &self.tls_ca {
            None => ::redis::Client::open(info).unwrap(),
            Some(ca) => ::redis::Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )
            .unwrap(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// === impl RedisCluster ===

impl RedisCluster {
    /// Three masters covering all slots, ready (`cluster_state:ok` on every node).
    pub(crate) async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_cluster_node().await);
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = create
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run redis-cli ({error}): install redis-tools"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok().await;
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub(crate) async fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let info = node.command(&[b"CLUSTER", b"INFO"]).await;
                let text = match info {
                    ::redis::Value::BulkString(bytes) => {
                        String::from_utf8_lossy(&bytes).into_owned()
                    }
                    ::redis::Value::VerbatimString { text, .. } => text,
                    other => format!("{other:?}"),
                };
                if text.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok in time:\n{text}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// === impl TestCa ===

impl TestCa {
    /// Writes a fresh CA and a server certificate signed by it into `dir`.
    pub(crate) fn create(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let files = Self {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        };
        std::fs::write(&files.ca_file, ca.pem()).unwrap();
        std::fs::write(&files.cert_file, server.pem()).unwrap();
        std::fs::write(&files.key_file, server_key.serialize_pem()).unwrap();
        files
    }
}

/// A loopback port that is free now, and whose cluster bus port (+10000) is free too. Taken
/// below the kernel's ephemeral range so outgoing connections do not grab it meanwhile, and
/// handed out in sequence so concurrent tests of this process never pick the same one.
pub(crate) fn free_port() -> u16 {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU16::new(rand::random_range(0..10_000)));
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let port = 20_000 + next.fetch_add(1, Ordering::Relaxed) % 10_000;
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}
