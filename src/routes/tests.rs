use std::cmp::Reverse;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use regex::Regex;

use super::RouteTable;
use crate::config::{Access, FromUrl, HostPattern, PathMatch, Route, RouteAction, StaticResponse};

/// Builds a route from `scheme://host[:port]` and a matcher spec: `any`, `path:/x`,
/// `prefix:/x` or `regex:/x.*` (anchored here, as config validation does).
fn route(index: usize, from: &str, spec: &str) -> Route {
    let (https, rest) = match from.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, from.strip_prefix("http://").unwrap()),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().unwrap())),
        None => (rest, None),
    };
    let host = match host.strip_prefix('*') {
        Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
        None => HostPattern::Exact(host.to_owned()),
    };
    Route {
        index,
        name: format!("r{index}"),
        id: None,
        description: None,
        logo_url: None,
        from: FromUrl { https, host, port },
        path: matcher(spec),
        action: RouteAction::Response(StaticResponse {
            status: 200,
            body: String::new(),
        }),
        access: Access::default(),
        show_error_details: false,
        allow_path_parameters: false,
    }
}

fn matcher(spec: &str) -> PathMatch {
    match spec.split_once(':') {
        None => PathMatch::Any,
        Some(("path", path)) => PathMatch::Exact(path.to_owned()),
        Some(("prefix", prefix)) => PathMatch::Prefix(prefix.to_owned()),
        Some(("regex", regex)) => PathMatch::Regex(Regex::new(&format!("^(?:{regex})$")).unwrap()),
        Some(_) => panic!("bad spec {spec}"),
    }
}

fn table(routes: &[(&str, &str)]) -> RouteTable {
    let routes: Vec<Route> = routes
        .iter()
        .enumerate()
        .map(|(index, (from, spec))| route(index, from, spec))
        .collect();
    RouteTable::new(&routes)
}

const ROUTES: &[(&str, &str)] = &[
    /* 0 */ ("https://app.example.com", "any"),
    /* 1 */ ("https://app.example.com", "prefix:/api"),
    /* 2 */ ("https://app.example.com", "prefix:/api/v1"),
    /* 3 */ ("https://app.example.com", "path:/api/v1/health"),
    /* 4 */ ("https://app.example.com", "regex:/api/.*/status"),
    /* 5 */ ("https://app.example.com", "prefix:/"),
    /* 6 */ ("https://app.example.com", "regex:/api/v1/.*"),
    /* 7 */ ("https://app.example.com", "prefix:/api"),
    /* 8 */ ("https://*.example.com", "prefix:/wild"),
    /* 9 */ ("https://*.b.example.com", "any"),
    /* 10 */ ("https://app.example.com:8443", "path:/port"),
    /* 11 */ ("https://other.example.com", "path:/only"),
    /* 12 */ ("https://*.example.com", "any"),
    /* 13 */ ("https://App2.Example.COM.", "path:/x"),
    /* 14 */ ("https://regex.example.com", "regex:/r/.*"),
    /* 15 */ ("https://regex.example.com", "regex:/r/x"),
    /* 16 */ ("https://regex.example.com", "any"),
    /* 17 */ ("https://regex.example.com", "any"),
    /* 18 */ ("http://10.0.0.1:8080", "prefix:/ip"),
];

