//! Process wiring: the Pingora server with the public proxy, the optional http→https
//! redirect listener, the admin listener and the supervisor.

use std::{path::Path, sync::Arc};

use pingora_core::{
    apps::http_app::HttpServer,
    apps::HttpServerOptions,
    listeners::{L4BufferSettings, ListenerConfig},
    protocols::http::v2::server::H2Options,
    server::{configuration::Opt, configuration::ServerConf, Server},
    services::{background::background_service, listening::Service},
};

use crate::{
    admin::{Admin, HttpsRedirect},
    auth::{Auth, Fallbacks},
    config,
    downstream::Downstream,
    listeners,
    metrics::Metrics,
    proxy::Gatehouse,
    snapshot::{Shared, Snapshot},
    supervisor::Supervisor,
};

/// The read buffer of each downstream connection. Pingora's default, 64 KiB, is allocated for
/// every connection, idle ones included: 90 KiB RSS per kept-alive connection, 30 KiB with
/// 4 KiB, at the same req/s (measured with 10,000 idle connections; larger reads bypass
/// the buffer anyway).
const DOWNSTREAM_READ_BUFFER: usize = 4 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    #[error("{0}")]
    Build(#[from] crate::snapshot::BuildError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("identity: {0}")]
    Identity(String),
}

/// Options of `gatehouse run` that are not in the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take over the listening sockets of a running instance (Pingora graceful upgrade).
    pub upgrade: bool,
    /// Unix socket path used to hand over listeners on upgrade.
    pub upgrade_sock: Option<String>,
    /// PID file path.
    pub pid_file: Option<String>,
}

/// Loads the config at `path`, builds everything and serves until shutdown. Never returns
/// on success.
pub fn run(path: &Path, options: RunOptions) -> Result<(), StartError> {
    let loaded = config::load(path)?;
    for warning in &loaded.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    let metrics = Metrics::new()?;
    let fallbacks = Fallbacks::generate().map_err(StartError::Identity)?;
    let snapshot = Snapshot::build(loaded.config, 1, None, &metrics, &fallbacks)?;
    let config = snapshot.config.clone();
    if snapshot.keys.generated_cookie_secret {
        tracing::warn!(
            "no cookie_secret configured: a random one is used, so sessions end when gatehouse \
             restarts (set one from `gatehouse keygen`)"
        );
    }
    if config.identity.signing_key_pem.is_none() {
        tracing::warn!(
            "no signing_key configured: identity assertions are signed with a key generated \
             at start (set one from `gatehouse keygen`; every fleet member needs the same)"
        );
    }
    let auth = Auth::start(&config, metrics.identity.clone()).map_err(StartError::Identity)?;
    let shared = Arc::new(Shared::new(
        snapshot,
        metrics,
        path.to_path_buf(),
        auth,
        fallbacks,
    ));

    let mut conf = ServerConf {
        threads: if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        },
        grace_period_seconds: Some(config.shutdown_grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        // One single-threaded runtime per worker thread, each connection staying on its
        // thread (as nginx workers): measured ~12% more req/s than work stealing on a core.
        work_stealing: false,
        ..ServerConf::default()
    };
    if let Some(sock) = options.upgrade_sock {
        conf.upgrade_sock = sock;
    }
    if let Some(pid) = options.pid_file {
        conf.pid_file = pid;
    }
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let tls = !config.insecure_server;
    let proxy_app = |h2c: bool| {
        let mut app = pingora_proxy::http_proxy(
            &server.configuration,
            Gatehouse::new(Arc::clone(&shared), tls),
        );
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        // An HTTP/2 connection with no request in flight (a silent one, or one holding an
        // unfinished header block) is closed like an idle HTTP/1 keep-alive connection;
        // Pingora's default keeps it forever. Fixed for the process, as the listeners are.
        options.h2_idle_timeout = (!config.timeout_idle.is_zero()).then_some(config.timeout_idle);
        app.server_options = Some(options);
        app.h2_options = Some(h2_options());
        app
    };
    // h2c is detected once per connection by `Downstream`, not by Pingora per request. The
    // header deadline is fixed for the process (a reload cannot change it).
    let app = Downstream::new(
        Arc::clone(&shared),
        proxy_app(false),
        (!tls).then(|| proxy_app(true)),
        config.request_header_timeout,
    );
    let mut proxy = Service::new("gatehouse".to_owned(), app);
    let address = config.address.to_string();
    let mut endpoint = ListenerConfig::tcp(address.clone())
        .l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER));
    if tls {
        let settings =
            listeners::tls_settings(Arc::clone(&shared), config.downstream_mtls.as_ref())
                .map_err(StartError::Tls)?;
        endpoint = endpoint.tls(settings);
    }
    proxy.add_listener(endpoint);
    server.add_service(proxy);

    if let Some(addr) = config.http_redirect_addr {
        let mut redirect = Service::new(
            "http redirect".to_owned(),
            HttpServer::new_app(HttpsRedirect),
        );
        redirect.add_tcp(&addr.to_string());
        server.add_service(redirect);
    }
    if let Some(addr) = config.metrics_address {
        let mut admin = Service::new(
            "admin".to_owned(),
            HttpServer::new_app(Admin::new(Arc::clone(&shared))),
        );
        admin.threads = Some(1);
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }
    let mut supervisor = background_service("supervisor", Supervisor::new(shared));
    supervisor.threads = Some(1);
    server.add_service(supervisor);
    tracing::info!(%address, tls, "gatehouse starting");
    server.run_forever()
}

/// Explicit HTTP/2 limits (SECURITY.md principle 8).
fn h2_options() -> H2Options {
    let mut h2 = pingora_core::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(128)
        .max_header_list_size(64 * 1024)
        .initial_window_size(1 << 20)
        .max_send_buffer_size(1 << 20)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(Some(256));
    h2
}
