//! Request-target canonicalization (SECURITY.md principle 1).
//!
//! The proxy calls [`canonicalize`] once per request, routes and authorizes on the returned
//! path, and forwards that same path. Anything ambiguous (an encoded `/` or `\`, NUL, control
//! characters, a raw `#`, invalid percent-encoding or UTF-8, a dot-segment carrying `;`
//! parameters) is an error, never a guess.

use std::borrow::Cow;

/// An origin-form request target after canonicalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget<'a> {
    /// The canonical path: percent-encoded unreserved characters decoded exactly once, other
    /// percent-encodings kept with upper-case hex, raw printable characters that RFC 3986
    /// forbids in a path (`"` `<` `>` `[` `]` `^` `{` `|` `}` and the backtick) percent-encoded,
    /// repeated slashes merged, dot-segments removed (never above `/`), a trailing slash kept.
    /// Always starts with `/`. `Cow::Borrowed` if and only if it is byte-identical to the
    /// received path (the target before `?`): then nothing was allocated and the request
    /// line can be forwarded as received; `Cow::Owned` whenever anything changed.
    pub path: Cow<'a, str>,
    /// Everything after the first `?`, byte for byte (`Some("")` for a bare `?`), or `None`.
    /// Validated for forbidden bytes only; path matchers must never see it.
    pub query: Option<&'a str>,
    /// The path contains a raw `;`. It is not stripped: the caller rejects the request unless
    /// the matched route sets `allow_path_parameters`.
    pub has_path_parameters: bool,
}

/// Why a request target was rejected. Every variant maps to HTTP 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target does not start with `/` (absolute-form, authority-form, `*`, or empty).
    #[error("request target is not in origin form")]
    NotOriginForm,
    /// A raw `#`: fragments are never sent by a conforming client.
    #[error("raw '#' in the request target")]
    Fragment,
    /// A raw or percent-encoded control character (0x01–0x1F, 0x7F).
    #[error("control character in the request target")]
    ControlCharacter,
    /// A raw space.
    #[error("raw space in the request target")]
    Space,
    /// A raw or percent-encoded NUL.
    #[error("NUL in the request target")]
    Nul,
    /// A raw `\`.
    #[error("raw backslash in the request target")]
    Backslash,
    /// A raw byte outside ASCII (it must be percent-encoded).
    #[error("raw non-ASCII byte in the request target")]
    NonAscii,
    /// `%2F` in the path.
    #[error("percent-encoded '/' in the path")]
    EncodedSlash,
    /// `%5C` in the path.
    #[error("percent-encoded backslash in the path")]
    EncodedBackslash,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the path")]
    InvalidPercentEncoding,
    /// Percent-encoded bytes that do not form valid UTF-8.
    #[error("percent-encoded bytes are not valid UTF-8")]
    InvalidUtf8,
    /// A `.` or `..` segment followed by `;` parameters (`/..;/`): servers such as Tomcat
    /// treat it as a dot-segment, so its meaning depends on the upstream.
    #[error("dot-segment with path parameters")]
    DotSegmentWithParameters,
}

/// Canonicalizes an origin-form request target (path plus optional `?query`) as received.
///
/// Called once per request, before routing. Returns the canonical path (borrowed from
/// `target` when nothing had to change, so the common case does not allocate), the query
/// untouched, and whether the path has `;` parameters. Any error means HTTP 400. Runs in time
/// linear in `target.len()`.
pub fn canonicalize(target: &str) -> Result<CanonicalTarget<'_>, PathError> {
    let (path, query) = match target.find('?') {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let (path, has_path_parameters) = canonical_path(path)?;
    if let Some(query) = query {
        validate_query(query)?;
    }
    Ok(CanonicalTarget {
        path,
        query,
        has_path_parameters,
    })
}

// === impl PathError ===

impl PathError {
    /// A short, stable reason for logs and metric labels (e.g. `"encoded-slash"`).
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not-origin-form",
            PathError::Fragment => "fragment",
            PathError::ControlCharacter => "control-character",
            PathError::Space => "space",
            PathError::Nul => "nul",
            PathError::Backslash => "backslash",
            PathError::NonAscii => "non-ascii",
            PathError::EncodedSlash => "encoded-slash",
            PathError::EncodedBackslash => "encoded-backslash",
            PathError::InvalidPercentEncoding => "invalid-percent-encoding",
            PathError::InvalidUtf8 => "invalid-utf8",
            PathError::DotSegmentWithParameters => "dot-segment-parameters",
        }
    }
}

// === byte classes ===

/// Kept as is: unreserved, sub-delims except `;`, `:` and `@`.
const KEEP: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const SEMICOLON: u8 = 3;
/// Printable ASCII that RFC 3986 does not allow raw in a path; percent-encoded so that the
/// raw and the encoded spelling have one canonical form. Allowed raw in the query.
const ENCODE: u8 = 4;
const E_CONTROL: u8 = 10;
const E_SPACE: u8 = 11;
const E_NUL: u8 = 12;
const E_BACKSLASH: u8 = 13;
const E_HASH: u8 = 14;
const E_NON_ASCII: u8 = 15;

const CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [E_NON_ASCII; 256];
    let mut byte = 0;
    while byte < 0x80 {
        table[byte] = match byte as u8 {
            0 => E_NUL,
            0x01..=0x1F | 0x7F => E_CONTROL,
            b' ' => E_SPACE,
            b'\\' => E_BACKSLASH,
            b'#' => E_HASH,
            b'/' => SLASH,
            b'%' => PERCENT,
            b';' => SEMICOLON,
            // `?` never reaches the path scan (the path ends at the first one); if it did,
            // encoding it keeps it out of the query.
            b'?' | b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}' => ENCODE,
            _ => KEEP,
        };
        byte += 1;
    }
    table
}

fn class_error(class: u8) -> PathError {
    match class {
        E_SPACE => PathError::Space,
        E_NUL => PathError::Nul,
        E_BACKSLASH => PathError::Backslash,
        E_HASH => PathError::Fragment,
        E_NON_ASCII => PathError::NonAscii,
        _ => PathError::ControlCharacter,
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

// === the query ===

/// The query is forwarded byte for byte; only bytes that are never legitimate are refused.
fn validate_query(query: &str) -> Result<(), PathError> {
    for &byte in query.as_bytes() {
        let class = CLASS[usize::from(byte)];
        if class >= E_CONTROL {
            return Err(class_error(class));
        }
    }
    Ok(())
}

// === the path ===

/// Canonicalizes `src` (non-empty, starting with `/`). Returns the path and whether it had a
/// raw `;`.
fn canonical_path(src: &str) -> Result<(Cow<'_, str>, bool), PathError> {
    let bytes = src.as_bytes();
    let mut out = Output::new(src);
    let mut utf8 = Utf8Sequence::default();
    let mut has_parameters = false;
    let mut trailing_slash = false;
    let mut at = 0;
    // Invariant at the top of the loop: bytes[at] == b'/'.
    while at < bytes.len() {
        let slash = at;
        at += 1;
        let start = at;
        let mut segment = SegmentScan::default();
        while at < bytes.len() {
            let byte = bytes[at];
            match CLASS[usize::from(byte)] {
                KEEP => {
                    utf8.ascii()?;
                    segment.content(byte);
                    at += 1;
                }
                SLASH => break,
                SEMICOLON => {
                    utf8.ascii()?;
                    has_parameters = true;
                    segment.parameters = true;
                    at += 1;
                }
                ENCODE => {
                    utf8.ascii()?;
                    segment.content(byte);
                    segment.changed = true;
                    at += 1;
                }
                PERCENT => {
                    let (value, upper) = decode_percent(bytes, at)?;
                    if value >= 0x80 {
                        utf8.byte(value)?;
                    } else {
                        utf8.ascii()?;
                    }
                    if is_unreserved(value) {
                        segment.changed = true;
                    } else {
                        reject_encoded(value)?;
                        segment.changed |= !upper;
                    }
                    segment.content(value);
                    at += 3;
                }
                class => return Err(class_error(class)),
            }
        }
        utf8.ascii()?;
        let last = at == bytes.len();
        match segment.kind(start == at)? {
            SegmentKind::Empty | SegmentKind::Dot => trailing_slash |= last,
            SegmentKind::DotDot => {
                out.pop();
                trailing_slash |= last;
            }
            SegmentKind::Name => out.push_segment(slash, at, segment.changed),
        }
    }
    if trailing_slash || out.is_empty() {
        out.push_trailing_slash();
    }
    Ok((out.finish(), has_parameters))
}

/// Decodes the `%XX` at `bytes[at]`. Returns the byte and whether the hex was upper-case
/// (the canonical spelling).
fn decode_percent(bytes: &[u8], at: usize) -> Result<(u8, bool), PathError> {
    let (Some(&high), Some(&low)) = (bytes.get(at + 1), bytes.get(at + 2)) else {
        return Err(PathError::InvalidPercentEncoding);
    };
    match (hex_value(high), hex_value(low)) {
        (Some(h), Some(l)) => Ok((
            (h << 4) | l,
            !high.is_ascii_lowercase() && !low.is_ascii_lowercase(),
        )),
        _ => Err(PathError::InvalidPercentEncoding),
    }
}

/// Refuses percent-encoded bytes whose decoded meaning differs between servers.
fn reject_encoded(value: u8) -> Result<(), PathError> {
    match value {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::Nul),
        0x01..=0x1F | 0x7F => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

/// Writes one already-validated segment in canonical form.
fn write_segment(out: &mut String, segment: &[u8]) {
    let mut at = 0;
    while at < segment.len() {
        let byte = segment[at];
        match CLASS[usize::from(byte)] {
            PERCENT => {
                let value = match decode_percent(segment, at) {
                    Ok((value, _)) => value,
                    // Unreachable: the segment was validated by the scan.
                    Err(_) => byte,
                };
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    push_encoded(out, value);
                }
                at += 3;
            }
            ENCODE => {
                push_encoded(out, byte);
                at += 1;
            }
            _ => {
                out.push(char::from(byte));
                at += 1;
            }
        }
    }
}

fn push_encoded(out: &mut String, value: u8) {
    out.push('%');
    out.push(char::from(UPPER_HEX[usize::from(value >> 4)]));
    out.push(char::from(UPPER_HEX[usize::from(value & 0x0F)]));
}

/// What the scan learned about one segment (the bytes between two slashes).
#[derive(Default)]
struct SegmentScan {
    /// Decoded `.` bytes before the first `;`.
    dots: u8,
    /// A decoded byte other than `.` before the first `;`.
    other: bool,
    /// A raw `;` was seen.
    parameters: bool,
    /// The canonical spelling differs from the input.
    changed: bool,
}

enum SegmentKind {
    Empty,
    Dot,
    DotDot,
    Name,
}

// === impl SegmentScan ===

impl SegmentScan {
    /// Records one decoded content byte.
    fn content(&mut self, byte: u8) {
        if self.parameters {
            return;
        }
        if byte == b'.' && !self.other && self.dots < 3 {
            self.dots += 1;
        } else {
            self.other = true;
        }
    }

    fn kind(&self, empty: bool) -> Result<SegmentKind, PathError> {
        let dot_like = !self.other && (self.dots == 1 || self.dots == 2);
        if dot_like && self.parameters {
            return Err(PathError::DotSegmentWithParameters);
        }
        Ok(match (empty, dot_like, self.dots) {
            (true, _, _) => SegmentKind::Empty,
            (false, true, 1) => SegmentKind::Dot,
            (false, true, _) => SegmentKind::DotDot,
            (false, false, _) => SegmentKind::Name,
        })
    }
}

/// Validates the percent-encoded non-ASCII bytes of a path as UTF-8, one sequence at a time.
#[derive(Default)]
struct Utf8Sequence {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

// === impl Utf8Sequence ===

impl Utf8Sequence {
    /// A decoded byte >= 0x80.
    fn byte(&mut self, value: u8) -> Result<(), PathError> {
        if self.need == 0 {
            self.need = match value {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
            self.len = 0;
        }
        self.buf[self.len] = value;
        self.len += 1;
        if self.len == self.need {
            // Leaves overlong forms, surrogates and > U+10FFFF to the standard library.
            std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathError::InvalidUtf8)?;
            self.need = 0;
        }
        Ok(())
    }

    /// Anything that is not a percent-encoded byte >= 0x80: no sequence may be open.
    fn ascii(&self) -> Result<(), PathError> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }
}

/// The canonical path under construction. While it equals a prefix of the input it is only
/// that prefix's length; it becomes an owned string at the first byte that differs.
struct Output<'a> {
    src: &'a str,
    /// Length of the input prefix equal to the output, while `owned` is `None`.
    borrowed: usize,
    owned: Option<String>,
}

// === impl Output ===

impl<'a> Output<'a> {
    fn new(src: &'a str) -> Self {
        Output {
            src,
            borrowed: 0,
            owned: None,
        }
    }

    fn is_empty(&self) -> bool {
        match &self.owned {
            Some(owned) => owned.is_empty(),
            None => self.borrowed == 0,
        }
    }

    /// Appends `/` + the segment that spans `src[slash + 1..end]`.
    fn push_segment(&mut self, slash: usize, end: usize, changed: bool) {
        if self.owned.is_none() && !changed && slash == self.borrowed {
            self.borrowed = end;
            return;
        }
        let src = self.src;
        let out = self.owned_mut();
        out.push('/');
        let segment = &src.as_bytes()[slash + 1..end];
        if changed {
            write_segment(out, segment);
        } else {
            out.push_str(&src[slash + 1..end]);
        }
    }

    /// Removes the last segment (a `..`), never going above the root.
    fn pop(&mut self) {
        match &mut self.owned {
            Some(owned) => {
                let keep = owned.rfind('/').unwrap_or(0);
                owned.truncate(keep);
            }
            None => {
                self.borrowed = self.src[..self.borrowed].rfind('/').unwrap_or(0);
            }
        }
    }

    fn push_trailing_slash(&mut self) {
        if self.owned.is_none() && self.src.as_bytes().get(self.borrowed) == Some(&b'/') {
            self.borrowed += 1;
            return;
        }
        self.owned_mut().push('/');
    }

    fn owned_mut(&mut self) -> &mut String {
        let (src, borrowed) = (self.src, self.borrowed);
        self.owned.get_or_insert_with(|| {
            let mut owned = String::with_capacity(src.len() + 8);
            owned.push_str(&src[..borrowed]);
            owned
        })
    }

    /// Borrowed only when the output is the whole input: callers treat `Cow::Borrowed` as
    /// "forward the received path unchanged", so a shortened prefix (`/a/b/..` → `/a/`) must
    /// not look borrowed.
    fn finish(self) -> Cow<'a, str> {
        match self.owned {
            Some(owned) => Cow::Owned(owned),
            None if self.borrowed == self.src.len() => Cow::Borrowed(self.src),
            None => Cow::Owned(self.src[..self.borrowed].to_owned()),
        }
    }
}

#[cfg(test)]
mod tests;
