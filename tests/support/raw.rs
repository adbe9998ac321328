//! A raw-socket HTTP/1.1 client: sends exactly the bytes it is given (attackers don't
//! normalize) and parses whatever comes back.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpSocket,
};

/// Total time a raw exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the whole response when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}", self.dump()))
    }

    /// Status line, headers and (at most 2 KiB of) body, for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = format!("{}\n", self.status_line);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(2048)]).into_owned();
        s.push('\n');
        s.push_str(&body);
        s
    }
}

/// Sends `bytes` to `addr` from 127.0.0.1 and reads one response; panics on failure.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    try_raw_request(addr, bytes)
        .await
        .unwrap_or_else(|e| panic!("raw request to {addr}: {e}"))
}

/// Sends `bytes` to `addr` from 127.0.0.1 and reads one response.
pub async fn try_raw_request(addr: SocketAddr, bytes: &[u8]) -> io::Result<RawResponse> {
    raw_request_from([127, 0, 0, 1].into(), addr, bytes).await
}

/// Sends `bytes` to `addr` from a socket bound to `local` (e.g. 127.0.0.2) and reads one
/// response. The write runs concurrently with the read, so a server that answers early
/// (431, 414) and stops reading is still heard.
pub async fn raw_request_from(
    local: IpAddr,
    addr: SocketAddr,
    bytes: &[u8],
) -> io::Result<RawResponse> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(local, 0))?;
    let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, sock.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
    exchange(stream, bytes.to_vec()).await
}

/// Writes `bytes` on `stream` and reads one response, over any byte stream (TLS too).
pub async fn exchange<S>(stream: S, bytes: Vec<u8>) -> io::Result<RawResponse>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        // A server may reject and close before reading everything: ignore write errors.
        let _ = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        wr
    });
    let res = tokio::time::timeout(EXCHANGE_TIMEOUT, read_response(&mut rd))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete response in time"))?;
    writer.abort();
    res
}

/// Reads one HTTP/1.x response (head, then a body framed by Content-Length, chunked, or EOF).
/// Bytes read past the response are dropped; use `read_response_buffered` for pipelining.
pub async fn read_response<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<RawResponse> {
    read_response_buffered(rd, &mut Vec::new()).await
}

/// Like `read_response`, with `buf` carrying bytes read past one response into the next call.
pub async fn read_response_buffered<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<RawResponse> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let n = read_some(rd, buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(buf)
                ),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(rd, buf).await?
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < len {
            if read_some(rd, buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than Content-Length",
                ));
            }
        }
        buf.drain(..len).collect()
    } else {
        while read_some(rd, buf).await? > 0 {}
        std::mem::take(buf)
    };
    Ok(RawResponse {
        status,
        status_line,
        headers,
        body,
    })
}

async fn read_chunked<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            if read_some(rd, buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in chunk size",
                ));
            }
        };
        let size_str = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_str:?}"),
                )
            })?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            loop {
                if let Some(i) = find(buf, b"\r\n") {
                    let empty = i == 0;
                    buf.drain(..i + 2);
                    if empty {
                        return Ok(body);
                    }
                } else if read_some(rd, buf).await? == 0 {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            if read_some(rd, buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk"));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Reads more bytes; a reset counts as EOF (servers that reject early often close with
/// unread input, which turns into RST); callers report a missing head or short body.
async fn read_some<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16384];
    match rd.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
        Err(e) => Err(e),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One client connection for exchanges that span several messages (pipelining, smuggling,
/// slow senders): raw writes, buffered response reads, and a wait for the server to close.
pub struct RawConn {
    rd: tokio::net::tcp::OwnedReadHalf,
    wr: tokio::net::tcp::OwnedWriteHalf,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr` from 127.0.0.1.
    pub async fn open(addr: SocketAddr) -> RawConn {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let (rd, wr) = tcp.into_split();
        RawConn {
            rd,
            wr,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; an error means the server closed or reset the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wr.write_all(bytes).await?;
        self.wr.flush().await
    }

    /// Reads the next response (bytes after it stay buffered for the next call).
    pub async fn response(&mut self) -> io::Result<RawResponse> {
        self.response_within(EXCHANGE_TIMEOUT).await
    }

    /// [`RawConn::response`] with a time limit. A timeout loses nothing already read only if
    /// no byte of the response had arrived.
    pub async fn response_within(&mut self, limit: Duration) -> io::Result<RawResponse> {
        tokio::time::timeout(limit, read_response_buffered(&mut self.rd, &mut self.buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete response in time"))?
    }

    /// Reads until the server closes the connection or `limit` passes; returns every byte
    /// not yet consumed and whether the connection was closed (EOF or reset).
    pub async fn drain(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, read_some(&mut self.rd, &mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (std::mem::take(&mut self.buf), true),
                Ok(Ok(_)) => {}
                Err(_) => return (std::mem::take(&mut self.buf), false),
            }
        }
    }

    /// Half-closes the write side (the client is done sending).
    pub async fn shutdown_write(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}
