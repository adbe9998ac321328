use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Barrier,
    },
    time::{Duration, SystemTime},
};

use super::*;
use crate::policy::{Policy, RequestFacts, Subject};

fn policy(yaml: &str) -> Policy {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    Policy::parse(&v, "test").unwrap()
}

fn subject(groups: &[&str]) -> Subject {
    Subject {
        user_id: "https://idp.example|alice".into(),
        email: Some("alice@corp.example".into()),
        email_verified: true,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Subject::default()
    }
}

fn at(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .into()
}

const IP: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));

fn cache() -> DecisionCache {
    DecisionCache::new(10_000, Duration::from_secs(300))
}

#[test]
fn hit_after_miss_and_counters() {
    let c = cache();
    let p = policy("allow: {or: [{groups: admins}]}");
    let s = subject(&["admins"]);
    let sess = SessionRef {
        key: SessionKey { id: 1, version: 1 },
        expires_at: at("2030-01-01T00:00:00Z"),
        subject: &s,
    };
    let f = RequestFacts::new("GET", "/", IP);
    let now = at("2026-01-01T00:00:00Z");
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, now),
        Decision::Allow(_)
    ));
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, now),
        Decision::Allow(_)
    ));
    assert_eq!((c.misses(), c.hits()), (1, 1));
}

#[test]
fn no_stale_allow_after_generation_change() {
    let c = cache();
    let s = subject(&["admins"]);
    let sess = SessionRef {
        key: SessionKey { id: 1, version: 1 },
        expires_at: at("2030-01-01T00:00:00Z"),
        subject: &s,
    };
    let f = RequestFacts::new("GET", "/admin", IP);
    let now = at("2026-01-01T00:00:00Z");
    let old = policy("allow: {or: [{groups: admins}]}");
    assert!(matches!(
        c.decide(1, 3, &old, Some(&sess), &f, now),
        Decision::Allow(_)
    ));
    // The reload tightened route 3: the very next request must see the new policy.
    let new = policy("allow: {or: [{groups: root}]}");
    assert!(matches!(
        c.decide(2, 3, &new, Some(&sess), &f, now),
        Decision::Deny(_)
    ));
}

#[test]
fn no_stale_allow_after_session_version_change() {
    let c = cache();
    let p = policy("allow: {or: [{groups: admins}]}");
    let now = at("2026-01-01T00:00:00Z");
    let f = RequestFacts::new("GET", "/", IP);
    let before = subject(&["admins"]);
    let sess = SessionRef {
        key: SessionKey { id: 7, version: 1 },
        expires_at: at("2030-01-01T00:00:00Z"),
        subject: &before,
    };
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, now),
        Decision::Allow(_)
    ));
    // A refresh removed the group and bumped the version.
    let after = subject(&[]);
    let sess = SessionRef {
        key: SessionKey { id: 7, version: 2 },
        expires_at: sess.expires_at,
        subject: &after,
    };
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, now),
        Decision::Deny(_)
    ));
}

#[test]
fn entry_never_outlives_the_session() {
    let c = cache();
    let p = policy("allow: {or: [{authenticated_user: true}]}");
    let s = subject(&[]);
    let expires = at("2026-01-01T00:01:00Z");
    let sess = SessionRef {
        key: SessionKey { id: 1, version: 1 },
        expires_at: expires,
        subject: &s,
    };
    let f = RequestFacts::new("GET", "/", IP);
    c.decide(1, 0, &p, Some(&sess), &f, at("2026-01-01T00:00:00Z"));
    c.decide(1, 0, &p, Some(&sess), &f, at("2026-01-01T00:00:59Z"));
    assert_eq!(c.misses(), 1);
    c.decide(1, 0, &p, Some(&sess), &f, expires);
    assert_eq!(
        c.misses(),
        2,
        "an entry past the session's expiry is evaluated afresh"
    );
}

