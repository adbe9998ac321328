//! Criterion benchmark of the per-request identity path of a signed-in request, as the proxy
//! runs it: open the session cookie, find the session in the instance cache, answer the
//! policy from the decision cache, and take the identity assertion from its cache.
//!
//! Goal (issue 4): < 5 µs. Run: `make bench-micro`, or `cargo bench --bench identity -- --quick`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::{
    authz::{DecisionCache, SessionRef},
    identity::{AssertionCache, AssertionRequest, SigningKeys},
    policy::{Policy, RequestFacts, Subject},
    session::{store, IdpTokens, Lookup, Sealer, SessionKind, SessionRecord, Sessions, Ticket},
};

const POLICY: &str = "allow: {and: [{domain: corp.example}, {groups: {has: admins}}, \
                      {http_method: {in: [GET, POST]}}]}";

fn identity_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = SystemTime::now();
    let sealer = Sealer::new(&[7u8; 32]);
    let store = store::open("memory", store::StoreOptions::default()).unwrap();
    let sessions = Sessions::new(store, 10_000);
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = SessionRecord {
        version: 1,
        kind: SessionKind::Browser,
        subject: Subject {
            user_id: "https://idp.example.com|alice".into(),
            email: Some("alice@corp.example".into()),
            email_verified: true,
            name: Some("Alice".into()),
            groups: vec!["eng".into(), "admins".into(), "oncall".into()],
            ..Subject::default()
        },
        issuer: "https://idp.example.com".into(),
        created_at: secs,
        expires_at: secs + 3600,
        refreshed_at: secs,
        tokens: IdpTokens::default(),
    };
    let ticket = runtime.block_on(sessions.create(&record, now)).unwrap();
    let cookie = ticket.seal(&sealer);
    // The first request loads the session into the instance cache.
    assert!(matches!(
        runtime.block_on(sessions.load(&ticket, now)),
        Lookup::Found(_)
    ));
    let doc: serde_yaml::Value = serde_yaml::from_str(POLICY).unwrap();
    let policy = Policy::parse(&doc, "bench").unwrap();
    let decisions = DecisionCache::new(100_000, Duration::from_secs(300));
    let assertions = AssertionCache::new(Arc::new(SigningKeys::generate().unwrap()), 64 << 20);
    let facts = RequestFacts::new(
        "GET",
        "/reports/2026",
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );

    let request = || {
        let ticket = Ticket::open(&sealer, black_box(&cookie)).unwrap();
        let Some(Lookup::Found(loaded)) = sessions.load_cached(&ticket, now) else {
            panic!("not cached")
        };
        let session = SessionRef {
            key: loaded.key,
            expires_at: loaded.expires,
            subject: &loaded.record.subject,
        };
        let decision = decisions.decide(1, 0, &policy, Some(&session), &facts, now);
        let assertion = assertions
            .get_or_sign(
                &AssertionRequest {
                    session_id: loaded.key.id,
                    session_version: loaded.key.version,
                    sid: loaded.sid(),
                    issuer: "app.corp.example",
                    audience: "app.corp.example",
                    subject: &loaded.record.subject,
                },
                now,
            )
            .unwrap();
        (decision, assertion)
    };
    assert_eq!(request().0.as_str(), "allow");
    c.bench_function(
        "identity path: cookie open + session cache hit + cached decision + cached assertion",
        |b| b.iter(request),
    );
    c.bench_function("cookie open (AES-256-GCM ticket)", |b| {
        b.iter(|| Ticket::open(&sealer, black_box(&cookie)).unwrap())
    });
}

criterion_group!(benches, identity_path);
criterion_main!(benches);
