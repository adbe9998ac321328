//! The route table: which configured route serves a request.
//!
//! Hosts first (exact, then wildcards from the longest suffix to the shortest), then the most
//! specific path within the host: `path` (exact) before `prefix` (longest first, on segment
//! boundaries) before `regex` (declaration order) before a route without a path matcher. Ties
//! go to the route declared first. A route whose `from` has a port only serves that port.
//! When no route of a host group matches the path, the next group is tried.
//!
//! Pure: built once per config snapshot, then read concurrently without locks.

use std::collections::HashMap;

use regex::Regex;

use crate::config::{HostPattern, PathMatch, Route};

/// Routes compiled for lookup by host, port and canonical path.
///
/// Built once per config snapshot by [`RouteTable::new`]; [`RouteTable::find`] does not
/// allocate for lower-case hosts.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Keyed by the lower-case host without a trailing dot.
    exact_hosts: HashMap<Box<str>, HostGroup>,
    /// Keyed by the suffix with its leading dot (`*.example.com` → `.example.com`).
    wildcard_hosts: HashMap<Box<str>, HostGroup>,
}

/// The routes of one host pattern, most specific first.
#[derive(Debug, Clone, Default)]
struct HostGroup {
    candidates: Vec<Candidate>,
}

#[derive(Debug, Clone)]
struct Candidate {
    matcher: Matcher,
    /// `None`: any port.
    port: Option<u16>,
    /// The route's `index` in the config.
    index: usize,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(Box<str>),
    /// Without a trailing `/`, except the root `/` which matches every path.
    Prefix(Box<str>),
    /// Anchored by config validation.
    Regex(Regex),
    Any,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles `routes` (in declaration order, each carrying its `index`) into a table.
    ///
    /// Called when a config snapshot is built. Sorting happens here so that
    /// [`RouteTable::find`] only walks candidates in order. Host patterns are lower-cased and
    /// stripped of a trailing dot defensively, although config validation already does so.
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut table = RouteTable::default();
        for route in routes {
            let (hosts, host) = match &route.from.host {
                HostPattern::Exact(host) => (&mut table.exact_hosts, host),
                HostPattern::Wildcard(suffix) => (&mut table.wildcard_hosts, suffix),
            };
            let key = normalize_pattern(host);
            hosts.entry(key).or_default().candidates.push(Candidate {
                matcher: Matcher::from_config(&route.path),
                port: route.from.port,
                index: route.index,
            });
        }
        for group in table
            .exact_hosts
            .values_mut()
            .chain(table.wildcard_hosts.values_mut())
        {
            group.candidates.sort_by_key(Candidate::precedence);
        }
        table
    }

    /// Returns the `index` of the route that serves a request, or `None` (gatehouse's 404).
    ///
    /// `host` is the request host without port (case-insensitive; one trailing dot ignored),
    /// `port` the effective port (explicit in Host/:authority, else the listener's), and
    /// `path` the canonical path from [`crate::path::canonicalize`], without the query.
    /// Allocates only for a host with upper-case letters longer than 255 bytes.
    pub fn find(&self, host: &str, port: u16, path: &str) -> Option<usize> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut buf = [0u8; 255];
        let owned: String;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            match buf.get_mut(..host.len()) {
                Some(lower) => {
                    lower.copy_from_slice(host.as_bytes());
                    lower.make_ascii_lowercase();
                    // Lower-casing ASCII keeps UTF-8 valid, so this never fails.
                    std::str::from_utf8(lower).ok()?
                }
                None => {
                    owned = host.to_ascii_lowercase();
                    &owned
                }
            }
        } else {
            host
        };

        if let Some(index) = self
            .exact_hosts
            .get(host)
            .and_then(|group| group.find(port, path))
        {
            return Some(index);
        }
        if self.wildcard_hosts.is_empty() {
            return None;
        }
        // Leftmost dot first is the longest suffix first. A dot at 0 would let
        // `*.example.com` match `.example.com`, which is not a host with a label there.
        host.match_indices('.')
            .filter(|&(at, _)| at > 0)
            .filter_map(|(at, _)| self.wildcard_hosts.get(&host[at..]))
            .find_map(|group| group.find(port, path))
    }

    /// The number of routes in the table.
    pub fn len(&self) -> usize {
        self.exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .map(|group| group.candidates.len())
            .sum()
    }

    /// Whether the table has no routes (every request is a 404).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalize_pattern(host: &str) -> Box<str> {
    host.strip_suffix('.')
        .unwrap_or(host)
        .to_ascii_lowercase()
        .into_boxed_str()
}

// === impl HostGroup ===

impl HostGroup {
    fn find(&self, port: u16, path: &str) -> Option<usize> {
        self.candidates
            .iter()
            .find(|c| c.port.is_none_or(|p| p == port) && c.matcher.matches(path))
            .map(|c| c.index)
    }
}

// === impl Candidate ===

impl Candidate {
    /// Sort key: matcher kind, then longer prefixes first, then declaration order.
    fn precedence(&self) -> (u8, std::cmp::Reverse<usize>, usize) {
        let (kind, length) = match &self.matcher {
            Matcher::Exact(_) => (0, 0),
            Matcher::Prefix(prefix) => (1, prefix.len()),
            Matcher::Regex(_) => (2, 0),
            Matcher::Any => (3, 0),
        };
        (kind, std::cmp::Reverse(length), self.index)
    }
}

// === impl Matcher ===

impl Matcher {
    fn from_config(path: &PathMatch) -> Matcher {
        match path {
            PathMatch::Any => Matcher::Any,
            PathMatch::Exact(exact) => Matcher::Exact(exact.as_str().into()),
            PathMatch::Prefix(prefix) => Matcher::Prefix(prefix.as_str().into()),
            PathMatch::Regex(regex) => Matcher::Regex(regex.clone()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(exact) => path == &**exact,
            Matcher::Prefix(prefix) => {
                // A prefix ending in `/` (the root, or a config that kept one) already ends
                // on a boundary; otherwise the next byte must start a segment.
                path.starts_with(&**prefix)
                    && (prefix.ends_with('/')
                        || path.as_bytes().get(prefix.len()).is_none_or(|&b| b == b'/'))
            }
            Matcher::Regex(regex) => regex.is_match(path),
            Matcher::Any => true,
        }
    }
}

#[cfg(test)]
mod tests;
