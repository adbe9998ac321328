//! gatehouse's own responses: error pages (HTML or JSON by `Accept`), redirects and static
//! route responses, and the one mapping from proxy errors to 502/503/504.

use bytes::Bytes;
use http::header;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;

/// The error raised by `upstream_peer` when a route has no healthy backend left.
pub(super) const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("NoHealthyUpstream");

/// Status for a request whose required client certificate is missing or invalid
/// (Pomerium's choice, nginx's convention).
pub(super) const CLIENT_CERTIFICATE_REQUIRED: u16 = 495;

/// The status an error that ended proxying is answered with (0: the client is gone).
pub(super) fn status_for_error(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        t if *t == NO_HEALTHY_UPSTREAM => 503,
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
                | ErrorType::ConnectTimedout
                | ErrorType::TLSHandshakeTimedout => 504,
                _ => 502,
            },
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        495 => "Client Certificate Required",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn explanation(status: u16) -> &'static str {
    match status {
        400 => "The request was malformed or ambiguous, so it was not forwarded.",
        401 => "Signing in is required for this page.",
        403 => "You are not allowed to reach this page.",
        404 => "No route is configured for this address.",
        414 => "The request address is too long.",
        421 => "This connection cannot be used for this host.",
        431 => "The request headers are too large.",
        495 => "A valid client certificate is required for this address.",
        502 => "The service behind this address could not be reached.",
        503 => "The service behind this address is unavailable right now. Try again shortly.",
        504 => "The service behind this address did not answer in time.",
        _ => "The request could not be completed.",
    }
}

/// Whether the client prefers HTML (a browser) over other types.
pub(super) fn prefers_html(session: &Session) -> bool {
    let Some(accept) = session.req_header().headers.get(header::ACCEPT) else {
        return false;
    };
    let accept = accept.as_bytes();
    // Browsers list text/html first; API clients send */* or application/json.
    accept
        .split(|b| *b == b',')
        .next()
        .is_some_and(|first| first.trim_ascii().starts_with(b"text/html"))
}

/// Sends gatehouse's error page for `status`. `detail` is shown only when given (routes
/// with `show_error_details`, or reasons that reveal nothing internal).
pub(super) async fn error_page(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    detail: Option<&str>,
) -> pingora_error::Result<()> {
    error_page_with(session, ctx, status, detail, Vec::new()).await
}

/// [`error_page`] with extra response headers (say, a cookie to clear).
pub(super) async fn error_page_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    detail: Option<&str>,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
) -> pingora_error::Result<()> {
    let request_id = ctx.request_id();
    let html = prefers_html(session);
    let body = if html {
        let detail = detail
            .map(|d| format!("<p class=\"detail\">{}</p>", escape(d)))
            .unwrap_or_default();
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>{status} {t}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
             padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}.id{{color:#777;font-size:.85rem}}\
             </style></head><body><h1>{status} {t}</h1><p>{e}</p>{detail}\
             <p class=\"id\">Request ID: <code>{request_id}</code></p>\
             <p class=\"id\">gatehouse</p></body></html>",
            t = title(status),
            e = explanation(status),
        )
    } else {
        let detail = detail
            .map(|d| format!(",\"detail\":{}", serde_json::Value::from(d)))
            .unwrap_or_default();
        format!(
            "{{\"status\":{status},\"error\":\"{}\",\"request_id\":\"{request_id}\"{detail}}}",
            title(status)
        )
    };
    let content_type = if html {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    };
    let mut headers = headers;
    headers.push((
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    ));
    reply(session, ctx, status, headers, Bytes::from(body)).await
}

/// Sends a complete response with the given headers (Content-Type among them when there is
/// a body), plus `Cache-Control: no-store` unless set, the security headers and the request id.
pub(super) async fn reply(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Bytes,
) -> pingora_error::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 5))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    if !resp.headers.contains_key(header::CACHE_CONTROL) {
        resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    }
    if status != 304 {
        resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    }
    super::headers::add_security_headers(&mut resp, ctx.tls)?;
    resp.insert_header("x-request-id", ctx.request_id_header())?;
    ctx.status = status;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only || body.is_empty())
        .await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Sends a complete response gatehouse produced itself, with the security headers.
pub(super) async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &'static str,
    body: Bytes,
    location: Option<&str>,
) -> pingora_error::Result<()> {
    let mut headers = vec![(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    )];
    if let Some(location) = location {
        let value = http::HeaderValue::from_str(location)
            .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "redirect location"))?;
        headers.push((header::LOCATION, value));
    }
    reply(session, ctx, status, headers, body).await
}

/// Escapes text for HTML.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