/// `(host, port, path, expected route index)`.
const CASES: &[(&str, u16, &str, Option<usize>)] = &[
    // exact path before prefix before regex before any
    ("app.example.com", 443, "/api/v1/health", Some(3)),
    ("app.example.com", 443, "/api/v1/health/", Some(2)),
    ("app.example.com", 443, "/api/x/status", Some(1)),
    ("app.example.com", 443, "/api/v1/x", Some(2)),
    // longest prefix, on segment boundaries
    ("app.example.com", 443, "/api/v1", Some(2)),
    ("app.example.com", 443, "/api/v1/", Some(2)),
    ("app.example.com", 443, "/api/v1x", Some(1)),
    ("app.example.com", 443, "/api", Some(1)),
    ("app.example.com", 443, "/api/", Some(1)),
    ("app.example.com", 443, "/apix", Some(5)),
    ("app.example.com", 443, "/", Some(5)),
    ("app.example.com", 443, "/anything/else", Some(5)),
    // ports filter
    ("app.example.com", 8443, "/port", Some(10)),
    ("app.example.com", 443, "/port", Some(5)),
    ("app.example.com", 80, "/api", Some(1)),
    ("10.0.0.1", 8080, "/ip/x", Some(18)),
    ("10.0.0.1", 80, "/ip/x", None),
    // regex in declaration order, then the first `any`
    ("regex.example.com", 443, "/r/x", Some(14)),
    ("regex.example.com", 443, "/r/", Some(14)),
    ("regex.example.com", 443, "/r", Some(16)),
    // exact host before wildcard; fall through when the exact host has no match
    ("other.example.com", 443, "/only", Some(11)),
    ("other.example.com", 443, "/only/", Some(12)),
    ("other.example.com", 443, "/wild/x", Some(8)),
    ("other.example.com", 443, "/wildx", Some(12)),
    // wildcards: longest suffix first, one or more labels, never the bare domain
    ("x.b.example.com", 443, "/wild", Some(9)),
    ("x.y.b.example.com", 443, "/", Some(9)),
    ("b.example.com", 443, "/wild", Some(8)),
    ("a.b.c.example.com", 443, "/", Some(12)),
    ("example.com", 443, "/", None),
    ("b-example.com", 443, "/", None),
    ("xexample.com", 443, "/", None),
    (".example.com", 443, "/", None),
    ("", 443, "/", None),
    // case-insensitive hosts, trailing dot ignored
    ("APP.EXAMPLE.COM", 443, "/api", Some(1)),
    ("App.Example.Com.", 443, "/api/v1/health", Some(3)),
    ("app.example.com.", 443, "/", Some(5)),
    ("app2.example.com", 443, "/x", Some(13)),
    ("APP2.example.com.", 443, "/y", Some(12)),
    ("X.B.EXAMPLE.COM", 443, "/", Some(9)),
    ("app.example.com..", 443, "/", None),
];

#[test]
fn precedence_table() {
    let table = table(ROUTES);
    assert_eq!(table.len(), ROUTES.len());
    for &(host, port, path, expected) in CASES {
        assert_eq!(
            table.find(host, port, path),
            expected,
            "{host}:{port}{path}"
        );
    }
}

#[test]
fn port_is_a_filter_not_a_preference() {
    let portless_first = table(&[
        ("https://a.test", "path:/x"),
        ("https://a.test:8443", "path:/x"),
    ]);
    assert_eq!(portless_first.find("a.test", 8443, "/x"), Some(0));
    let port_first = table(&[
        ("https://a.test:8443", "path:/x"),
        ("https://a.test", "path:/x"),
    ]);
    assert_eq!(port_first.find("a.test", 8443, "/x"), Some(0));
    assert_eq!(port_first.find("a.test", 443, "/x"), Some(1));
}

#[test]
fn root_prefix_and_empty_table() {
    let root = table(&[("https://a.test", "prefix:/")]);
    for path in ["/", "/a", "/a/b/"] {
        assert_eq!(root.find("a.test", 443, path), Some(0));
    }
    let empty = RouteTable::new(&[]);
    assert!(empty.is_empty());
    assert_eq!(empty.find("a.test", 443, "/"), None);
}

#[test]
fn long_upper_case_hosts_still_match() {
    let long = format!("{}.test", "a".repeat(300));
    let table = table(&[("https://*.test", "any")]);
    assert_eq!(table.find(&long.to_ascii_uppercase(), 443, "/"), Some(0));
}

#[test]
fn builds_ten_thousand_routes_quickly() {
    let mut routes = Vec::with_capacity(10_000);
    for index in 0..10_000 {
        let (from, path) = match index % 4 {
            0 => (
                format!("https://h{}.example.com", index % 1_000),
                PathMatch::Any,
            ),
            1 => (
                "https://one.example.com".to_owned(),
                PathMatch::Prefix(format!("/p/{index}")),
            ),
            2 => (
                "https://*.example.com".to_owned(),
                PathMatch::Exact(format!("/e/{index}")),
            ),
            _ => (
                format!("https://*.w{}.example.com", index % 100),
                PathMatch::Any,
            ),
        };
        let mut route = route(index, &from, "any");
        route.path = path;
        routes.push(route);
    }
    let started = Instant::now();
    let table = RouteTable::new(&routes);
    let elapsed = started.elapsed();
    // The brief asks for well under 100 ms in release; debug builds are several times slower.
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    assert_eq!(table.len(), 10_000);
    assert_eq!(table.find("one.example.com", 443, "/p/9/x"), Some(9));
    assert_eq!(table.find("one.example.com", 443, "/e/10"), Some(10));
    assert_eq!(table.find("x.w3.example.com", 443, "/"), Some(3));
    // h8 is declared by routes 8, 1008, 2008, ...: the first wins.
    assert_eq!(table.find("h8.example.com", 443, "/"), Some(8));
}

