//! Checks of an HTTP/1 request head as raw bytes, before Pingora's parser reads it
//! (SECURITY.md: request smuggling and protocol edge cases, bounds). The parser is lenient
//! where a proxy must not be, and where it is strict it answers with a bare 400 of its own:
//!
//! - `Content-Length` with `Transfer-Encoding`, a `Transfer-Encoding` other than `chunked`,
//!   one in HTTP/1.0, or several: the parser picks one framing; two hops may pick
//!   differently, which is how requests are smuggled → 400.
//! - A malformed, list-valued or repeated `Content-Length` → 400.
//! - A raw `#` in the target: the parser drops the fragment, so the request would be decided
//!   and forwarded without bytes the client sent → 400.
//! - Two `Host` fields, obsolete line folding, NUL / bare CR / control bytes in a value,
//!   invalid field names → 400 with gatehouse's page and request id.
//! - More than [`MAX_HEADERS`] fields or [`MAX_HEAD_BYTES`] bytes → 431; a target longer than
//!   [`MAX_TARGET_BYTES`] → 414 (the parser would take 256 fields and 64 KiB targets).
//!
//! Pure: no I/O, no allocation.

/// Most request header fields accepted; more → 431.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of a request head (request line, fields and the empty line); more → 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest request target accepted; longer → 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Why a head was refused: the status and a short stable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Rejection {
    Rejection {
        status: 400,
        reason,
    }
}

/// The rejection for a head that grew past [`MAX_HEAD_BYTES`] before it ended.
pub const TOO_LARGE: Rejection = Rejection {
    status: 431,
    reason: "headers-too-large",
};

