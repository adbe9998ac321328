use std::path::PathBuf;

use super::{Auth, Endpoint, RedisConfig, Tls, Topology};

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint::Tcp {
        host: host.to_owned(),
        port,
    }
}

fn auth(username: Option<&str>, password: Option<&str>) -> Auth {
    Auth {
        username: username.map(str::to_owned),
        password: password.map(str::to_owned),
    }
}

fn parse(url: &str) -> RedisConfig {
    RedisConfig::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"))
}

#[test]
fn standalone() {
    let config = parse("redis://app:p%40ss%3Aw@Redis.Internal:6380/2");
    assert_eq!(
        config.topology,
        Topology::Standalone(tcp("redis.internal", 6380))
    );
    assert_eq!(config.auth, auth(Some("app"), Some("p@ss:w")));
    assert_eq!(config.db, 2);
    assert_eq!(config.tls, None);
    assert_eq!(config.secrets(), vec!["p@ss:w".to_owned()]);

    let config = parse("redis://:pw@[::1]");
    assert_eq!(config.topology, Topology::Standalone(tcp("::1", 6379)));
    assert_eq!(config.auth, auth(None, Some("pw")));
    assert_eq!(config.db, 0);
}

#[test]
fn tls() {
    let config = parse("rediss://host?tls_skip_verify=true");
    assert_eq!(
        config.tls,
        Some(Tls {
            skip_verify: true,
            ca_file: None
        })
    );
    let config = parse("rediss://host:6380/1?tls_ca_file=/etc/ssl/redis%20ca.pem");
    assert_eq!(
        config.tls,
        Some(Tls {
            skip_verify: false,
            ca_file: Some(PathBuf::from("/etc/ssl/redis ca.pem"))
        })
    );
    assert_eq!(config.db, 1);
    for scheme in [
        "rediss+cluster",
        "rediss-cluster",
        "redis+clusters",
        "redis-clusters",
    ] {
        let config = parse(&format!("{scheme}://n1,n2:7000"));
        assert!(config.tls.is_some(), "{scheme}");
        assert_eq!(
            config.topology,
            Topology::Cluster {
                seeds: vec![tcp("n1", 6379), tcp("n2", 7000)]
            }
        );
    }
}

#[test]
fn sentinel_credentials_follow_pomerium() {
    // The authority's password is the sentinels'; the master's come from parameters.
    let config = parse("redis+sentinel://:spw@s1,s2:26380/mymaster/3?username=app&password=mpw");
    assert_eq!(
        config.topology,
        Topology::Sentinel {
            sentinels: vec![tcp("s1", 26379), tcp("s2", 26380)],
            master: "mymaster".to_owned(),
        }
    );
    assert_eq!(config.sentinel_auth, auth(None, Some("spw")));
    assert_eq!(config.auth, auth(Some("app"), Some("mpw")));
    assert_eq!(config.db, 3);
    let mut secrets = config.secrets();
    secrets.sort();
    assert_eq!(secrets, vec!["mpw".to_owned(), "spw".to_owned()]);

    let config = parse("redis+sentinel://s1/mymaster");
    assert_eq!(config.auth, Auth::default());
    assert_eq!(config.sentinel_auth, Auth::default());
}

#[test]
fn unix_socket() {
    let config = parse("unix://:pw@/run/redis/redis.sock?db=5");
    assert_eq!(
        config.topology,
        Topology::Standalone(Endpoint::Unix(PathBuf::from("/run/redis/redis.sock")))
    );
    assert_eq!(config.db, 5);
    assert_eq!(config.auth, auth(None, Some("pw")));
}

#[test]
fn pomerium_tuning_parameters_are_ignored_but_reported() {
    let config = parse("redis://host?dial_timeout=5s&pool_size=10");
    assert_eq!(config.ignored_params, vec!["dial_timeout", "pool_size"]);
}

#[test]
fn debug_output_hides_passwords() {
    let config = parse("redis+sentinel://:spw-secret@s1/m?password=mpw-secret");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("spw-secret") && !shown.contains("mpw-secret"),
        "{shown}"
    );
}