// === properties ===

const HOSTS: &[&str] = &[
    "a.example.com",
    "b.a.example.com",
    "*.example.com",
    "*.a.example.com",
    "c.test",
];
const PORTS: &[Option<u16>] = &[None, Some(443), Some(8443)];
const SPECS: &[&str] = &[
    "any",
    "path:/",
    "path:/a",
    "path:/a/b",
    "path:/a/",
    "prefix:/",
    "prefix:/a",
    "prefix:/a/b",
    "prefix:/ab",
    "regex:/a/.*",
    "regex:.*b",
    "regex:/a",
];
const REQUEST_HOSTS: &[&str] = &[
    "a.example.com",
    "b.a.example.com",
    "x.b.a.example.com",
    "z.example.com",
    "example.com",
    "c.test",
    "A.Example.com.",
];
const REQUEST_PATHS: &[&str] = &["/", "/a", "/a/", "/a/b", "/ab", "/a/bc", "/b", "/x/b"];

fn from_of(host: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    }
}

/// The precedence rules written as one sort key over every route, no table.
fn reference(routes: &[(usize, usize, usize)], host: &str, port: u16, path: &str) -> Option<usize> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    routes
        .iter()
        .enumerate()
        .filter_map(|(index, &(h, p, s))| {
            let pattern = HOSTS[h];
            let host_rank = match pattern.strip_prefix('*') {
                None if pattern == host => 0,
                None => return None,
                Some(suffix) if host.ends_with(suffix) && host.len() > suffix.len() => {
                    1_000 - suffix.len()
                }
                Some(_) => return None,
            };
            if PORTS[p].is_some_and(|p| p != port) {
                return None;
            }
            let (kind, length) = match matcher(SPECS[s]) {
                PathMatch::Exact(exact) if exact == path => (0, 0),
                PathMatch::Prefix(prefix)
                    if prefix == "/"
                        || path == prefix
                        || path.starts_with(&format!("{prefix}/")) =>
                {
                    (1, prefix.len())
                }
                PathMatch::Regex(regex) if regex.is_match(path) => (2, 0),
                PathMatch::Any => (3, 0),
                _ => return None,
            };
            Some(((host_rank, kind, Reverse(length), index), index))
        })
        .min()
        .map(|(_, index)| index)
}

fn build(routes: &[(usize, usize, usize)]) -> RouteTable {
    let routes: Vec<Route> = routes
        .iter()
        .enumerate()
        .map(|(index, &(h, p, s))| route(index, &from_of(HOSTS[h], PORTS[p]), SPECS[s]))
        .collect();
    RouteTable::new(&routes)
}

fn route_specs(max: usize) -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec((0..HOSTS.len(), 0..PORTS.len(), 0..SPECS.len()), 0..max)
}

proptest! {
    #[test]
    fn agrees_with_the_reference(
        routes in route_specs(16),
        host in prop::sample::select(REQUEST_HOSTS),
        port in prop::sample::select(vec![443u16, 8443, 80]),
        path in prop::sample::select(REQUEST_PATHS),
    ) {
        let table = build(&routes);
        prop_assert_eq!(table.find(host, port, path), reference(&routes, host, port, path));
    }

    /// With at most one route per (host, matcher) and no regex or `any` ties, the winner is
    /// the same route whatever the declaration order.
    #[test]
    fn winner_is_independent_of_declaration_order(
        (routes, shuffled) in route_specs(24)
            .prop_map(|mut routes| {
                let mut seen = std::collections::HashSet::new();
                routes.retain(|&(h, _, s)| {
                    let tie_class = if SPECS[s].starts_with("regex:") || SPECS[s] == "any" {
                        "tie"
                    } else {
                        SPECS[s]
                    };
                    seen.insert((h, tie_class))
                });
                routes
            })
            .prop_flat_map(|routes| (Just(routes.clone()), Just(routes).prop_shuffle())),
        host in prop::sample::select(REQUEST_HOSTS),
        port in prop::sample::select(vec![443u16, 8443]),
        path in prop::sample::select(REQUEST_PATHS),
    ) {
        let winner = |routes: &[(usize, usize, usize)]| {
            build(routes).find(host, port, path).map(|index| routes[index])
        };
        prop_assert_eq!(winner(&routes), winner(&shuffled));
    }
}
