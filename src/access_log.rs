//! The access log: one JSON line per request on stderr, with the fields chosen by
//! `access_log_fields`. Authorization outcomes (user, decision, reasons) are in every line,
//! so who reached what can be audited from the log alone. Secrets never appear: no cookie,
//! no Authorization header, no query string (it carries `code`, `state` and tokens).
//!
//! Lines are written by hand into a per-thread buffer (one `write` per line, no allocation
//! once the buffer has grown); they are emitted at `info` level of the `access` target, so
//! `log_level: warn` (or `RUST_LOG=access=off`) turns them off.

use std::{
    cell::RefCell,
    fmt::Write as _,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime},
};

use crate::policy::Reasons;

/// One field of an access line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Time,
    RequestId,
    Route,
    Method,
    Host,
    Path,
    Status,
    Duration,
    UpstreamDuration,
    BytesSent,
    BytesReceived,
    Upstream,
    Ip,
    User,
    Email,
    Decision,
    Reasons,
    /// Why proxying failed (upstream error kind, `client`, `internal`), else null.
    Error,
    UserAgent,
}

/// The fields of a line when `access_log_fields` is not set: all but the user agent.
pub const DEFAULT_FIELDS: [Field; 18] = [
    Field::Time,
    Field::RequestId,
    Field::Route,
    Field::Method,
    Field::Host,
    Field::Path,
    Field::Status,
    Field::Duration,
    Field::UpstreamDuration,
    Field::BytesSent,
    Field::BytesReceived,
    Field::Upstream,
    Field::Ip,
    Field::User,
    Field::Email,
    Field::Decision,
    Field::Reasons,
    Field::Error,
];

/// Field names, and the Pomerium names accepted for the same thing.
const NAMES: &[(&str, Field)] = &[
    ("time", Field::Time),
    ("request-id", Field::RequestId),
    ("route", Field::Route),
    ("upstream-cluster", Field::Route),
    ("method", Field::Method),
    ("host", Field::Host),
    ("authority", Field::Host),
    ("path", Field::Path),
    ("status", Field::Status),
    ("response-code", Field::Status),
    ("duration", Field::Duration),
    ("upstream-duration", Field::UpstreamDuration),
    ("bytes-sent", Field::BytesSent),
    ("size", Field::BytesSent),
    ("bytes-received", Field::BytesReceived),
    ("upstream", Field::Upstream),
    ("ip", Field::Ip),
    ("user", Field::User),
    ("email", Field::Email),
    ("decision", Field::Decision),
    ("reasons", Field::Reasons),
    ("error", Field::Error),
    ("user-agent", Field::UserAgent),
];

/// What is known about one finished request.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    /// The canonical path (without the query).
    pub path: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    pub upstream: Option<SocketAddr>,
    pub ip: Option<IpAddr>,
    pub user: Option<&'a str>,
    pub email: Option<&'a str>,
    /// `allow`, `deny` or `login`; none for requests decided before a policy (404, 400, own
    /// endpoints).
    pub decision: Option<&'static str>,
    pub reasons: Reasons,
    pub error: Option<&'static str>,
    pub user_agent: Option<&'a str>,
}

// === impl Field ===

impl Field {
    /// The field named `name` (gatehouse's names and Pomerium's aliases).
    pub fn from_name(name: &str) -> Option<Field> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The key of this field in a line.
    pub const fn key(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::RequestId => "request_id",
            Field::Route => "route",
            Field::Method => "method",
            Field::Host => "host",
            Field::Path => "path",
            Field::Status => "status",
            Field::Duration => "duration_ms",
            Field::UpstreamDuration => "upstream_duration_ms",
            Field::BytesSent => "bytes_sent",
            Field::BytesReceived => "bytes_received",
            Field::Upstream => "upstream",
            Field::Ip => "ip",
            Field::User => "user",
            Field::Email => "email",
            Field::Decision => "decision",
            Field::Reasons => "reasons",
            Field::Error => "error",
            Field::UserAgent => "user_agent",
        }
    }

    /// Every accepted name, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(n, _)| *n)
    }
}

