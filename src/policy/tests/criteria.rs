//! One table per criterion and matcher.

use super::*;

#[test]
fn accept_and_reject() {
    let u = user();
    check("{accept: true}", None, &get("/"), "allow");
    check("{accept: true}", Some(&u), &get("/"), "allow");
    check("{reject: true}", Some(&u), &get("/"), "deny");
    check("{reject: true}", None, &get("/"), "deny");
}

#[test]
fn authenticated_user() {
    let u = user();
    check("{authenticated_user: true}", Some(&u), &get("/"), "allow");
    check("{authenticated_user: true}", None, &get("/"), "login");
    let nobody = Subject {
        user_id: String::new(),
        ..user()
    };
    check(
        "{authenticated_user: true}",
        Some(&nobody),
        &get("/"),
        "deny",
    );
}

#[test]
fn user_is_the_stable_id_never_the_email() {
    let u = user();
    let f = get("/");
    for (c, want) in [
        ("{user: 'https://idp.example.com|alice'}", "allow"),
        ("{user: {is: 'https://idp.example.com|alice'}}", "allow"),
        ("{user: alice@Corp.Example}", "deny"),
        ("{user: {ends_with: '|alice'}}", "allow"),
        ("{user: {starts_with: 'https://other.example|'}}", "deny"),
        (
            "{user: {in: ['x', 'https://idp.example.com|alice']}}",
            "allow",
        ),
        (
            "{user: {not_in: ['https://idp.example.com|alice']}}",
            "deny",
        ),
    ] {
        check(c, Some(&u), &f, want);
    }
}

#[test]
fn email_only_when_verified_and_single_at() {
    let u = user();
    let f = get("/");
    check("{email: alice@Corp.Example}", Some(&u), &f, "allow");
    check(
        "{email: {ends_with: '@Corp.Example'}}",
        Some(&u),
        &f,
        "allow",
    );
    check("{email: {contains: 'ice@'}}", Some(&u), &f, "allow");
    // Exact comparison, as Pomerium.
    check("{email: alice@corp.example}", Some(&u), &f, "deny");
    let unverified = Subject {
        email_verified: false,
        ..user()
    };
    check("{email: alice@Corp.Example}", Some(&unverified), &f, "deny");
    // An unverified email must not satisfy even a negative matcher.
    check(
        "{email: {not: bob@corp.example}}",
        Some(&unverified),
        &f,
        "deny",
    );
    let two_ats = Subject {
        email: Some("alice@evil.example@corp.example".into()),
        ..user()
    };
    check(
        "{email: {ends_with: '@corp.example'}}",
        Some(&two_ats),
        &f,
        "deny",
    );
    check("{domain: corp.example}", Some(&two_ats), &f, "deny");
    let no_email = Subject {
        email: None,
        ..user()
    };
    check("{email: {not: x@y.z}}", Some(&no_email), &f, "deny");
}

#[test]
fn domain_is_case_insensitive_on_the_part_after_the_at() {
    let u = user();
    let f = get("/");
    for (c, want) in [
        ("{domain: corp.example}", "allow"),
        ("{domain: CORP.EXAMPLE}", "allow"),
        ("{domain: {is: Corp.Example}}", "allow"),
        ("{domain: {ends_with: .EXAMPLE}}", "allow"),
        ("{domain: {starts_with: corp}}", "allow"),
        ("{domain: {in: [other.example, CORP.example]}}", "allow"),
        ("{domain: {not_in: [corp.example]}}", "deny"),
        ("{domain: {not: corp.example}}", "deny"),
        ("{domain: example}", "deny"),
        ("{domain: alice@corp.example}", "deny"),
    ] {
        check(c, Some(&u), &f, want);
    }
    let unverified = Subject {
        email_verified: false,
        ..user()
    };
    check("{domain: corp.example}", Some(&unverified), &f, "deny");
}

#[test]
fn string_matcher_operators() {
    let u = user();
    for (c, path, want) in [
        ("{http_path: /a}", "/a", "allow"),
        ("{http_path: {is: /a}}", "/a/", "deny"),
        ("{http_path: {not: /a}}", "/b", "allow"),
        ("{http_path: {not: /a}}", "/a", "deny"),
        ("{http_path: {starts_with: /api/}}", "/api/x", "allow"),
        ("{http_path: {starts_with: /api/}}", "/apix", "deny"),
        ("{http_path: {ends_with: .json}}", "/x.json", "allow"),
        ("{http_path: {ends_with: .json}}", "/x.jsonp", "deny"),
        ("{http_path: {contains: /admin/}}", "/a/admin/b", "allow"),
        ("{http_path: {contains: /admin/}}", "/a/admins", "deny"),
        ("{http_path: {in: [/a, /b, /c]}}", "/b", "allow"),
        ("{http_path: {in: [/a, /b, /c]}}", "/d", "deny"),
        ("{http_path: {not_in: [/a, /b]}}", "/d", "allow"),
        ("{http_path: {not_in: [/a, /b]}}", "/a", "deny"),
        // Several operators in one matcher must all hold.
        (
            "{http_path: {starts_with: /api, ends_with: /status}}",
            "/api/v1/status",
            "allow",
        ),
        (
            "{http_path: {starts_with: /api, ends_with: /status}}",
            "/api/v1/health",
            "deny",
        ),
        // Paths are case-sensitive.
        ("{http_path: {starts_with: /Admin}}", "/admin", "deny"),
    ] {
        check(c, Some(&u), &get(path), want);
    }
}

