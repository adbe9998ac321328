//! `jwt_claims_headers`: claims of the signed-in user copied into request headers.

use http::{HeaderName, HeaderValue};

use crate::policy::{ClaimValue, Subject};

/// The headers `jwt_claims_headers` asks for, for `subject`: `claims` is the configured
/// (header name, claim name) list. Claim names: `email`, `email_verified` (`true`/`false`),
/// `name`, `user` and `sub` (the user id), `groups` (comma-joined), and any other claim the
/// IdP sent (from [`Subject::claims`]: values comma-joined, numbers and booleans as JSON
/// text). A claim the subject does not have, an empty list, or a value holding a control
/// byte (CR, LF, NUL, tab, DEL, …) yields no header: values are never injected or mangled.
/// Non-ASCII UTF-8 is passed as is. Called once per permitted request when the list is
/// non-empty.
pub fn claim_header_values(
    subject: &Subject,
    claims: &[(HeaderName, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(claims.len());
    for (header, claim) in claims {
        if let Some(value) = claim_text(subject, claim).and_then(|text| header_value(&text)) {
            out.push((header.clone(), value));
        }
    }
    out
}

/// The claim as header text; `None` when the subject does not have it.
fn claim_text(subject: &Subject, claim: &str) -> Option<String> {
    match claim {
        "email" => subject.email.clone(),
        "email_verified" => Some(subject.email_verified.to_string()),
        "name" => subject.name.clone(),
        "user" | "sub" => Some(subject.user_id.clone()),
        "groups" => (!subject.groups.is_empty()).then(|| subject.groups.join(",")),
        other => {
            let values = subject.claims.get(other)?;
            let parts: Vec<String> = values.iter().map(claim_value_text).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
    }
}

/// A claim value as text: strings as is, numbers and booleans as JSON writes them (integral
/// numbers without a fraction, so `3` stays `3`).
fn claim_value_text(value: &ClaimValue) -> String {
    match value {
        ClaimValue::String(s) => s.clone(),
        ClaimValue::Bool(b) => b.to_string(),
        // Integral values within f64's exact range print as integers, as the IdP sent them.
        ClaimValue::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            format!("{}", *n as i64)
        }
        ClaimValue::Number(n) => {
            serde_json::Number::from_f64(*n).map_or_else(|| "null".to_owned(), |n| n.to_string())
        }
    }
}

/// A header value, unless `text` is empty or holds a control byte.
fn header_value(text: &str) -> Option<HeaderValue> {
    let clean = !text.is_empty() && text.bytes().all(|b| b == b' ' || !b.is_ascii_control());
    if !clean {
        return None;
    }
    HeaderValue::from_str(text).ok()
}
