//! A loopback TCP proxy that can make the service behind it slow, stalled or garbled without
//! touching it: every chunk is forwarded (or held, or replaced) according to the current
//! [`ProxyMode`], which the test changes while traffic flows. Used in front of Redis.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle},
    time::Instant,
};

/// What the proxy does with the bytes passing through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward at once.
    Pass,
    /// Forward every chunk this long after it arrived (in both directions).
    Delay(Duration),
    /// Hold everything (connections stay open, nothing arrives) until the mode changes;
    /// new connections are accepted but stall the same way.
    Stall,
    /// Answers from the server are replaced by bytes of the same length that are no valid
    /// protocol; requests still reach the server.
    Garbage,
}

/// A running proxy to one target; stops (with all its connections) on drop.
pub struct TcpProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

// === impl TcpProxy ===

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `target`, in [`ProxyMode::Pass`].
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (m, conns) = (mode.clone(), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue; // the target is down: the client sees the connection closed
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_rd, client_wr) = client.into_split();
                let (server_rd, server_wr) = server.into_split();
                let mut handles = conns.lock().unwrap();
                handles.retain(|h: &AbortHandle| !h.is_finished());
                handles.extend(pump(client_rd, server_wr, m.subscribe(), false));
                handles.extend(pump(server_rd, client_wr, m.subscribe(), true));
            }
        });
        TcpProxy {
            addr,
            mode,
            connections,
            task,
        }
    }

    /// `redis://ADDR` of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Changes what happens to bytes from now on (also to bytes already held).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        for h in self.connections.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// Copies `from` → `to` through a queue, so a delay is latency, not a throughput limit.
/// `answers`: this direction carries the server's answers (the one [`ProxyMode::Garbage`]
/// garbles). Either side closing closes the other.
fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
    answers: bool,
) -> [AbortHandle; 2] {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now(), Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some((arrived, chunk)) = rx.recv().await {
            loop {
                let current = *mode.borrow_and_update();
                match current {
                    ProxyMode::Stall => {
                        if mode.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    ProxyMode::Delay(d) => {
                        // A mode change while waiting is applied to this chunk too.
                        tokio::select! {
                            () = tokio::time::sleep_until(arrived + d) => {}
                            changed = mode.changed() => {
                                if changed.is_err() { return; }
                                continue;
                            }
                        }
                    }
                    ProxyMode::Pass | ProxyMode::Garbage => {}
                }
                let garbled;
                let out = if answers && current == ProxyMode::Garbage {
                    garbled = garbage(chunk.len());
                    &garbled[..]
                } else {
                    &chunk[..]
                };
                if to.write_all(out).await.is_err() {
                    return;
                }
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    [reader.abort_handle(), writer.abort_handle()]
}

/// `len` bytes that no RESP (or HTTP) parser accepts: an unknown type byte, then junk.
fn garbage(len: usize) -> Vec<u8> {
    b"?\x00\xffnot a redis answer\r\n"
        .iter()
        .copied()
        .cycle()
        .take(len.max(1))
        .collect()
}
