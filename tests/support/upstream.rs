//! An echo upstream on 127.0.0.1:0 (plain or TLS), hand-written HTTP/1.1 so it sees and
//! reports exactly what arrived: request line, raw header names in order, the raw head, body
//! length, SHA-256 and first bytes, trailers, and which connection it came on. Also: a
//! `/health` toggle, delays, `/bytes/N` downloads, WebSocket echo.
//!
//! Paths it knows:
//! - `/health` → 200 or 503 (`set_healthy`); not counted in `hits`, not recorded.
//! - `/bytes/N` → N bytes of `pattern(N)`.
//! - `/hop` → the echo, plus `Connection: X-Up-Private`, `X-Up-Private: 1`, `Keep-Alive`.
//! - `Upgrade: websocket` with `Sec-WebSocket-Version: 13` → 101 and a frame echo; with any
//!   other version → 426 and the connection stays HTTP (as real servers refuse a handshake).
//! - any other `Upgrade` → 101, after which it naively keeps reading HTTP/1 requests from the
//!   same connection, recording them: a backend that would serve a smuggled tunnel.
//! - anything else → the JSON echo. A `delay_ms=N` query parameter (or `set_delay`) delays it;
//!   each `resp_header=Name:%20value` query parameter adds that response field.
//!
//! `set_fault` makes every request after it fail in one way (refused, reset, hanging, cut
//! off mid-body) until cleared.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tokio_tungstenite::{
    tungstenite::{handshake::derive_accept_key, protocol::Role, Message},
    WebSocketStream,
};

/// The deterministic content of `/bytes/N` and of test uploads.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// How the upstream fails while a fault is set (`/health` keeps answering unless refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not listening: new connections are refused, kept-alive ones are closed at their next
    /// request without an answer.
    Refuse,
    /// Half a response head, then a TCP reset.
    Reset,
    /// The request is read and not answered until the fault is cleared.
    Hang,
    /// A complete head announcing 64 KiB (Content-Length), 1,000 bytes of body, then the
    /// connection closes.
    CloseMidBody,
    /// A chunked 200 with one 1,000-byte chunk, then the connection closes (no last chunk).
    CloseMidChunked,
}

struct State {
    name: String,
    fault: watch::Sender<Option<Fault>>,
    healthy: AtomicBool,
    delay_ms: AtomicU64,
    hits: AtomicUsize,
    inflight: AtomicUsize,
    health_checks: AtomicUsize,
    connections: AtomicU64,
    requests: Mutex<Vec<Value>>,
}

/// How many body bytes a record keeps (as lossy UTF-8 in `body`).
const BODY_KEPT: usize = 64 * 1024;

/// A running echo upstream; stops on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    task: Mutex<JoinHandle<()>>,
}

impl Upstream {
    /// Starts a plain HTTP echo upstream called `name`.
    pub async fn start(name: &str) -> Upstream {
        Self::spawn(name, None).await
    }

    /// Starts a TLS echo upstream presenting `leaf`.
    pub async fn start_tls(name: &str, leaf: &super::tls::Leaf) -> Upstream {
        Self::spawn(name, Some(leaf.acceptor())).await
    }

    async fn spawn(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            name: name.to_string(),
            fault: watch::Sender::new(None),
            healthy: AtomicBool::new(true),
            delay_ms: AtomicU64::new(0),
            hits: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let task = accept_loop(listener, state.clone(), tls.clone());
        Upstream {
            addr,
            tls,
            state,
            task: Mutex::new(task),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.addr
        )
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether `/health` answers 200 (true) or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Delay before every (non-health) response.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes every later request fail as `fault` says (`None`: answer normally again). For
    /// [`Fault::Refuse`] this returns once connections are refused; clearing it listens again
    /// on the same address.
    pub async fn set_fault(&self, fault: Option<Fault>) {
        let before = self.state.fault.send_replace(fault);
        if fault == Some(Fault::Refuse) && before != fault {
            self.task.lock().unwrap().abort();
            let refused = super::poll_until(Duration::from_secs(5), || async {
                TcpStream::connect(self.addr).await.is_err().then_some(())
            })
            .await;
            assert!(refused.is_some(), "upstream {} still accepts", self.name());
        } else if before == Some(Fault::Refuse) && fault != before {
            let listener = super::poll_until(Duration::from_secs(5), || async {
                TcpListener::bind(self.addr).await.ok()
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "upstream {}: cannot listen on {} again",
                    self.name(),
                    self.addr
                )
            });
            *self.task.lock().unwrap() =
                accept_loop(listener, self.state.clone(), self.tls.clone());
        }
    }

