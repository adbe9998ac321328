//! Process logging: JSON lines on stderr through `tracing`; `RUST_LOG` overrides `log_level`.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogLevel;

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(level: LogLevel) {
    let default = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    // Pingora logs every client disconnect at error level through `log`; keep it at warn.
    // Its connection pool logs a race it recovers from (a new connection is made) at error,
    // up to hundreds of times a minute under load: off.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},pingora_core=warn,pingora_proxy=warn,pingora_core::connectors=off"
        ))
    });
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