/// Checks a complete request head: the request line, the fields and the empty line that
/// ends them (`\r\n\r\n`, or bare `\n` line ends, which the parser also accepts).
pub fn check(head: &[u8]) -> Result<(), Rejection> {
    if head.len() > MAX_HEAD_BYTES {
        return Err(TOO_LARGE);
    }
    let mut lines = Lines { rest: head };
    // Empty lines before the request line are allowed (RFC 9112 2.2).
    let request_line = loop {
        match lines.next() {
            Some(Ok([])) => continue,
            Some(Ok(line)) => break line,
            Some(Err(r)) => return Err(r),
            None => return Err(bad("invalid-request-line")),
        }
    };
    let http10 = request_line_version(request_line)?;
    let mut fields = 0usize;
    let mut hosts = 0u8;
    let mut content_length = false;
    let mut transfer_encoding = false;
    for line in lines {
        let line = line?;
        if line.is_empty() {
            break;
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(Rejection {
                status: 431,
                reason: "too-many-headers",
            });
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(bad("obsolete-line-folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(bad("invalid-header-line"))?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("invalid-header-name"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("invalid-header-value"));
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if hosts > 1 {
                return Err(bad("duplicate-host"));
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if content_length {
                return Err(bad("duplicate-content-length"));
            }
            content_length = true;
            if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
                return Err(bad("invalid-content-length"));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding {
                return Err(bad("duplicate-transfer-encoding"));
            }
            transfer_encoding = true;
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad("unsupported-transfer-encoding"));
            }
        }
    }
    if transfer_encoding && content_length {
        return Err(bad("content-length-and-transfer-encoding"));
    }
    if transfer_encoding && http10 {
        return Err(bad("transfer-encoding-in-http-1.0"));
    }
    Ok(())
}

/// Checks the start of a head that has not ended yet (`len` bytes so far, `lines` line feeds
/// among them; the caller counts them as the bytes arrive, so a head trickled in byte by byte
/// is not rescanned), so that an oversized one is refused as soon as it is one: a request
/// line longer than a target may be → 414, more bytes or lines than a head may have → 431.
pub fn check_partial(len: usize, lines: usize) -> Result<(), Rejection> {
    if lines == 0 && len > MAX_TARGET_BYTES + 64 {
        return Err(Rejection {
            status: 414,
            reason: "uri-too-long",
        });
    }
    if len > MAX_HEAD_BYTES {
        return Err(TOO_LARGE);
    }
    // The parser gives up at 256 fields even before the head ends.
    if lines > MAX_HEADERS + 1 {
        return Err(Rejection {
            status: 431,
            reason: "too-many-headers",
        });
    }
    Ok(())
}

/// Checks `METHOD SP target SP HTTP/1.x`; returns whether the version is HTTP/1.0.
fn request_line_version(line: &[u8]) -> Result<bool, Rejection> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("invalid-request-line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid-request-line"));
    }
    if target.len() > MAX_TARGET_BYTES {
        return Err(Rejection {
            status: 414,
            reason: "uri-too-long",
        });
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(bad("invalid-request-line"));
    }
    if target.contains(&b'#') {
        return Err(bad("fragment-in-target"));
    }
    match version {
        b"HTTP/1.1" => Ok(false),
        b"HTTP/1.0" => Ok(true),
        _ => Err(bad("invalid-request-line")),
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Lines ended by `\n` (a `\r` right before it is dropped); a `\r` anywhere else is an
/// error (bare CR).
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<&'a [u8], Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(end) = self.rest.iter().position(|&b| b == b'\n') else {
            // Unterminated: the caller only passes complete heads.
            self.rest = &[];
            return Some(Err(bad("invalid-header-line")));
        };
        let mut line = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.contains(&b'\r') {
            return Some(Err(bad("bare-cr")));
        }
        Some(Ok(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &str) -> Vec<u8> {
        format!("GET /x HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n").into_bytes()
    }

    fn reason(bytes: &[u8]) -> Option<&'static str> {
        check(bytes).err().map(|r| r.reason)
    }

    #[test]
    fn ordinary_heads_pass() {
        assert_eq!(check(&head("")), Ok(()));
        assert_eq!(check(&head("Content-Length: 5\r\n")), Ok(()));
        assert_eq!(check(&head("Transfer-Encoding: Chunked\r\n")), Ok(()));
        assert_eq!(
            check(&head("X-A: caf\u{e9} \t ok\r\nCookie: a=b; c=d\r\n")),
            Ok(())
        );
        assert_eq!(check(b"\r\nGET / HTTP/1.0\n\n"), Ok(()));
        assert_eq!(check(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    }

    #[test]
    fn smuggling_framings_are_refused() {
        for (fields, why) in [
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "content-length-and-transfer-encoding",
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "content-length-and-transfer-encoding",
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                "unsupported-transfer-encoding",
            ),
            (
                "Transfer-Encoding: xchunked\r\n",
                "unsupported-transfer-encoding",
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "duplicate-transfer-encoding",
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                "duplicate-content-length",
            ),
            ("Content-Length: 5, 5\r\n", "invalid-content-length"),
            ("Content-Length: +5\r\n", "invalid-content-length"),
            ("Content-Length: 0x5\r\n", "invalid-content-length"),
            ("Content-Length:\r\n", "invalid-content-length"),
            ("Transfer-Encoding : chunked\r\n", "invalid-header-name"),
            (" Transfer-Encoding: chunked\r\n", "obsolete-line-folding"),
            (
                "X-A: 1\r\n\tTransfer-Encoding: chunked\r\n",
                "obsolete-line-folding",
            ),
        ] {
            assert_eq!(reason(&head(fields)), Some(why), "{fields:?}");
        }
        assert_eq!(
            reason(b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some("transfer-encoding-in-http-1.0")
        );
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        assert_eq!(
            reason(b"GET /admin#/../public HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some("fragment-in-target")
        );
        assert_eq!(reason(&head("Host: b.test\r\n")), Some("duplicate-host"));
        assert_eq!(reason(&head("X-A: a\0b\r\n")), Some("invalid-header-value"));
        assert_eq!(reason(&head("X-A: a\rb\r\n")), Some("bare-cr"));
        assert_eq!(
            reason(&head("X-A: a\x1bb\r\n")),
            Some("invalid-header-value")
        );
        assert_eq!(reason(&head("X A: b\r\n")), Some("invalid-header-name"));
        assert_eq!(reason(&head(": b\r\n")), Some("invalid-header-name"));
        assert_eq!(reason(&head("no colon\r\n")), Some("invalid-header-line"));
        assert_eq!(
            reason(b"GET  /x HTTP/1.1\r\n\r\n"),
            Some("invalid-request-line")
        );
        assert_eq!(
            reason(b"GET /x HTTP/2.0\r\n\r\n"),
            Some("invalid-request-line")
        );
        assert_eq!(
            reason(b"GET /x\x01 HTTP/1.1\r\n\r\n"),
            Some("invalid-request-line")
        );
    }

    #[test]
    fn bounds_have_their_statuses() {
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            check(&head(&many)).unwrap_err(),
            Rejection {
                status: 431,
                reason: "too-many-headers"
            }
        );
        let fewer: String = (0..MAX_HEADERS - 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(check(&head(&fewer)), Ok(()));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(check(long.as_bytes()).unwrap_err().status, 414);
        let big = head(&format!("X-Big: {}\r\n", "v".repeat(MAX_HEAD_BYTES)));
        assert_eq!(check(&big).unwrap_err(), TOO_LARGE);
        // Unfinished heads: refused as soon as they are too long.
        let partial = |h: &[u8]| check_partial(h.len(), h.iter().filter(|&&b| b == b'\n').count());
        assert_eq!(partial(&big[..big.len() - 4]).unwrap_err(), TOO_LARGE);
        assert_eq!(
            partial(format!("GET /{}", "a".repeat(MAX_TARGET_BYTES + 100)).as_bytes())
                .unwrap_err()
                .status,
            414
        );
        assert_eq!(partial(b"GET /x HTTP/1.1\r\nHost: a"), Ok(()));
        let lines: String = (0..MAX_HEADERS + 2)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            partial(format!("GET / HTTP/1.1\r\n{lines}").as_bytes())
                .unwrap_err()
                .status,
            431
        );
    }
}