/// Whether access lines are wanted at the current log level.
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Writes one line to stderr (a single write; the buffer is reused by the thread).
pub fn emit(fields: &[Field], entry: &Entry<'_>) {
    thread_local! {
        static BUFFER: RefCell<String> = RefCell::new(String::with_capacity(512));
    }
    BUFFER.with(|buffer| {
        let Ok(mut line) = buffer.try_borrow_mut() else {
            return;
        };
        line.clear();
        format_line(fields, entry, &mut line);
        // Nowhere to report a failed log write.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
}

/// Formats one JSON line (with its newline) into `out` (the time is now); the tests read it back.
pub fn format_line(fields: &[Field], e: &Entry<'_>, out: &mut String) {
    out.push_str("{\"level\":\"INFO\",\"target\":\"access\"");
    for field in fields {
        out.push_str(",\"");
        out.push_str(field.key());
        out.push_str("\":");
        match field {
            Field::Time => {
                let t = chrono::DateTime::<chrono::Utc>::from(SystemTime::now());
                let _ = write!(out, "\"{}\"", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
            }
            Field::RequestId => string(out, Some(e.request_id)),
            Field::Route => string(out, e.route),
            Field::Method => string(out, Some(e.method)),
            Field::Host => string(out, e.host),
            Field::Path => string(out, Some(e.path)),
            Field::Status => {
                let _ = write!(out, "{}", e.status);
            }
            Field::Duration => millis(out, Some(e.duration)),
            Field::UpstreamDuration => millis(out, e.upstream_duration),
            Field::BytesSent => {
                let _ = write!(out, "{}", e.bytes_sent);
            }
            Field::BytesReceived => {
                let _ = write!(out, "{}", e.bytes_received);
            }
            Field::Upstream => match e.upstream {
                Some(a) => {
                    let _ = write!(out, "\"{a}\"");
                }
                None => out.push_str("null"),
            },
            Field::Ip => match e.ip {
                Some(ip) => {
                    let _ = write!(out, "\"{ip}\"");
                }
                None => out.push_str("null"),
            },
            Field::User => string(out, e.user),
            Field::Email => string(out, e.email),
            Field::Decision => string(out, e.decision),
            Field::Reasons => {
                out.push('[');
                for (i, r) in e.reasons.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, Some(r.as_str()));
                }
                out.push(']');
            }
            Field::Error => string(out, e.error),
            Field::UserAgent => string(out, e.user_agent),
        }
    }
    out.push_str("}\n");
}

fn millis(out: &mut String, d: Option<Duration>) {
    match d {
        Some(d) => {
            let _ = write!(out, "{:.3}", d.as_secs_f64() * 1000.0);
        }
        None => out.push_str("null"),
    }
}

/// A JSON string (or `null`), escaped per RFC 8259; control characters as `\u00XX`.
fn string(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;

    fn line(fields: &[Field], e: &Entry<'_>) -> serde_json::Value {
        let mut out = String::new();
        format_line(fields, e, &mut out);
        assert!(
            out.ends_with("}\n") && !out[..out.len() - 1].contains('\n'),
            "{out}"
        );
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn every_default_field_is_written_and_parses() {
        let e = Entry {
            request_id: "r1",
            route: Some("admin"),
            method: "GET",
            host: Some("app.example.com"),
            path: "/admin/",
            status: 403,
            duration: Duration::from_micros(1500),
            upstream: Some("127.0.0.1:8081".parse().unwrap()),
            ip: Some("10.0.0.9".parse().unwrap()),
            user: Some("https://idp|bob"),
            email: Some("bob@example.com"),
            decision: Some("deny"),
            reasons: Reasons::one(Reason::GroupsUnauthorized),
            ..Entry::default()
        };
        let v = line(&DEFAULT_FIELDS, &e);
        assert_eq!(v["status"], 403);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_duration_ms"], serde_json::Value::Null);
        assert_eq!(v["reasons"], serde_json::json!(["groups-unauthorized"]));
        assert_eq!(v["upstream"], "127.0.0.1:8081");
        assert_eq!(v["user"], "https://idp|bob");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v.as_object().unwrap().len(), DEFAULT_FIELDS.len() + 2);
    }

    #[test]
    fn hostile_values_stay_inside_their_string() {
        let e = Entry {
            host: Some("a\"b\\c\r\n{\"status\":200}\u{0}\u{2028}"),
            path: "/x",
            ..Entry::default()
        };
        let v = line(&[Field::Host, Field::Status], &e);
        assert_eq!(v["host"], "a\"b\\c\r\n{\"status\":200}\u{0}\u{2028}");
        assert_eq!(v["status"], 0);
    }

    #[test]
    fn selection_and_aliases() {
        assert_eq!(Field::from_name("response-code"), Some(Field::Status));
        assert_eq!(Field::from_name("authority"), Some(Field::Host));
        assert_eq!(Field::from_name("query"), None);
        let v = line(
            &[Field::Method],
            &Entry {
                method: "POST",
                ..Entry::default()
            },
        );
        assert_eq!(v.as_object().unwrap().len(), 3);
    }
}
