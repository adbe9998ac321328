//! A raw HTTP/2 client (RFC 9113) for adversarial tests: frames and header blocks built by
//! hand (see `hpack`), so a test can send what the h2 crate and every conforming client
//! refuse to, over h2c with prior knowledge or over any byte stream (TLS with ALPN h2); and a
//! reader that reports what came back on a stream: a response, a reset, a GOAWAY or a close.

use std::{collections::HashMap, io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::hpack::{self, Decoder};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long [`H2Conn::response`] waits.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// Error codes.
pub mod error {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// One frame as bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7FFF_FFFF).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// A HEADERS frame carrying the whole `block` (END_HEADERS set).
pub fn headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
    frame(kind::HEADERS, flags, stream, block)
}

/// A DATA frame.
pub fn data(stream: u32, bytes: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    frame(kind::DATA, flags, stream, bytes)
}

/// An RST_STREAM frame.
pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A WINDOW_UPDATE frame.
pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A request header block: the four pseudo-headers (in the usual order), then `fields`.
pub fn request_block(
    method: &str,
    authority: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut all = vec![
        (":method", method),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ];
    all.extend_from_slice(fields);
    hpack::block(&all)
}

/// A frame the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// What became of a request stream.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A final response (1xx skipped), with its body.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The server reset the stream with this error code.
    Reset(u32),
    /// The server sent GOAWAY (and the stream got no response).
    GoAway { last_stream: u32, code: u32 },
    /// The connection closed without a response.
    Closed,
    /// Nothing conclusive within the time allowed.
    TimedOut,
}

#[derive(Default)]
struct StreamState {
    block: Vec<u8>,
    end_stream_after_block: bool,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    done: Option<Outcome>,
}

/// A client connection speaking raw frames.
pub struct H2Conn {
    rd: Box<dyn AsyncRead + Unpin + Send>,
    wr: Box<dyn AsyncWrite + Unpin + Send>,
    buf: Vec<u8>,
    decoder: Decoder,
    streams: HashMap<u32, StreamState>,
    /// The SETTINGS the server sent first.
    pub server_settings: HashMap<u16, u32>,
    /// GOAWAY (last stream id, error code), once received.
    pub goaway: Option<(u32, u32)>,
    /// Every RST_STREAM code received, by stream.
    pub resets: HashMap<u32, u32>,
    closed: bool,
    /// Stream of the header block being received (CONTINUATION follows it).
    continuing: Option<u32>,
}

// === impl Outcome ===

impl Outcome {
    /// The status of a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first value of response header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Outcome::Response { headers, .. } => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The response body as JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Outcome::Response { body, .. } => serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}")),
            _ => panic!("no response: {self:?}"),
        }
    }

    /// Refused in any of the ways HTTP/2 allows: a 4xx, a reset, GOAWAY or a close.
    pub fn is_refusal(&self) -> bool {
        match self {
            Outcome::Response { status, .. } => (400..500).contains(status),
            Outcome::Reset(_) | Outcome::GoAway { .. } | Outcome::Closed => true,
            Outcome::TimedOut => false,
        }
    }

    /// A short description for assertion messages (body truncated).
    pub fn brief(&self) -> String {
        match self {
            Outcome::Response {
                status,
                headers,
                body,
            } => format!(
                "{status} {headers:?} {}",
                String::from_utf8_lossy(&body[..body.len().min(600)])
            ),
            other => format!("{other:?}"),
        }
    }
}

// === impl H2Conn ===

