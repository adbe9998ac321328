//! The `gatehouse` command line.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

// glibc malloc showed up at ~15% of a proxy core under load; mimalloc is the usual cure.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gatehouse — an identity-aware reverse proxy.
#[derive(Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    /// Configuration file (serves it when no command is given). Required by `run` and
    /// `check`.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configuration.
    Run {
        /// Take over the listening sockets of the running instance (graceful upgrade:
        /// start this, then send SIGQUIT to the old process).
        #[arg(long)]
        upgrade: bool,
        /// Unix socket used to hand over listening sockets on upgrade.
        #[arg(long, default_value = "/tmp/gatehouse_upgrade.sock")]
        upgrade_sock: String,
        /// PID file.
        #[arg(long, default_value = "/tmp/gatehouse.pid")]
        pid_file: String,
    },
    /// Validate the configuration and its policies; print every problem; exit 1 if any.
    Check,
    /// Print a fresh `cookie_secret` and ES256 `signing_key` (YAML to paste into a config).
    Keygen,
    /// Benchmarks only: store COUNT copies of the session of COOKIE (from a real login) in
    /// the configuration's shared session store and print one cookie per copy.
    #[command(hide = true)]
    BenchCloneSession {
        /// The session cookie (`NAME=VALUE` or the value).
        #[arg(long)]
        cookie: String,
        /// How many copies.
        #[arg(long)]
        count: usize,
    },
    /// Work with policies without a configuration.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run policy table tests; print each failing case and `N passed, M failed`; exit 1 on
    /// any failure.
    Test {
        /// Directory of named policies (`NAME.yaml`) that test files may refer to.
        #[arg(long)]
        policies_dir: Option<PathBuf>,
        /// Table test files (YAML: `policy` and `cases`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Policy {
            command:
                PolicyCommand::Test {
                    policies_dir,
                    files,
                },
        }) => policy_test(&files, policies_dir.as_deref()),
        Some(Command::Check) => with_config(cli.config, check),
        Some(Command::BenchCloneSession { cookie, count }) => {
            with_config(cli.config, |path| bench_clone_session(path, &cookie, count))
        }
        Some(Command::Keygen) => match gatehouse::identity::keygen_text() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("keygen: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Run {
            upgrade,
            upgrade_sock,
            pid_file,
        }) => with_config(cli.config, |config| {
            run(
                config,
                gatehouse::server::RunOptions {
                    upgrade,
                    upgrade_sock: Some(upgrade_sock),
                    pid_file: Some(pid_file),
                },
            )
        }),
        None => with_config(cli.config, |config| {
            run(config, gatehouse::server::RunOptions::default())
        }),
    }
}

/// Runs `f` with the `-c` file; `run` and `check` need one (exit 2 without).
fn with_config(config: Option<PathBuf>, f: impl FnOnce(&Path) -> ExitCode) -> ExitCode {
    match config {
        Some(config) => f(&config),
        None => {
            eprintln!("gatehouse: no configuration file given (use -c FILE); see --help");
            ExitCode::from(2)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match gatehouse::config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                println!("{}: warning: {warning}", path.display());
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn bench_clone_session(path: &Path, cookie: &str, count: usize) -> ExitCode {
    let loaded = match gatehouse::config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match gatehouse::bench_sessions::clone_session(&loaded.config, cookie, count, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-clone-session: {e}");
            ExitCode::FAILURE
        }
    }
}

fn policy_test(files: &[PathBuf], policies_dir: Option<&Path>) -> ExitCode {
    let report = gatehouse::policy::table_test::run_files(files, policies_dir);
    print!("{report}");
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(path: &Path, options: gatehouse::server::RunOptions) -> ExitCode {
    let config_level = gatehouse::config::load(path)
        .map(|l| l.config.log_level)
        .unwrap_or(gatehouse::config::LogLevel::Info);
    gatehouse::logging::init(config_level);
    match gatehouse::server::run(path, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