#[test]
fn list_matcher_operators_on_groups() {
    let u = user(); // groups: admins, eng
    let solo = Subject {
        groups: vec!["admins".into()],
        ..user()
    };
    for (c, s, want) in [
        ("{groups: admins}", &u, "allow"),
        ("{groups: {has: eng}}", &u, "allow"),
        ("{groups: {has: ops}}", &u, "deny"),
        ("{groups: {is: admins}}", &u, "deny"),
        ("{groups: {is: admins}}", &solo, "allow"),
        ("{groups: {exclude: ops}}", &u, "allow"),
        ("{groups: {exclude: eng}}", &u, "deny"),
        ("{groups: {has: admins, exclude: eng}}", &u, "deny"),
        ("{groups: {has: admins, exclude: eng}}", &solo, "allow"),
        ("{groups: Admins}", &u, "deny"),
    ] {
        check(c, Some(s), &get("/"), want);
    }
    check("{groups: admins}", None, &get("/"), "login");
}

#[test]
fn claims_by_name_value_type_and_nesting() {
    let u = user();
    let f = get("/");
    for (c, want) in [
        ("{claim/department: eng}", "allow"),
        ("{claim/department: {is: eng}}", "allow"),
        ("{claim/department: ops}", "deny"),
        ("{claim/level: 3}", "allow"),
        ("{claim/level: '3'}", "deny"),
        ("{claim/on_call: true}", "allow"),
        ("{claim/on_call: false}", "deny"),
        ("{claim/roles: editor}", "allow"),
        ("{claim/roles: {is: editor}}", "deny"),
        ("{claim/roles: {exclude: admin}}", "allow"),
        ("{claim/org/team: infra}", "allow"),
        ("{claim/org.team: infra}", "allow"),
        // Namespaced claim names may contain slashes of their own.
        ("{claim/https://corp.example/roles: sre}", "allow"),
        // A missing claim is an empty list: `has` fails, `exclude` holds (Pomerium).
        ("{claim/missing: x}", "deny"),
        ("{claim/missing: {exclude: x}}", "allow"),
    ] {
        check(c, Some(&u), &f, want);
    }
    check("{claim/department: eng}", None, &f, "login");
}

#[test]
fn http_method_ignores_ascii_case() {
    let u = user();
    for (c, method, want) in [
        ("{http_method: GET}", "GET", "allow"),
        ("{http_method: get}", "GET", "allow"),
        ("{http_method: DELETE}", "delete", "allow"),
        ("{http_method: {in: [GET, HEAD]}}", "head", "allow"),
        ("{http_method: {in: [GET, HEAD]}}", "POST", "deny"),
        ("{http_method: {not: DELETE}}", "DeLeTe", "deny"),
    ] {
        check(c, Some(&u), &RequestFacts::new(method, "/", None), want);
    }
}

#[test]
fn source_ip_v4_v6_cidrs_and_mapped_addresses() {
    let u = user();
    for (c, addr, want) in [
        ("{source_ip: 10.0.0.0/8}", Some("10.1.2.3"), "allow"),
        ("{source_ip: 10.1.2.3}", Some("10.1.2.3"), "allow"),
        ("{source_ip: 10.1.2.3}", Some("10.1.2.4"), "deny"),
        (
            "{source_ip: [192.168.0.0/16, 10.0.0.0/8]}",
            Some("10.9.9.9"),
            "allow",
        ),
        ("{source_ip: 10.0.0.0/8}", Some("11.0.0.1"), "deny"),
        ("{source_ip: '2001:db8::/32'}", Some("2001:db8::1"), "allow"),
        ("{source_ip: '2001:db8::/32'}", Some("2001:db9::1"), "deny"),
        ("{source_ip: '::1'}", Some("::1"), "allow"),
        // An IPv4-mapped IPv6 peer is its IPv4 address, both ways round.
        ("{source_ip: 10.0.0.0/8}", Some("::ffff:10.1.2.3"), "allow"),
        (
            "{source_ip: '::ffff:10.0.0.0/104'}",
            Some("10.1.2.3"),
            "allow",
        ),
        ("{source_ip: 10.0.0.0/8}", None, "deny"),
    ] {
        let f = RequestFacts::new("GET", "/", addr.map(ip));
        check(c, Some(&u), &f, want);
    }
}

