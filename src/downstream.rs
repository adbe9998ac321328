//! The downstream connection handler in front of the proxy: it gives every connection a
//! total request-header deadline ([`HeaderDeadline`]; on HTTP/2, per header block) and, on a
//! plain listener, sends connections that open with the HTTP/2 preface (h2c) to an
//! HTTP/2-enabled copy of the proxy. Pingora would otherwise peek for that preface before
//! *every* request of a kept-alive connection (an extra syscall each; ~13% of req/s
//! measured), although a connection that started as HTTP/1 never turns into h2c.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use pingora_core::{apps::ServerApp, protocols::Stream, server::ShutdownWatch};
use tokio::time::Instant;

use crate::{
    header_deadline::{self, HeaderDeadline, RejectHook, H2_PREFACE},
    snapshot::Shared,
};

/// Serves downstream connections with `http1` (and `h2c` for cleartext HTTP/2).
pub struct Downstream<A> {
    shared: Arc<Shared>,
    http1: Arc<A>,
    h2c: Option<Arc<A>>,
    header_timeout: Duration,
    /// Counts heads refused before parsing (no route: `route="none"`).
    rejected: RejectHook,
}

// === impl Downstream ===

impl<A> Downstream<A> {
    /// `http1` serves HTTP/1 and TLS (ALPN) connections; `h2c`, when given, serves cleartext
    /// connections that start with the HTTP/2 preface. `header_timeout` bounds reading each
    /// HTTP/1 request header, and each HTTP/2 header block.
    /// Every connection counts in `shared` while it is served (for the SIGTERM drain).
    pub fn new(shared: Arc<Shared>, http1: A, h2c: Option<A>, header_timeout: Duration) -> Self {
        let counted = Arc::clone(&shared);
        let rejected: RejectHook = Arc::new(move |status| {
            counted.load().route_metrics(None).count(status);
        });
        Downstream {
            rejected,
            shared,
            http1: Arc::new(http1),
            h2c: h2c.map(Arc::new),
            header_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Downstream<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _serving = self.shared.enter();
        // A kept-alive HTTP/1 connection comes back already wrapped: no peeking again.
        if stream.as_any().is::<HeaderDeadline>() {
            return self.http1.process_new(stream, shutdown).await;
        }
        // The first request header is due within the deadline from now, the wait for the
        // h2c preface included: a silent or trickling client cannot hold the connection.
        let deadline = Instant::now() + header_deadline::allowance(self.header_timeout);
        if let Some(h2c) = &self.h2c {
            if stream.get_ssl_digest().is_none() {
                let mut preface = [0u8; H2_PREFACE.len()];
                // Not every stream supports peeking; those are served as HTTP/1. The peek waits
                // for a preface's worth of bytes.
                let peek = stream.try_peek(&mut preface);
                let peeked = tokio::time::timeout_at(deadline, peek).await.ok()?.ok()?;
                if peeked && preface == H2_PREFACE {
                    let stream: Stream =
                        Box::new(HeaderDeadline::h2c(stream, self.header_timeout, deadline));
                    return h2c.process_new(stream, shutdown).await;
                }
            }
        }
        let stream: Stream = Box::new(
            HeaderDeadline::first_request(stream, self.header_timeout, deadline)
                .on_reject(Arc::clone(&self.rejected)),
        );
        self.http1.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.http1.cleanup().await;
        if let Some(h2c) = &self.h2c {
            h2c.cleanup().await;
        }
    }
}
