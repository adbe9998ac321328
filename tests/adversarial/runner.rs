//! The case runner: tables of cases run one after another against a shared stack (per route
//! kind, or once), each under a time limit, every failure collected so that one run reports
//! them all.

use std::{
    collections::BTreeMap,
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{future::BoxFuture, FutureExt};

use crate::stack::{Kind, Stack};

/// A case's time limit.
const CASE_TIMEOUT: Duration = Duration::from_secs(40);

/// A case run once.
pub type Case = fn(Arc<Stack>) -> BoxFuture<'static, ()>;
/// A case run once per route kind.
pub type KindCase = fn(Arc<Stack>, Kind) -> BoxFuture<'static, ()>;

/// `[(name, case)]` for functions `async fn f(s: Arc<Stack>)`.
#[macro_export]
macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), (|s| -> futures_util::future::BoxFuture<'static, ()> { Box::pin($f(s)) }) as $crate::runner::Case)),*]
    };
}

/// `[(name, case)]` for functions `async fn f(s: Arc<Stack>, kind: Kind)`.
#[macro_export]
macro_rules! kind_cases {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), (|s, k| -> futures_util::future::BoxFuture<'static, ()> { Box::pin($f(s, k)) }) as $crate::runner::KindCase)),*]
    };
}

/// Collects failures so that one run reports every broken case.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
    passed: usize,
    names: BTreeMap<String, Duration>,
}

impl Report {
    /// Runs one case, recording a panic or a timeout as a failure.
    pub async fn run<F>(&mut self, name: String, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        quiet_panics_in_cases();
        let t0 = Instant::now();
        let quiet = Quiet(Box::pin(fut));
        let outcome =
            tokio::time::timeout(CASE_TIMEOUT, AssertUnwindSafe(quiet).catch_unwind()).await;
        self.names.insert(name.clone(), t0.elapsed());
        match outcome {
            Ok(Ok(())) => self.passed += 1,
            Ok(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".into());
                self.failures.push(format!("{name}: {msg}"));
            }
            Err(_) => self
                .failures
                .push(format!("{name}: no result within {CASE_TIMEOUT:?}")),
        }
    }

    /// Panics with every failure, if any.
    pub fn finish(self, kind: &str) {
        let slowest: Vec<String> = {
            let mut v: Vec<_> = self.names.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1));
            v.iter()
                .take(if std::env::var_os("ADV_TIMINGS").is_some() {
                    100
                } else {
                    3
                })
                .map(|(n, d)| format!("{n} {d:.1?}"))
                .collect()
        };
        eprintln!(
            "{kind}: {} cases passed, {} failed; slowest: {}",
            self.passed,
            self.failures.len(),
            slowest.join(", ")
        );
        assert!(
            self.failures.is_empty(),
            "{kind}: {} of {} cases failed:\n\n{}",
            self.failures.len(),
            self.failures.len() + self.passed,
            self.failures.join("\n\n")
        );
    }
}

impl Report {
    /// Runs every case of a table once.
    pub async fn each(&mut self, stack: &Arc<Stack>, cases: &[(&str, Case)]) {
        for (name, case) in cases {
            self.run((*name).to_owned(), case(Arc::clone(stack))).await;
        }
    }

    /// Runs every case of a table against each route kind.
    pub async fn kinds(&mut self, stack: &Arc<Stack>, cases: &[(&str, KindCase)]) {
        for (name, case) in cases {
            for k in Kind::ALL {
                self.run(format!("{name}[{k:?}]"), case(Arc::clone(stack), k))
                    .await;
            }
        }
    }
}

thread_local! {
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A case's future: panics while it is polled are reported by the `Report`, not printed
/// (with a backtrace) by the panic hook.
struct Quiet<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                IN_CASE.with(|c| c.set(false));
            }
        }
        IN_CASE.with(|c| c.set(true));
        let _reset = Reset;
        self.0.as_mut().poll(cx)
    }
}

/// Installs (once) a panic hook that stays silent for panics inside a running case.
fn quiet_panics_in_cases() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}
