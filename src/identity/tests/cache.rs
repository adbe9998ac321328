//! The assertion cache: hits, refreshes, and what a hit costs.

use std::sync::Arc;

use super::*;

const ISS: &str = "https://authenticate.corp.example";

fn cache() -> AssertionCache {
    AssertionCache::new(
        Arc::new(keys(P256_PKCS8)),
        AssertionCache::DEFAULT_MAX_BYTES,
    )
}

fn request<'a>(subject: &'a Subject, version: u64, audience: &'a str) -> AssertionRequest<'a> {
    AssertionRequest {
        session_id: 0x1234_5678_9abc_def0_1234_5678_9abc_def0,
        session_version: version,
        sid: "123456789abcdef0123456789abcdef0",
        issuer: ISS,
        audience,
        subject,
    }
}

#[test]
fn second_call_is_the_same_token() {
    let c = cache();
    let alice = alice();
    let t0 = now();
    let first = c.get_or_sign(&request(&alice, 1, "a.example"), t0).unwrap();
    let second = c
        .get_or_sign(&request(&alice, 1, "a.example"), t0 + secs(30))
        .unwrap();
    assert_eq!(first, second);
    // Equal audiences hit whatever string they live in.
    let audience = String::from("a.example");
    let third = c.get_or_sign(&request(&alice, 1, &audience), t0).unwrap();
    assert_eq!(first, third);
    let claims = verify(c.keys().jwks(), first.to_str().unwrap(), ISS, "a.example").unwrap();
    assert_eq!(claims["sid"], "123456789abcdef0123456789abcdef0");
}

#[test]
fn audience_issuer_and_session_version_each_get_their_own_token() {
    let c = cache();
    let alice = alice();
    let t0 = now();
    let a = c.get_or_sign(&request(&alice, 1, "a.example"), t0).unwrap();
    let b = c.get_or_sign(&request(&alice, 1, "b.example"), t0).unwrap();
    assert_ne!(a, b);
    verify(c.keys().jwks(), b.to_str().unwrap(), ISS, "b.example").unwrap();

    let mut renamed = alice.clone();
    renamed.groups.push("new-group".to_owned());
    let v2 = c
        .get_or_sign(&request(&renamed, 2, "a.example"), t0)
        .unwrap();
    assert_ne!(a, v2);
    let claims = verify(c.keys().jwks(), v2.to_str().unwrap(), ISS, "a.example").unwrap();
    assert_eq!(claims["groups"][2], "new-group");

    let mut other_issuer = request(&alice, 1, "a.example");
    other_issuer.issuer = "https://a.example";
    let i = c.get_or_sign(&other_issuer, t0).unwrap();
    assert_ne!(a, i);
    verify(
        c.keys().jwks(),
        i.to_str().unwrap(),
        "https://a.example",
        "a.example",
    )
    .unwrap();
    // The first is still cached.
    assert_eq!(
        c.get_or_sign(&request(&alice, 1, "a.example"), t0).unwrap(),
        a
    );
}

#[test]
fn re_signed_when_less_than_a_minute_is_left() {
    let c = cache();
    let alice = alice();
    let t0 = now();
    let req = request(&alice, 1, "a.example");
    let first = c.get_or_sign(&req, t0).unwrap();
    // exp = t0 + 300 s (whole seconds): 240 s later more than 59 s are left... or not.
    let exp_secs = verify(c.keys().jwks(), first.to_str().unwrap(), ISS, "a.example").unwrap()
        ["exp"]
        .as_u64()
        .unwrap();
    let exp = std::time::UNIX_EPOCH + secs(exp_secs);
    let still = c.get_or_sign(&req, exp - secs(61)).unwrap();
    assert_eq!(still, first);
    let renewed = c.get_or_sign(&req, exp - secs(60)).unwrap();
    assert_ne!(renewed, first);
    // The renewal replaced the entry.
    assert_eq!(c.get_or_sign(&req, exp - secs(59)).unwrap(), renewed);
}

#[test]
fn a_hit_allocates_nothing_per_hit() {
    let c = cache();
    let alice = alice();
    let t0 = now();
    let req = request(&alice, 7, "a.example");
    let first = c.get_or_sign(&req, t0).unwrap();
    // Warm up: moka applies the insert's bookkeeping on later reads.
    for _ in 0..100 {
        c.get_or_sign(&req, t0).unwrap();
    }
    let mut got = None;
    let info = allocation_counter::measure(|| {
        for _ in 0..10_000 {
            got = Some(c.get_or_sign(&req, t0).unwrap());
        }
    });
    assert_eq!(got.unwrap(), first);
    // Our hit path allocates nothing; moka applies its read log every 64 reads, and that
    // housekeeping may allocate (measured: 79 allocations over 10,000 hits). So: never once
    // per hit, at most once per housekeeping run.
    assert!(info.count_total <= 10_000 / 64, "{info:?}");
}

/// Timing note, not an assertion: `cargo test --release -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let c = cache();
    let alice = alice();
    let req = request(&alice, 1, "a.example");
    let t0 = now();
    c.get_or_sign(&req, t0).unwrap();
    let n = 200_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(c.get_or_sign(std::hint::black_box(&req), t0).unwrap());
    }
    let hit = start.elapsed() / n;
    let n = 2_000;
    let k = c.keys();
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(k.sign(ISS, "a.example", &alice, "s", t0).unwrap());
    }
    let sign = start.elapsed() / n;
    let start = std::time::Instant::now();
    for i in 0..n {
        let mut r = req;
        r.session_version = 100 + u64::from(i);
        std::hint::black_box(c.get_or_sign(&r, t0).unwrap());
    }
    let miss = start.elapsed() / n;
    println!("cache hit: {hit:?}  fresh sign: {sign:?}  cache miss (sign + insert): {miss:?}");
}
