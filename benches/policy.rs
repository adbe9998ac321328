//! Criterion benchmarks of the policy core: evaluating a typical policy, answering from the
//! decision cache, and compiling the policies of 10,000 routes.
//!
//! Goals (issue 3): evaluation < 1 µs, cache hit < 200 ns, 10,000 routes < 0.5 s.
//! Run: `make bench-micro`, or `cargo bench --bench policy -- --quick`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::{Duration, SystemTime},
};

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::{
    authz::{DecisionCache, SessionKey, SessionRef},
    config::{Access, PolicySource},
    policy::{evaluate, Policy, PolicyLibrary, RequestFacts, Subject},
};

/// Three criteria, as a typical route: a verified domain, a group and a method; one deny.
const TYPICAL: &str = "allow: {and: [{domain: corp.example}, {groups: {has: admins}}, \
                       {http_method: {in: [GET, POST]}}]}\n\
                       deny: {or: [{http_path: {starts_with: /admin/danger}}]}";

fn typical_policy() -> Policy {
    let doc: serde_yaml::Value = serde_yaml::from_str(TYPICAL).unwrap();
    Policy::parse(&doc, "bench").unwrap()
}

fn alice() -> Subject {
    Subject {
        user_id: "https://idp.example.com|alice".into(),
        email: Some("alice@corp.example".into()),
        email_verified: true,
        groups: vec!["eng".into(), "admins".into(), "oncall".into()],
        ..Subject::default()
    }
}

const IP: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));

fn evaluation(c: &mut Criterion) {
    let policy = typical_policy();
    let subject = alice();
    let facts = RequestFacts::new("GET", "/reports/2026", IP);
    let now = SystemTime::now();
    assert_eq!(
        evaluate(&policy, Some(&subject), &facts, now).as_str(),
        "allow"
    );
    c.bench_function("evaluate typical 3-criterion policy", |b| {
        b.iter(|| evaluate(black_box(&policy), Some(&subject), black_box(&facts), now))
    });
}

fn cache_hit(c: &mut Criterion) {
    let policy = typical_policy();
    let subject = alice();
    let session = SessionRef {
        key: SessionKey {
            id: 0x1234_5678_9abc_def0,
            version: 1,
        },
        expires_at: SystemTime::now() + Duration::from_secs(3600),
        subject: &subject,
    };
    let facts = RequestFacts::new("GET", "/reports/2026", IP);
    let cache = DecisionCache::new(10_000, Duration::from_secs(300));
    let now = SystemTime::now();
    cache.decide(7, 3, &policy, Some(&session), &facts, now);
    c.bench_function("decision cache hit", |b| {
        b.iter(|| cache.decide(7, 3, &policy, Some(black_box(&session)), &facts, now))
    });
    assert_eq!(cache.misses(), 1);
}

/// 10,000 routes as a large deployment writes them: named policies shared by many routes,
/// inline policies, and shortcuts.
fn routes() -> Vec<Access> {
    let inline: serde_yaml::Value = serde_yaml::from_str(TYPICAL).unwrap();
    let named = ["admins", "engineering", "internal-network", "office-hours"];
    (0..10_000)
        .map(|i| {
            let mut access = Access::default();
            match i % 4 {
                0 => access.policy = Some(PolicySource::Named(named[i / 4 % 4].into())),
                1 => access.policy = Some(PolicySource::Inline(inline.clone())),
                2 => {
                    access.allowed_groups = vec![format!("team-{i}")];
                    access.allowed_domains = vec!["corp.example".into()];
                }
                _ => {
                    access.allowed_users = vec![format!("user{i}@corp.example")];
                    access.policy = Some(PolicySource::Named("admins".into()));
                }
            }
            access
        })
        .collect()
}

/// Compiles every route with one library, as `config::load` does; the number that compiled.
fn compile_all(dir: &Path, routes: &[Access]) -> usize {
    let mut library = PolicyLibrary::new(Some(dir));
    routes
        .iter()
        .enumerate()
        .map(|(i, access)| library.compile_route(access, &format!("routes[{i}]")))
        .filter(Result::is_ok)
        .count()
}

fn compile_routes(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let routes = routes();
    assert_eq!(compile_all(&dir, &routes), routes.len());
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10,000 routes with policies", |b| {
        b.iter(|| compile_all(black_box(&dir), &routes))
    });
    group.finish();
}

criterion_group!(benches, evaluation, cache_hit, compile_routes);
criterion_main!(benches);
