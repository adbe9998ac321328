//! The `gatehouse` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// gatehouse — an identity-aware reverse proxy.
#[derive(Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    /// Configuration file (serves it when no command is given).
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(config) = cli.config else {
        eprintln!("gatehouse: no configuration file given (use -c FILE); see --help");
        return ExitCode::from(2);
    };
    match cli.command {
        Some(Command::Check) => check(&config),
        Some(Command::Run {
            upgrade,
            upgrade_sock,
            pid_file,
        }) => run(
            &config,
            gatehouse::server::RunOptions {
                upgrade,
                upgrade_sock: Some(upgrade_sock),
                pid_file: Some(pid_file),
            },
        ),
        None => run(&config, gatehouse::server::RunOptions::default()),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
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

fn run(path: &std::path::Path, options: gatehouse::server::RunOptions) -> ExitCode {
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
