//! `date`, `day_of_week`, `time_of_day` and their boundaries, across time zones and DST.

use super::*;

#[track_caller]
fn when(criterion: &str, t: &str, want: &str) {
    let p = policy(&format!("allow: {{or: [{criterion}]}}"));
    assert_eq!(
        outcome(&p, None, &get("/"), at(t)),
        want,
        "{criterion} at {t}"
    );
}

#[track_caller]
fn boundary(criterion: &str, t: &str) -> String {
    let p = policy(&format!("allow: {{or: [{criterion}]}}"));
    let b = p.next_time_boundary(at(t)).unwrap();
    chrono::DateTime::<chrono::Utc>::from(b).to_rfc3339()
}

#[test]
fn date_after_and_before() {
    let c = "{date: {after: '2026-01-01T00:00:00Z', before: 2026-02-01}}";
    when(c, "2025-12-31T23:59:59Z", "deny");
    when(c, "2026-01-01T00:00:00Z", "allow");
    when(c, "2026-01-31T23:59:59Z", "allow");
    when(c, "2026-02-01T00:00:00Z", "deny");
    // A bare date is local midnight in the given zone.
    let berlin = "{date: {before: 2026-02-01, timezone: Europe/Berlin}}";
    when(berlin, "2026-01-31T22:59:59Z", "allow");
    when(berlin, "2026-01-31T23:00:00Z", "deny");
    assert_eq!(
        boundary(c, "2025-06-01T00:00:00Z"),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(
        boundary(c, "2026-01-10T00:00:00Z"),
        "2026-02-01T00:00:00+00:00"
    );
    let p = policy(&format!("allow: {{or: [{c}]}}"));
    assert_eq!(p.next_time_boundary(at("2026-03-01T00:00:00Z")), None);
}

#[test]
fn day_of_week_ranges_lists_and_zones() {
    // 2026-03-02 is a Monday.
    when("{day_of_week: mon-fri}", "2026-03-02T12:00:00Z", "allow");
    when("{day_of_week: mon-fri}", "2026-03-07T12:00:00Z", "deny");
    when("{day_of_week: 'sat,sun'}", "2026-03-08T12:00:00Z", "allow");
    when(
        "{day_of_week: [Saturday, sun]}",
        "2026-03-08T12:00:00Z",
        "allow",
    );
    when("{day_of_week: fri-mon}", "2026-03-08T12:00:00Z", "allow");
    when("{day_of_week: fri-mon}", "2026-03-04T12:00:00Z", "deny");
    // Monday 01:00 in Tokyo is still Sunday in UTC.
    let tokyo = "{day_of_week: {days: mon, timezone: Asia/Tokyo}}";
    when(tokyo, "2026-03-01T16:00:00Z", "allow");
    when(tokyo, "2026-03-01T14:59:59Z", "deny");
    assert_eq!(
        boundary(tokyo, "2026-03-01T12:00:00Z"),
        "2026-03-01T15:00:00+00:00"
    );
}

#[test]
fn time_of_day_window_and_wrap_over_midnight() {
    let office = "{time_of_day: {after: '09:00', before: '17:00', timezone: America/New_York}}";
    // March 2, 2026: New York is UTC-5.
    when(office, "2026-03-02T13:59:59Z", "deny");
    when(office, "2026-03-02T14:00:00Z", "allow");
    when(office, "2026-03-02T21:59:59Z", "allow");
    when(office, "2026-03-02T22:00:00Z", "deny");
    assert_eq!(
        boundary(office, "2026-03-02T15:00:00Z"),
        "2026-03-02T22:00:00+00:00"
    );
    assert_eq!(
        boundary(office, "2026-03-02T23:00:00Z"),
        "2026-03-03T05:00:00+00:00"
    );
    let night = "{time_of_day: {after: '22:00', before: '06:00', timezone: UTC}}";
    when(night, "2026-03-02T23:00:00Z", "allow");
    when(night, "2026-03-02T05:59:59Z", "allow");
    when(night, "2026-03-02T12:00:00Z", "deny");
    let late = "{time_of_day: {after: '18:30:15', timezone: UTC}}";
    when(late, "2026-03-02T18:30:15Z", "allow");
    when(late, "2026-03-02T18:30:14Z", "deny");
}

#[test]
fn boundaries_follow_dst_changes() {
    let office = "{time_of_day: {after: '09:00', before: '17:00', timezone: Europe/Berlin}}";
    // Berlin springs forward on 2026-03-29 at 01:00 UTC (02:00 → 03:00 local). At 23:30 UTC
    // on the 28th the next wall-clock boundary is local midnight, 23:00 UTC.
    assert_eq!(
        boundary(office, "2026-03-28T22:30:00Z"),
        "2026-03-28T23:00:00+00:00"
    );
    // After midnight, the offset change itself comes first; then 09:00 local is 07:00 UTC.
    assert_eq!(
        boundary(office, "2026-03-28T23:30:00Z"),
        "2026-03-29T01:00:00+00:00"
    );
    assert_eq!(
        boundary(office, "2026-03-29T01:00:00Z"),
        "2026-03-29T07:00:00+00:00"
    );
    when(office, "2026-03-29T06:59:59Z", "deny");
    when(office, "2026-03-29T07:00:00Z", "allow");
    // Every boundary is after `now`, and evaluation agrees on both sides of it.
    let p = policy(&format!("allow: {{or: [{office}]}}"));
    let mut t = at("2026-03-27T00:00:00Z");
    for _ in 0..20 {
        let b = p.next_time_boundary(t).unwrap();
        assert!(b > t);
        let just_before = b - std::time::Duration::from_millis(1);
        assert_eq!(
            outcome(&p, None, &get("/"), t),
            outcome(&p, None, &get("/"), just_before)
        );
        t = b;
    }
}

#[test]
fn policies_without_time_have_no_boundary() {
    let p = policy("allow: {or: [{accept: true}]}");
    assert_eq!(p.next_time_boundary(SystemTime::now()), None);
}
