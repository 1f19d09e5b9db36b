//! The `regie` binary: serve (default), validate an inventory file, check a running
//! instance's health (for container health checks), or move a Redis to the current key layout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use regie::inventory::parse_inventory;
use regie::local_admin;
use regie::settings::Settings;
use regie::startup::Application;
use regie::telemetry;

// Serving allocates and frees many small buffers on every worker thread; mimalloc's
// per-thread free lists do that with less work than glibc's malloc (see README, figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "regie",
    version,
    about = "Ad-slot serving microservice",
    after_help = "Every setting has a compiled-in default, so regie runs from any directory. \
        Files of REGIE_CONFIG_DIR (else config/, when present) and REGIE_* environment \
        variables override them: REGIE_LISTEN, REGIE_PUBLIC_URL, REGIE_REDIS_URL, \
        REGIE_INVENTORY, REGIE_ADMIN_TOKEN, REGIE_TRACKING_KEYS, REGIE_ENVIRONMENT, … \
        (see the README). Without REGIE_INVENTORY or config/inventory.json, the demo \
        inventory compiled in is served: try http://127.0.0.1:8080/demo."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ads (the default).
    Serve,
    /// Validate an inventory file: prints each error with its path, exits 1 if there is any.
    Check {
        /// The inventory JSON file.
        file: PathBuf,
    },
    /// Renames the keys of a single Redis (`REGIE_REDIS_URL`, `REGIE_KEY_PREFIX`) from the layout
    /// without hash tags to the current one. Run once, while no instance runs.
    MigrateKeys,
    /// GET /healthz of a running instance; exits 0 when it answers 200.
    Healthcheck {
        /// The instance's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        address: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Check { file } => check(&file),
        Command::Healthcheck { address } => healthcheck(&address),
        Command::MigrateKeys => migrate_keys(),
    }
}

fn migrate_keys() -> ExitCode {
    use secrecy::ExposeSecret;
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("regie: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(url) = &settings.redis_url else {
        eprintln!("regie migrate-keys: REGIE_REDIS_URL must name the Redis to migrate");
        return ExitCode::from(2);
    };
    match regie::store::migrate::migrate_keys(url.expose_secret(), &settings.key_prefix) {
        Ok(migration) => {
            println!("renamed {} keys", migration.renamed);
            for key in &migration.conflicts {
                println!("left {key}: its new name is taken");
            }
            if migration.conflicts.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("regie migrate-keys: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    let mut settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("regie: {e}");
            return ExitCode::from(2);
        }
    };
    let made_up_token = local_admin::make_up(&mut settings);
    telemetry::init(settings.log_format, &settings.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(async {
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        if let Some(token) = &made_up_token {
            // Not println!, which panics when standard output is closed.
            use std::io::Write;
            let announcement = local_admin::announcement(token, app.public_url());
            let _ = writeln!(std::io::stdout().lock(), "{announcement}");
        }
        match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

fn check(file: &PathBuf) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match parse_inventory(&bytes) {
        Ok(parsed) => {
            let i = &parsed.inventory;
            println!(
                "{}: valid ({} slots, {} advertisers, {} campaigns)",
                file.display(),
                i.slots.len(),
                i.advertisers.len(),
                i.campaigns.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for detail in &e.details {
                let path = if detail.path.is_empty() {
                    "(document)"
                } else {
                    &detail.path
                };
                println!("{path}: {}", detail.message);
            }
            ExitCode::FAILURE
        }
    }
}

/// A dependency-free HTTP/1.0 GET, so the slim container image needs no curl.
fn healthcheck(address: &str) -> ExitCode {
    use std::io::{Read, Write};
    let attempt = || -> std::io::Result<bool> {
        let addr = address
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    match attempt() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("regie healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