    /// Requests received, `/health` excluded.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests currently being answered.
    pub fn inflight(&self) -> usize {
        self.state.inflight.load(Ordering::SeqCst)
    }

    /// `/health` requests received.
    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// Every recorded request (the JSON echo of each), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests have been recorded so far (a mark for [`Upstream::requests_since`]).
    pub fn recorded(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// The requests recorded after the first `mark` ones.
    pub fn requests_since(&self, mark: usize) -> Vec<Value> {
        self.state.requests.lock().unwrap()[mark..].to_vec()
    }

    /// The most recent recorded request.
    pub fn last(&self) -> Value {
        self.requests()
            .pop()
            .unwrap_or_else(|| panic!("upstream {} received no request", self.name()))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.lock().unwrap().abort();
        // Hanging requests are released.
        self.state.fault.send_replace(None);
    }
}

fn accept_loop(
    listener: TcpListener,
    st: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let st = st.clone();
            let tls = tls.clone();
            let conn = st.connections.fetch_add(1, Ordering::SeqCst);
            // The head and the body go out in two writes: without this, Nagle and the
            // peer's delayed ACK hold the body back ~40 ms.
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(sock).await {
                            let _ = serve(s, st, conn).await;
                        }
                    }
                    None => {
                        let _ = serve(sock, st, conn).await;
                    }
                }
            });
        }
    })
}

/// Streams that can be closed with a TCP reset instead of a FIN.
trait Resettable {
    /// Makes the coming close a reset (SO_LINGER 0).
    fn reset_on_close(&self);
}

impl Resettable for TcpStream {
    fn reset_on_close(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Resettable for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
    }
}

