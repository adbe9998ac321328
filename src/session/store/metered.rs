//! A [`SessionStore`] that counts and times every operation of the store it wraps
//! (`gatehouse_session_store_operations_total`, `gatehouse_session_store_duration_seconds`).

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{LockToken, SessionId, SessionStore, StoreError, StoreEvent, StoreHealth};
use crate::metrics::{StoreMetrics, StoreOp, StoreResult};

/// Wraps a store with metrics; behaves exactly like it otherwise.
pub struct Metered {
    inner: Arc<dyn SessionStore>,
    metrics: StoreMetrics,
}

impl Metered {
    /// `inner`, counted into `metrics`.
    pub fn new(inner: Arc<dyn SessionStore>, metrics: StoreMetrics) -> Metered {
        Metered { inner, metrics }
    }

    fn record<T>(
        &self,
        op: StoreOp,
        started: Instant,
        result: Result<T, StoreError>,
        missed: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        let outcome = match &result {
            Ok(v) if missed(v) => StoreResult::Miss,
            Ok(_) => StoreResult::Ok,
            Err(_) => StoreResult::Error,
        };
        self.metrics
            .observe(op, outcome, started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait::async_trait]
impl SessionStore for Metered {
    async fn get(&self, id: &SessionId) -> Result<Option<Bytes>, StoreError> {
        let started = Instant::now();
        let r = self.inner.get(id).await;
        self.record(StoreOp::Get, started, r, Option::is_none)
    }

    async fn put(
        &self,
        id: &SessionId,
        record: &[u8],
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.put(id, record, ttl).await;
        self.record(StoreOp::Put, started, r, |_| false)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.delete(id).await;
        self.record(StoreOp::Delete, started, r, |_| false)
    }

    async fn put_code(
        &self,
        code: &[u8; 32],
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let r = self.inner.put_code(code, value, ttl).await;
        self.record(StoreOp::PutCode, started, r, |stored| !stored)
    }

    async fn take_code(&self, code: &[u8; 32]) -> Result<Option<Bytes>, StoreError> {
        let started = Instant::now();
        let r = self.inner.take_code(code).await;
        self.record(StoreOp::TakeCode, started, r, Option::is_none)
    }

    async fn try_lock(
        &self,
        name: &[u8],
        ttl: std::time::Duration,
    ) -> Result<Option<LockToken>, StoreError> {
        let started = Instant::now();
        let r = self.inner.try_lock(name, ttl).await;
        self.record(StoreOp::Lock, started, r, Option::is_none)
    }

    async fn unlock(&self, name: &[u8], token: &LockToken) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.unlock(name, token).await;
        self.record(StoreOp::Unlock, started, r, |_| false)
    }

    async fn publish_invalidation(&self, id: &SessionId) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.inner.publish_invalidation(id).await;
        self.record(StoreOp::Publish, started, r, |_| false)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.subscribe()
    }

    fn health(&self) -> StoreHealth {
        self.inner.health()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