impl H2Conn {
    /// Cleartext HTTP/2 with prior knowledge to `addr`.
    pub async fn h2c(addr: SocketAddr) -> io::Result<H2Conn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        Self::over(tcp).await
    }

    /// Starts HTTP/2 over `stream` (already past TLS and ALPN if any): the preface, our
    /// SETTINGS (no dynamic table for the server's encoder, no push, large windows), and the
    /// server's SETTINGS acknowledged.
    pub async fn over<S>(stream: S) -> io::Result<H2Conn>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let mut conn = H2Conn {
            rd: Box::new(rd),
            wr: Box::new(wr),
            buf: Vec::new(),
            decoder: Decoder::new(),
            streams: HashMap::new(),
            server_settings: HashMap::new(),
            goaway: None,
            resets: HashMap::new(),
            closed: false,
            continuing: None,
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[
            (setting::HEADER_TABLE_SIZE, 0),
            (setting::ENABLE_PUSH, 0),
            (setting::INITIAL_WINDOW_SIZE, 1 << 24),
        ]));
        hello.extend(window_update(0, 1 << 24));
        conn.send(&hello).await?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        while conn.server_settings.is_empty() {
            match conn.next_frame(deadline).await? {
                Some(f) => conn.handle(f).await?,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "no SETTINGS from the server",
                    ))
                }
            }
        }
        Ok(conn)
    }

    /// Writes raw bytes (frames, or anything else).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wr.write_all(bytes).await?;
        self.wr.flush().await
    }

    /// Sends a GET-like request (`HEADERS` with END_STREAM) and waits for its outcome.
    pub async fn request(&mut self, stream: u32, block: &[u8]) -> Outcome {
        if self.send(&headers(stream, block, true)).await.is_err() {
            return Outcome::Closed;
        }
        self.response(stream).await
    }

    /// Waits for the outcome of `stream`: its final response, a reset, or the end of the
    /// connection (GOAWAY or close).
    pub async fn response(&mut self, stream: u32) -> Outcome {
        self.response_within(stream, RESPONSE_TIMEOUT).await
    }

    /// [`H2Conn::response`] with a time limit.
    pub async fn response_within(&mut self, stream: u32, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(done) = self.streams.get(&stream).and_then(|s| s.done.clone()) {
                return done;
            }
            if self.closed {
                return match self.goaway {
                    Some((last_stream, code)) => Outcome::GoAway { last_stream, code },
                    None => Outcome::Closed,
                };
            }
            match self.next_frame(deadline).await {
                Ok(Some(f)) => {
                    if self.handle(f).await.is_err() {
                        self.closed = true;
                    }
                }
                Ok(None) => self.closed = true,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Outcome::TimedOut,
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads frames until the connection closes or `limit` passes; true if it closed.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.closed {
            match self.next_frame(deadline).await {
                Ok(Some(f)) => {
                    if self.handle(f).await.is_err() {
                        self.closed = true;
                    }
                }
                Ok(None) => self.closed = true,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return false,
                Err(_) => self.closed = true,
            }
        }
        true
    }

    /// The next frame, `None` at EOF; a `TimedOut` error after `deadline`.
    pub async fn next_frame(&mut self, deadline: Instant) -> io::Result<Option<Frame>> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                    return Ok(Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7FFF_FFFF,
                        payload: head[9..].to_vec(),
                    }));
                }
            }
            let mut chunk = [0u8; 16384];
            let n = match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time")),
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Ok(Err(e)) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn handle(&mut self, f: Frame) -> io::Result<()> {
        match f.kind {
            kind::SETTINGS if f.flags & flag::ACK == 0 => {
                for pair in f.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([pair[0], pair[1]]);
                    let v = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
                    self.server_settings.insert(id, v);
                }
                // An empty SETTINGS still counts as received.
                self.server_settings.entry(0).or_insert(0);
                self.send(&frame(kind::SETTINGS, flag::ACK, 0, &[])).await?;
            }
            kind::PING if f.flags & flag::ACK == 0 => {
                self.send(&frame(kind::PING, flag::ACK, 0, &f.payload))
                    .await?;
            }
            kind::GOAWAY => {
                let word = |i: usize| {
                    f.payload
                        .get(i..i + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                self.goaway = Some((word(0) & 0x7FFF_FFFF, word(4)));
            }
            kind::RST_STREAM => {
                let code = f
                    .payload
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                self.resets.insert(f.stream, code);
                let st = self.streams.entry(f.stream).or_default();
                st.done.get_or_insert(Outcome::Reset(code));
            }
            kind::HEADERS | kind::CONTINUATION => {
                let mut payload = &f.payload[..];
                if f.kind == kind::HEADERS {
                    if f.flags & flag::PADDED != 0 {
                        let pad = usize::from(payload.first().copied().unwrap_or(0));
                        payload = &payload[1..payload.len().saturating_sub(pad).max(1)];
                    }
                    if f.flags & flag::PRIORITY != 0 {
                        payload = payload.get(5..).unwrap_or_default();
                    }
                }
                let st = self.streams.entry(f.stream).or_default();
                st.block.extend_from_slice(payload);
                if f.kind == kind::HEADERS {
                    st.end_stream_after_block = f.flags & flag::END_STREAM != 0;
                }
                if f.flags & flag::END_HEADERS == 0 {
                    self.continuing = Some(f.stream);
                    return Ok(());
                }
                self.continuing = None;
                let block = std::mem::take(&mut st.block);
                let fields = self
                    .decoder
                    .decode(&block)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let st = self.streams.entry(f.stream).or_default();
                let status = fields
                    .iter()
                    .find(|(n, _)| n == ":status")
                    .and_then(|(_, v)| v.parse::<u16>().ok());
                match status {
                    Some(s) if s < 200 => {}
                    Some(s) => {
                        st.status = Some(s);
                        st.headers = fields;
                    }
                    None => {} // trailers
                }
                if st.end_stream_after_block {
                    Self::finish(st);
                }
            }
            kind::DATA => {
                if !f.payload.is_empty() {
                    let n = f.payload.len() as u32;
                    let mut wu = window_update(0, n);
                    if f.flags & flag::END_STREAM == 0 {
                        wu.extend(window_update(f.stream, n));
                    }
                    // The server may have closed already; what it sent still counts.
                    let _ = self.send(&wu).await;
                }
                let st = self.streams.entry(f.stream).or_default();
                st.body.extend_from_slice(&f.payload);
                if f.flags & flag::END_STREAM != 0 {
                    Self::finish(st);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(st: &mut StreamState) {
        if st.done.is_some() {
            return;
        }
        st.done = Some(match st.status {
            Some(status) => Outcome::Response {
                status,
                headers: std::mem::take(&mut st.headers),
                body: std::mem::take(&mut st.body),
            },
            None => Outcome::Reset(error::PROTOCOL_ERROR),
        });
    }
}
