//! A total deadline for reading HTTP/1 request headers (SECURITY.md principle 8). Pingora
//! bounds each read, not the whole header, so a client sending one header line every few
//! seconds could hold a connection forever. `downstream::Downstream` wraps every connection
//! in a [`HeaderDeadline`] stream that fails reads once a request's headers have taken
//! longer than the deadline from their first byte.
//!
//! The stream follows the HTTP/1 exchange from the bytes that pass through it: the first
//! byte after a response starts a header phase, `\r\n\r\n` ends it. On HTTP/2 connections (by
//! ALPN, or h2c connections handed over with [`HeaderDeadline::h2c`]) the same deadline
//! bounds the connection preface and every header block ([`h2_frames`]). Upgraded connections
//! (a `101` response) are left alone.
//!
//! The same stream hands every complete request head to [`raw_head::check`] before the
//! parser sees its end: a refused head is answered here (status, JSON body, request id,
//! `Connection: close`) and the parser gets end-of-stream. Heads that arrive in one read (the
//! common case) are checked in place; only heads split over reads are copied.

use std::{
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use std::future::Future;

use async_trait::async_trait;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    raw_connect::ProxyDigest, tls::SslDigest, GetProxyDigest, GetSocketDigest, GetTimingDigest,
    Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::raw_head::{self, Rejection};

mod h2_frames;
use h2_frames::H2Frames;

/// The time a request header may take: `request_header_timeout`, where zero turns the
/// deadline off (every head is still checked).
pub fn allowance(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        timeout
    }
}

/// Called with the status of every head refused by [`raw_head::check`] (for metrics).
pub type RejectHook = Arc<dyn Fn(u16) + Send + Sync>;

/// The start of the HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the stream is in the HTTP/1 exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: waiting is governed by the keep-alive timeout, not the deadline.
    Idle,
    /// Reading a request header that must be complete by `deadline`; `matched` is 1 when
    /// the last read ended just after a line feed.
    Headers { deadline: Instant, matched: u8 },
    /// The header is complete; body bytes and the response follow.
    Body,
    /// HTTP/2: the preface and each header block are due within the deadline.
    H2(H2Frames),
    /// An upgraded connection, or HTTP/2 where this stream cannot follow it: no deadline.
    Off,
}

/// A downstream stream with a total request-header deadline.
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    /// Created on the first header read that has to wait, then reset: no timer is touched
    /// when a header arrives in one read (the common case).
    timer: Option<Pin<Box<Sleep>>>,
    /// The part of a head read so far, when it spans several reads, and its line feeds.
    head: Vec<u8>,
    head_lines: usize,
    /// A refused head's response still being written (then the reader gets end-of-stream).
    rejecting: Option<(Vec<u8>, usize)>,
    on_reject: Option<RejectHook>,
}

/// What a read did to the current head.
enum Seen {
    /// Not part of a head (body, HTTP/2, upgraded).
    Other,
    /// The head goes on past this read.
    Partial,
    /// The head ends after `end` bytes of this read.
    Complete(usize),
}

// === impl HeaderDeadline ===

