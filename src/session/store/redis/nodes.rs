//! The Redis servers a URL names, as clients of the `redis` crate: how to open a command
//! connection to them and where to subscribe.

use ::redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisConnectionInfo, RedisFuture, RedisResult, TlsCertificates, TlsMode, Value,
};

use super::config::{Auth, Endpoint, RedisConfig, Tls, Topology};
use super::Timeouts;
use crate::session::store::StoreError;

/// Clients for the servers of one URL. Each background task owns its own.
pub(super) struct Nodes {
    kind: Kind,
    /// Settings of every command connection.
    connection: AsyncConnectionConfig,
}

enum Kind {
    Standalone(Box<Client>),
    /// Asks the sentinels for the current master at every (re)connection, so a failover is
    /// followed.
    Sentinel(Box<SentinelClient>),
    /// `seeds` are the URL's nodes, where the subscription goes (PUBLISH reaches every node
    /// of a cluster, so one is enough).
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<Client>,
    },
}

/// A command connection: cheap to clone, shared by concurrent operations.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

// === impl Nodes ===

impl Nodes {
    /// Builds the clients; reads `tls_ca_file` if any, connects to nothing.
    pub(super) fn build(config: &RedisConfig, timeouts: Timeouts) -> Result<Self, StoreError> {
        let certificates = certificates(config.tls.as_ref())?;
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.op));
        let kind = match &config.topology {
            Topology::Standalone(endpoint) => {
                Kind::Standalone(Box::new(client(endpoint, config, certificates.as_ref())?))
            }
            Topology::Sentinel { sentinels, master } => {
                let addrs = sentinels
                    .iter()
                    .map(|endpoint| address(endpoint, config.tls.as_ref()));
                let mut builder =
                    SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                        .map_err(build_error)?
                        .set_client_to_redis_db(config.db);
                let Auth { username, password } = &config.auth;
                if let Some(username) = username {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_redis_password(password);
                }
                let Auth { username, password } = &config.sentinel_auth;
                if let Some(username) = username {
                    builder = builder.set_client_to_sentinel_username(username);
                }
                if let Some(password) = password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if let Some(tls) = &config.tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(tls_mode(tls))
                        .set_client_to_sentinel_tls_mode(tls_mode(tls));
                }
                if let Some(certificates) = certificates {
                    builder = builder
                        .set_client_to_redis_certificates(certificates.clone())
                        .set_client_to_sentinel_certificates(certificates);
                }
                Kind::Sentinel(Box::new(builder.build().map_err(build_error)?))
            }
            Topology::Cluster { seeds } => {
                let seeds = seeds
                    .iter()
                    .map(|endpoint| client(endpoint, config, certificates.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(
                    seeds.iter().map(|seed| seed.get_connection_info().clone()),
                )
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.op)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100);
                if let Some(tls) = &config.tls {
                    builder = builder.tls(tls_mode(tls));
                }
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                Kind::Cluster {
                    client: Box::new(builder.build().map_err(build_error)?),
                    seeds,
                }
            }
        };
        Ok(Self { kind, connection })
    }

    /// Opens a command connection (to the current master for Sentinel).
    pub(super) async fn connect(&mut self) -> RedisResult<Conn> {
        match &mut self.kind {
            Kind::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(&self.connection)
                .await
                .map(Conn::Single),
            Kind::Sentinel(sentinel) => sentinel
                .async_get_client()
                .await?
                .get_multiplexed_async_connection_with_config(&self.connection)
                .await
                .map(Conn::Single),
            Kind::Cluster { client, .. } => client.get_async_connection().await.map(Conn::Cluster),
        }
    }

    /// Opens a pub/sub connection. `attempt` rotates through a cluster's seed nodes, so a
    /// dead node is left for the next one.
    pub(super) async fn pubsub(&mut self, attempt: usize) -> RedisResult<PubSub> {
        let client = match &mut self.kind {
            Kind::Standalone(client) => Client::clone(client),
            Kind::Sentinel(sentinel) => sentinel.async_get_client().await?,
            Kind::Cluster { seeds, .. } => match seeds.get(attempt % seeds.len().max(1)) {
                Some(seed) => seed.clone(),
                None => {
                    return Err(::redis::RedisError::from((
                        ::redis::ErrorKind::InvalidClientConfig,
                        "no cluster seed node",
                    )))
                }
            },
        };
        client.get_async_pubsub().await
    }
}

/// A client for one server, with the URL's credentials, database and TLS settings.
fn client(
    endpoint: &Endpoint,
    config: &RedisConfig,
    certificates: Option<&TlsCertificates>,
) -> Result<Client, StoreError> {
    let mut redis = RedisConnectionInfo::default().set_db(config.db);
    if let Some(username) = &config.auth.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &config.auth.password {
        redis = redis.set_password(password);
    }
    let info: ConnectionInfo = address(endpoint, config.tls.as_ref())
        .into_connection_info()
        .map_err(build_error)?
        .set_redis_settings(redis);
    match certificates {
        Some(certificates) => Client::build_with_tls(info, certificates.clone()),
        None => Client::open(info),
    }
    .map_err(build_error)
}

fn address(endpoint: &Endpoint, tls: Option<&Tls>) -> ConnectionAddr {
    match (endpoint, tls) {
        (Endpoint::Tcp { host, port }, None) => ConnectionAddr::Tcp(host.clone(), *port),
        (Endpoint::Tcp { host, port }, Some(tls)) => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: tls.skip_verify,
            tls_params: None,
        },
        (Endpoint::Unix(path), _) => ConnectionAddr::Unix(path.clone()),
    }
}

fn tls_mode(tls: &Tls) -> TlsMode {
    if tls.skip_verify {
        TlsMode::Insecure
    } else {
        TlsMode::Secure
    }
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// The `tls_ca_file` as the only trusted root, if one is configured.
fn certificates(tls: Option<&Tls>) -> Result<Option<TlsCertificates>, StoreError> {
    let Some(path) = tls.and_then(|tls| tls.ca_file.as_ref()) else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|error| StoreError::Config(format!("cannot read tls_ca_file: {error}")))?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|window| window == CERTIFICATE_PEM)
    {
        return Err(StoreError::Config(
            "tls_ca_file holds no PEM certificate".into(),
        ));
    }
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// Client construction only fails on settings, never on the network.
fn build_error(error: ::redis::RedisError) -> StoreError {
    StoreError::Config(format!("redis client: {}", error.category()))
}

// === impl Conn ===

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