/// Values of header `name` (case-insensitive) in a recorded request.
pub fn header_values(req: &Value, name: &str) -> Vec<String> {
    req["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .filter_map(|h| h[1].as_str().map(str::to_string))
        .collect()
}

/// The single value of header `name` in a recorded request (panics if several).
pub fn header_value(req: &Value, name: &str) -> Option<String> {
    let v = header_values(req, name);
    assert!(
        v.len() <= 1,
        "header {name} present {} times: {req}",
        v.len()
    );
    v.into_iter().next()
}

async fn serve<S>(stream: S, st: Arc<State>, conn: u64) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Resettable + Unpin + Send + 'static,
{
    let mut rd = BufReader::new(stream);
    let mut seq = 0u64;
    loop {
        let mut head_lines = Vec::new();
        let mut raw_head = Vec::new();
        loop {
            let mut raw = Vec::new();
            if rd.read_until(b'\n', &mut raw).await? == 0 {
                return Ok(());
            }
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if line.is_empty() {
                if head_lines.is_empty() {
                    continue; // stray CRLF between requests
                }
                break;
            }
            raw_head.extend_from_slice(&raw);
            head_lines.push(line);
        }
        let request_line = head_lines.remove(0);
        let headers: Vec<(String, String)> = head_lines
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default().to_string();

        if target == "/health" {
            if *st.fault.borrow() == Some(Fault::Refuse) {
                return Ok(());
            }
            st.health_checks.fetch_add(1, Ordering::SeqCst);
            let (code, text) = if st.healthy.load(Ordering::SeqCst) {
                (200, "OK")
            } else {
                (503, "Service Unavailable")
            };
            let resp = format!("HTTP/1.1 {code} {text}\r\nContent-Length: 2\r\n\r\nok");
            rd.get_mut().write_all(resp.as_bytes()).await?;
            continue;
        }

        let body = read_body(&mut rd, &get).await?;
        let fault = *st.fault.borrow();
        match fault {
            None => {}
            Some(Fault::Hang) => {
                // Answered (late) once the fault is cleared, as a backend that comes back.
                let mut changes = st.fault.subscribe();
                let _ = changes.wait_for(|f| *f != Some(Fault::Hang)).await;
            }
            Some(fault) => return fail(rd.get_mut(), fault).await,
        }
        st.hits.fetch_add(1, Ordering::SeqCst);
        let record = json!({
            "name": st.name,
            "request_line": request_line,
            "method": method,
            "path": target,
            "version": version,
            "headers": headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "raw_head": String::from_utf8_lossy(&raw_head),
            "body_len": body.len,
            "body_sha256": body.sha256,
            "body": String::from_utf8_lossy(&body.kept),
            "trailers": body.trailers,
            "connection": conn,
            "seq": seq,
        });
        seq += 1;
        st.requests.lock().unwrap().push(record.clone());

        if let Some(upgrade) = get("upgrade") {
            if !upgrade.eq_ignore_ascii_case("websocket") {
                // A naive backend: it switches, then keeps serving HTTP/1 on the connection.
                let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n\r\n");
                rd.get_mut().write_all(resp.as_bytes()).await?;
                continue;
            }
            if get("sec-websocket-version").as_deref() != Some("13") {
                let resp = "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
                rd.get_mut().write_all(resp.as_bytes()).await?;
                continue;
            }
            let key = get("sec-websocket-key").unwrap_or_default();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            rd.get_mut().write_all(resp.as_bytes()).await?;
            let ws = WebSocketStream::from_raw_socket(rd.into_inner(), Role::Server, None).await;
            return ws_echo(ws).await;
        }

        st.inflight.fetch_add(1, Ordering::SeqCst);
        let query_delay = target
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
            .and_then(|v| v.parse::<u64>().ok());
        let delay = query_delay.unwrap_or(st.delay_ms.load(Ordering::SeqCst));
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || version == "HTTP/1.0";
        let path_only = target.split('?').next().unwrap_or_default();
        let w = rd.get_mut();
        let res = if let Some(n) = path_only
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nX-Upstream: {}\r\n\r\n", st.name);
            let data = pattern(n);
            async {
                w.write_all(head.as_bytes()).await?;
                for chunk in data.chunks(64 * 1024) {
                    w.write_all(chunk).await?;
                }
                w.flush().await
            }
            .await
        } else {
            let body = serde_json::to_vec(&record).unwrap_or_default();
            let mut extra = if path_only == "/hop" {
                "Connection: X-Up-Private\r\nX-Up-Private: 1\r\nKeep-Alive: timeout=5\r\n"
                    .to_owned()
            } else {
                String::new()
            };
            // `resp_header=Name:%20value` (repeatable): response fields chosen by the test.
            for (k, v) in url::form_urlencoded::parse(
                target.split_once('?').map_or("", |(_, q)| q).as_bytes(),
            ) {
                if k == "resp_header" && !v.contains(['\r', '\n']) {
                    extra.push_str(&format!("{v}\r\n"));
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Upstream: {}\r\n{extra}\r\n",
                body.len(),
                st.name
            );
            async {
                w.write_all(head.as_bytes()).await?;
                w.write_all(&body).await?;
                w.flush().await
            }
            .await
        };
        st.inflight.fetch_sub(1, Ordering::SeqCst);
        res?;
        if close {
            return Ok(());
        }
    }
}

/// Answers a request the way `fault` says; the connection is closed afterwards.
async fn fail<S>(w: &mut S, fault: Fault) -> io::Result<()>
where
    S: AsyncWrite + Resettable + Unpin,
{
    match fault {
        Fault::Refuse | Fault::Hang => {}
        Fault::Reset => {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await?;
            w.flush().await?;
            w.reset_on_close();
        }
        Fault::CloseMidBody => {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n").await?;
            w.write_all(&pattern(1000)).await?;
            w.flush().await?;
        }
        Fault::CloseMidChunked => {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n").await?;
            w.write_all(&pattern(1000)).await?;
            w.write_all(b"\r\n").await?;
            w.flush().await?;
        }
    }
    Ok(())
}

/// A request body as the upstream read it.
struct Body {
    len: u64,
    sha256: String,
    /// The first `BODY_KEPT` bytes.
    kept: Vec<u8>,
    /// Trailer lines of a chunked body, as received.
    trailers: Vec<String>,
}

/// Reads the request body framed by Content-Length or chunked.
async fn read_body<R, F>(rd: &mut R, get: &F) -> io::Result<Body>
where
    R: AsyncBufReadExt + AsyncReadExt + Unpin,
    F: Fn(&str) -> Option<String>,
{
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut kept = Vec::new();
    let mut trailers = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut take = |data: &[u8], kept: &mut Vec<u8>| {
        hasher.update(data);
        let room = BODY_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).await?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                loop {
                    let mut t = String::new();
                    if rd.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                        break;
                    }
                    trailers.push(t.trim_end().to_string());
                }
                break;
            }
            let mut left = size;
            while left > 0 {
                let n = rd.read(&mut buf[..left.min(65536) as usize]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                take(&buf[..n], &mut kept);
                left -= n as u64;
            }
            total += size;
            let mut crlf = String::new();
            rd.read_line(&mut crlf).await?;
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<u64>().ok()) {
        let mut left = len;
        while left > 0 {
            let n = rd.read(&mut buf[..left.min(65536) as usize]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            take(&buf[..n], &mut kept);
            left -= n as u64;
        }
        total = len;
    }
    Ok(Body {
        len: total,
        sha256: hex::encode(hasher.finalize()),
        kept,
        trailers,
    })
}

async fn ws_echo<S>(mut ws: WebSocketStream<S>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}