impl HeaderDeadline {
    /// Wraps `inner`; HTTP/2 negotiated by ALPN is followed frame by frame from the start.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        let phase = if matches!(inner.selected_alpn_proto(), Some(ALPN::H2)) {
            Phase::H2(H2Frames::new(None))
        } else {
            Phase::Idle
        };
        HeaderDeadline {
            inner,
            timeout: allowance(timeout),
            phase,
            timer: None,
            head: Vec::new(),
            head_lines: 0,
            rejecting: None,
            on_reject: None,
        }
    }

    /// Calls `hook` with the status of every refused head.
    pub fn on_reject(mut self, hook: RejectHook) -> Self {
        self.on_reject = Some(hook);
        self
    }

    /// Wraps a new connection whose first request header must be complete by `deadline`,
    /// counted from when the connection was taken up (as nginx's `client_header_timeout`):
    /// a client that connects and then sends nothing, or too little, is cut off as surely as
    /// one that sends slowly. Exemptions as in [`HeaderDeadline::new`].
    pub fn first_request(inner: Stream, timeout: Duration, deadline: Instant) -> Self {
        let mut wrapped = Self::new(inner, timeout);
        wrapped.phase = match wrapped.phase {
            Phase::Idle => Phase::Headers {
                deadline,
                matched: 0,
            },
            Phase::H2(_) => Phase::H2(H2Frames::new(Some(deadline))),
            other => other,
        };
        wrapped
    }

    /// Wraps a cleartext connection that starts with the HTTP/2 preface (h2c), still unread:
    /// the preface is due by `deadline`, then each header block within `timeout`.
    pub fn h2c(inner: Stream, timeout: Duration, deadline: Instant) -> Self {
        let mut wrapped = Self::new(inner, timeout);
        wrapped.phase = Phase::H2(H2Frames::new(Some(deadline)));
        wrapped
    }

    /// When the current request header (or HTTP/2 preface or header block) is due.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Headers { deadline, .. } => Some(deadline),
            Phase::H2(frames) => frames.deadline(),
            Phase::Idle | Phase::Body | Phase::Off => None,
        }
    }

    /// Advances the phase over bytes just read.
    fn saw(&mut self, bytes: &[u8]) -> Seen {
        if bytes.is_empty() {
            return Seen::Other;
        }
        if let Phase::H2(frames) = &mut self.phase {
            frames.advance(bytes, self.timeout);
            return Seen::Other;
        }
        let (deadline, mut matched) = match self.phase {
            Phase::Idle if bytes.starts_with(&H2_PREFACE[..14]) => {
                self.phase = Phase::Off;
                return Seen::Other;
            }
            Phase::Idle => (Instant::now() + self.timeout, 0u8),
            Phase::Headers { deadline, matched } => (deadline, matched),
            Phase::Body | Phase::H2(_) | Phase::Off => return Seen::Other,
        };
        // `matched` is 1 right after a line feed (a CR may follow); a second line feed
        // there is the empty line that ends the header (`\r\n\r\n`, or `\n\n` which
        // the parser also accepts).
        for (i, &b) in bytes.iter().enumerate() {
            matched = match b {
                b'\n' if matched == 1 => {
                    self.phase = Phase::Body;
                    return Seen::Complete(i + 1);
                }
                b'\n' => 1,
                b'\r' => matched,
                _ => 0,
            };
        }
        self.phase = Phase::Headers { deadline, matched };
        Seen::Partial
    }

    /// Checks the head that the bytes just read belong to (`read`); an error is the
    /// rejection to answer with.
    fn check_head(&mut self, seen: Seen, read: &[u8]) -> Result<(), Rejection> {
        match seen {
            Seen::Other => Ok(()),
            Seen::Complete(end) if self.head.is_empty() => raw_head::check(&read[..end]),
            Seen::Complete(end) => {
                self.head.extend_from_slice(&read[..end]);
                let verdict = raw_head::check(&self.head);
                self.head.clear();
                self.head_lines = 0;
                verdict
            }
            Seen::Partial => {
                self.head.extend_from_slice(read);
                self.head_lines += read.iter().filter(|&&b| b == b'\n').count();
                raw_head::check_partial(self.head.len(), self.head_lines)
            }
        }
    }

    /// Starts answering a refused head.
    fn reject(&mut self, rejection: Rejection) {
        if let Some(hook) = &self.on_reject {
            hook(rejection.status);
        }
        tracing::debug!(
            status = rejection.status,
            reason = rejection.reason,
            "request head refused"
        );
        self.head = Vec::new();
        self.phase = Phase::Off;
        self.rejecting = Some((rejection_response(rejection), 0));
    }

    /// Writes the refusal, then reports end-of-stream to the reader.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((response, written)) = self.rejecting.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while *written < response.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &response[*written..]) {
                Poll::Ready(Ok(n)) if n > 0 => *written += n,
                // The client is gone: nothing more to say.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    /// Advances the phase over bytes about to be written (the response).
    fn writing(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Body {
            return;
        }
        // `HTTP/1.x 1xx`: an interim response; the body may still be on its way, except
        // after 101, when the connection stops being HTTP.
        match bytes.get(9..12) {
            Some(b"101") => self.phase = Phase::Off,
            Some([b'1', _, _]) => {}
            _ => self.phase = Phase::Idle,
        }
    }

    /// Whether the header deadline has passed, arming the timer to wake this task at it.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline() else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// The complete response to a refused head: JSON like gatehouse's other error pages, with a
/// fresh request id, and the connection closed after it.
fn rejection_response(rejection: Rejection) -> Vec<u8> {
    let id = crate::proxy::generate_request_id();
    let id = std::str::from_utf8(&id).unwrap_or("-");
    let title = match rejection.status {
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!(
        "{{\"status\":{status},\"error\":\"{title}\",\"request_id\":\"{id}\",\"detail\":\"{reason}\"}}",
        status = rejection.status,
        reason = rejection.reason,
    );
    format!(
        "HTTP/1.1 {status} {title}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: {id}\r\n\
         Connection: close\r\n\r\n{body}",
        status = rejection.status,
        len = body.len(),
    )
    .into_bytes()
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request header deadline exceeded")
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.rejecting.is_some() {
            return this.poll_reject(cx);
        }
        if let Some(deadline) = this.deadline() {
            if Instant::now() >= deadline {
                return Poll::Ready(Err(timed_out()));
            }
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let len = buf.filled().len();
                let seen = this.saw(&buf.filled()[before..len]);
                if let Err(rejection) = this.check_head(seen, &buf.filled()[before..len]) {
                    // The parser never sees the refused head's end.
                    buf.set_filled(before);
                    this.reject(rejection);
                    return this.poll_reject(cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.writing(buf);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.writing(first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// The remaining transport traits delegate to the wrapped stream.

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("phase", &self.phase)
            .field("inner", &self.inner)
            .finish()
    }
}

#[cfg(test)]
mod tests;
