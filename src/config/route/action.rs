//! The non-proxying route actions: Pomerium's `redirect` and `response`.

use super::super::{
    file::{FileRedirect, FileResponse},
    problem::{key_path, Report},
    types::{RedirectAction, StaticResponse},
    values::host_and_port,
};

const REDIRECT_CODES: &[u16] = &[301, 302, 303, 307, 308];

/// Converts `redirect` at path `p`; errors (bad codes, conflicting keys, a redirect to the
/// same URL) are recorded in `report`.
pub(super) fn redirect(p: &str, file: FileRedirect, report: &mut Report) -> Option<RedirectAction> {
    let FileRedirect {
        https_redirect,
        scheme_redirect,
        host_redirect,
        port_redirect,
        path_redirect,
        prefix_rewrite,
        response_code,
        strip_query,
    } = file;
    let k = |key: &str| key_path(p, key);
    let https_redirect = https_redirect.unwrap_or(false);
    if https_redirect && scheme_redirect.is_some() {
        report.error(
            &k("scheme_redirect"),
            "set https_redirect or scheme_redirect, not both",
        );
    }
    if path_redirect.is_some() && prefix_rewrite.is_some() {
        report.error(
            &k("prefix_rewrite"),
            "set path_redirect or prefix_rewrite, not both",
        );
    }
    let slash = |v: &String| {
        if v.starts_with('/') {
            Ok(v.clone())
        } else {
            Err(format!("{v:?} must start with /"))
        }
    };
    let action = RedirectAction {
        https_redirect,
        scheme_redirect: scheme_redirect.and_then(|s| {
            let lower = s.to_ascii_lowercase();
            let ok = matches!(lower.as_str(), "http" | "https");
            report.check(
                &k("scheme_redirect"),
                if ok {
                    Ok(lower)
                } else {
                    Err(format!("unsupported scheme {s:?} (use http or https)"))
                },
            )
        }),
        host_redirect: host_redirect
            .and_then(|h| report.check(&k("host_redirect"), host_and_port(&h, false))),
        port_redirect: port_redirect.and_then(|port| {
            report.check(
                &k("port_redirect"),
                if port == 0 {
                    Err("port 0 is not a port".to_owned())
                } else {
                    Ok(port)
                },
            )
        }),
        path_redirect: path_redirect.and_then(|v| report.check(&k("path_redirect"), slash(&v))),
        prefix_rewrite: prefix_rewrite.and_then(|v| report.check(&k("prefix_rewrite"), slash(&v))),
        response_code: response_code.unwrap_or(301),
        strip_query: strip_query.unwrap_or(false),
    };
    if !REDIRECT_CODES.contains(&action.response_code) {
        report.error(
            &k("response_code"),
            format!(
                "{} is not a redirect code (use 301, 302, 303, 307 or 308)",
                action.response_code
            ),
        );
    }
    let changes_something = action.https_redirect
        || action.scheme_redirect.is_some()
        || action.host_redirect.is_some()
        || action.port_redirect.is_some()
        || action.path_redirect.is_some()
        || action.prefix_rewrite.is_some()
        || action.strip_query;
    if !changes_something && !report.has_error_under(p) {
        report.error(p, "redirects to the same URL (a loop): set https_redirect, host_redirect, path_redirect, …");
    }
    Some(action)
}

/// Converts `response` at path `p`: `status` is required and within 200–599.
pub(super) fn response(p: &str, file: FileResponse, report: &mut Report) -> Option<StaticResponse> {
    let FileResponse { status, body } = file;
    let status_path = key_path(p, "status");
    let status = match status {
        Some(s) if (200..=599).contains(&s) => Some(s),
        Some(s) => {
            report.error(
                &status_path,
                format!("{s} is not a response status (use 200–599)"),
            );
            None
        }
        None => {
            if !report.has_error_under(&status_path) {
                report.error(&status_path, "missing: the status to answer with (200–599)");
            }
            None
        }
    };
    Some(StaticResponse {
        status: status?,
        body: body.unwrap_or_default(),
    })
}