#[test]
fn cors_preflight() {
    let pre = RequestFacts {
        origin: Some("https://a.example"),
        access_control_request_method: Some("PUT"),
        ..RequestFacts::new("OPTIONS", "/", None)
    };
    check("{cors_preflight: true}", None, &pre, "allow");
    check(
        "{cors_preflight: true}",
        None,
        &RequestFacts {
            method: "GET",
            ..pre
        },
        "deny",
    );
    check(
        "{cors_preflight: true}",
        None,
        &RequestFacts {
            origin: None,
            ..pre
        },
        "deny",
    );
    check(
        "{cors_preflight: true}",
        None,
        &RequestFacts {
            access_control_request_method: None,
            ..pre
        },
        "deny",
    );
}

#[test]
fn nested_operators_are_allowed() {
    let u = user();
    let p = policy("allow: {and: [{groups: admins}, {or: [{http_method: GET}, {http_path: /x}]}]}");
    assert_eq!(
        outcome(&p, Some(&u), &get("/y"), SystemTime::UNIX_EPOCH),
        "allow"
    );
    assert_eq!(
        outcome(
            &p,
            Some(&u),
            &RequestFacts::new("POST", "/x", None),
            SystemTime::UNIX_EPOCH
        ),
        "allow"
    );
    assert_eq!(
        outcome(
            &p,
            Some(&u),
            &RequestFacts::new("POST", "/y", None),
            SystemTime::UNIX_EPOCH
        ),
        "deny"
    );
}

#[test]
fn reasons_follow_pomerium() {
    let u = Subject {
        groups: vec![],
        ..user()
    };
    let p = policy("allow: {and: [{domain: corp.example}, {groups: admins}]}");
    let d = evaluate(&p, Some(&u), &get("/"), SystemTime::UNIX_EPOCH);
    assert_eq!(d, Decision::Deny(Reasons::one(Reason::GroupsUnauthorized)));
    let p = policy("allow: {or: [{domain: corp.example}, {groups: admins}]}");
    let d = evaluate(&p, Some(&u), &get("/"), SystemTime::UNIX_EPOCH);
    assert_eq!(d.reasons(), Reasons::one(Reason::DomainOk));
    assert_eq!(d.reasons().to_string(), "domain-ok");
    assert_eq!(
        Reason::from_name("groups-unauthorized"),
        Some(Reason::GroupsUnauthorized)
    );
    for r in Reason::ALL {
        assert_eq!(Reason::from_name(r.as_str()), Some(r));
    }
}

#[test]
fn facts_read_lists_exactly_what_is_read() {
    let p = policy("allow: {or: [{http_method: GET}, {groups: x}]}");
    assert_eq!(p.facts_read(), FactSet::METHOD.union(FactSet::SUBJECT));
    let p =
        policy("allow: {and: [{http_path: /a}, {source_ip: 10.0.0.0/8}, {cors_preflight: true}]}");
    assert_eq!(
        p.facts_read().names().collect::<Vec<_>>(),
        ["method", "path", "source_ip", "headers"]
    );
    let p = policy("allow: {or: [{day_of_week: mon-fri}]}");
    assert_eq!(p.facts_read(), FactSet::TIME);
    assert!(policy("allow: {or: [{accept: true}]}")
        .facts_read()
        .is_empty());
}

#[test]
fn typical_policy_evaluates_without_allocating() {
    let p = policy(
        "allow: {and: [{domain: corp.example}, {groups: {has: admins}}, {http_method: {in: [GET, POST]}}]}\n\
         deny: {or: [{http_path: {starts_with: /admin/danger}}]}",
    );
    let u = user();
    let f = get("/x");
    let now = SystemTime::now();
    let mut d = None;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            d = Some(evaluate(&p, Some(&u), &f, now));
        }
    });
    assert_eq!(info.count_total, 0);
    assert_eq!(d.map(|d| d.as_str()), Some("allow"));
    // Time criteria convert `now` without allocating either.
    let timed = policy(
        "allow: {and: [{groups: admins}, {day_of_week: {days: mon-fri, timezone: Europe/Berlin}}, \
         {time_of_day: {after: '08:00', before: '18:00', timezone: America/New_York}}]}",
    );
    let info = allocation_counter::measure(|| {
        d = Some(evaluate(&timed, Some(&u), &f, now));
    });
    assert_eq!(info.count_total, 0);
    // The counter does see allocations.
    let info = allocation_counter::measure(|| drop(std::hint::black_box(vec![1u8; 8])));
    assert!(info.count_total > 0);
    assert!(d.is_some());
}