#[test]
fn time_based_entries_expire_at_their_boundary() {
    let c = cache();
    let p = policy(
        "allow: {and: [{authenticated_user: true}, \
         {time_of_day: {after: '09:00', before: '17:00', timezone: UTC}}]}",
    );
    let s = subject(&[]);
    let sess = SessionRef {
        key: SessionKey { id: 1, version: 1 },
        expires_at: at("2030-01-01T00:00:00Z"),
        subject: &s,
    };
    let f = RequestFacts::new("GET", "/", IP);
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, at("2026-03-02T16:59:59Z")),
        Decision::Allow(_)
    ));
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, at("2026-03-02T16:59:59.9Z")),
        Decision::Allow(_)
    ));
    assert_eq!(c.misses(), 1);
    assert!(matches!(
        c.decide(1, 0, &p, Some(&sess), &f, at("2026-03-02T17:00:00Z")),
        Decision::Deny(_)
    ));
    assert_eq!(c.misses(), 2);
}

#[test]
fn time_based_entries_are_reclaimed_by_moka_at_their_boundary() {
    let c = cache();
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let p = policy(&format!(
        "allow: {{or: [{{date: {{before: '{}'}}}}]}}",
        soon.to_rfc3339()
    ));
    let f = RequestFacts::new("GET", "/", IP);
    let key = c.key(1, 0, &p, None, &f);
    assert!(matches!(
        c.decide(1, 0, &p, None, &f, SystemTime::now()),
        Decision::Allow(_)
    ));
    assert!(c.contains(&key));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!c.contains(&key), "moka dropped the entry at the boundary");
    assert!(matches!(
        c.decide(1, 0, &p, None, &f, SystemTime::now()),
        Decision::Deny(_)
    ));
}

#[test]
fn key_does_not_grow_with_facts_the_policy_ignores() {
    let c = cache();
    let p = policy("allow: {or: [{http_method: GET}]}");
    let a = RequestFacts::new("GET", "/a", IP);
    let b = RequestFacts {
        path: "/b/c/d",
        source_ip: None,
        origin: Some("https://x"),
        ..a
    };
    assert_eq!(c.key(1, 0, &p, None, &a), c.key(1, 0, &p, None, &b));
    assert_eq!(
        std::mem::size_of::<DecisionKey>(),
        std::mem::size_of_val(&c.key(1, 0, &p, None, &b))
    );
    // A fact the policy reads does change it.
    let post = RequestFacts {
        method: "POST",
        ..a
    };
    assert_ne!(c.key(1, 0, &p, None, &a), c.key(1, 0, &p, None, &post));
    // And a policy that reads no subject shares one entry across sessions.
    let s = subject(&[]);
    let sess = SessionRef {
        key: SessionKey { id: 9, version: 1 },
        expires_at: SystemTime::UNIX_EPOCH,
        subject: &s,
    };
    assert_eq!(c.key(1, 0, &p, Some(&sess), &a), c.key(1, 0, &p, None, &a));
}

#[test]
fn path_is_keyed_when_read() {
    let c = cache();
    let p = policy("allow: {or: [{http_path: {starts_with: /public}}]}");
    let now = SystemTime::now();
    let open = RequestFacts::new("GET", "/public/x", IP);
    let closed = RequestFacts::new("GET", "/admin", IP);
    assert!(matches!(
        c.decide(1, 0, &p, None, &open, now),
        Decision::Allow(_)
    ));
    assert!(matches!(
        c.decide(1, 0, &p, None, &closed, now),
        Decision::Deny(_)
    ));
}

#[test]
fn concurrent_misses_evaluate_once() {
    let c = Arc::new(cache());
    let p = Arc::new(policy("allow: {or: [{accept: true}]}"));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let allowed = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (c, p, barrier, allowed) = (c.clone(), p.clone(), barrier.clone(), allowed.clone());
            std::thread::spawn(move || {
                let f = RequestFacts::new("GET", "/", IP);
                barrier.wait();
                if matches!(
                    c.decide(1, 0, &p, None, &f, SystemTime::now()),
                    Decision::Allow(_)
                ) {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), threads);
    assert_eq!(c.misses(), 1);
    assert_eq!(c.hits(), threads as u64 - 1);
}

#[test]
fn anonymous_requests_get_needs_login_and_are_cached() {
    let c = cache();
    let p = policy("allow: {or: [{groups: admins}]}");
    let f = RequestFacts::new("GET", "/", IP);
    assert_eq!(
        c.decide(1, 0, &p, None, &f, SystemTime::now()),
        Decision::NeedsLogin
    );
    assert_eq!(
        c.decide(1, 0, &p, None, &f, SystemTime::now()),
        Decision::NeedsLogin
    );
    assert_eq!(c.hits(), 1);
}
