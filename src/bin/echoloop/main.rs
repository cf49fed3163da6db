//! The `echoloop` binary: flags in, exit code out. All the work is in the
//! library; this file only wires signals to a graceful shutdown, and
//! `cli.rs` holds the flags.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use echoloop::{Config, Server};

mod cli;
mod health;
#[path = "../common/output.rs"]
mod output;
#[path = "../common/usage.rs"]
mod usage;

use cli::Cli;

fn main() -> ExitCode {
    let cli: Cli = usage::parse_or_exit("echoloop");
    if cli.man || cli.completions.is_some() {
        return generate(&cli);
    }
    // clap requires --metrics with --health-check.
    if let Some(metrics) = cli.metrics.filter(|_| cli.health_check) {
        return health_check(metrics);
    }
    // Flags each in range can still clash (`--metrics` on a `--listen`
    // address, say): the library's own check, reported as a usage error.
    let tls = match cli.tls_flags() {
        Ok(tls) => tls,
        Err(why) => {
            eprintln!("echoloop: {why}");
            return ExitCode::from(usage::EXIT_USAGE);
        }
    };
    let mut config = cli.into_config();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Certificate files are read and checked before anything is bound: a
    // bad one is one line and exit 1.
    if let Some(tls) = tls {
        match load_tls(tls, &config.tls_listen) {
            Ok(server_config) => config.tls = Some(server_config),
            Err(why) => {
                eprintln!("echoloop: {why}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(why) = config.validate() {
        eprintln!("echoloop: {why}");
        return ExitCode::from(usage::EXIT_USAGE);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echoloop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--man` or `--completions SHELL`: writes it to stdout, from the same clap
/// definition that parses the flags. Rendered into memory first:
/// `clap_complete::generate` panics on a write error.
fn generate(cli: &Cli) -> ExitCode {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut text = Vec::new();
    match cli.completions {
        Some(shell) => clap_complete::generate(shell, &mut command, "echoloop", &mut text),
        None => {
            if let Err(e) = clap_mangen::Man::new(command).render(&mut text) {
                eprintln!("echoloop: render the man page: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if output::to_stdout("echoloop", &text) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::EXIT_OUTPUT)
    }
}

/// The TLS server configuration the flags name: the certificate files
/// read and checked, or a self-signed certificate made for `listen` (its
/// fingerprint logged).
fn load_tls(
    flags: cli::TlsFlags,
    listen: &[std::net::SocketAddr],
) -> Result<std::sync::Arc<echoloop::tls::rustls::ServerConfig>, String> {
    use echoloop::tls::{self, Identity};
    let identity = match flags.identity {
        cli::Identity::Files { cert, key } => Identity::from_pem_files(&cert, &key)?,
        cli::Identity::SelfSigned => {
            let names = tls::listen_names(listen);
            let made = Identity::self_signed(&names)?;
            log::info!(
                "tls: self-signed certificate for {}, SHA-256 fingerprint {}",
                names.join(", "),
                made.fingerprint()
            );
            made
        }
    };
    tls::server_config(identity, flags.client_ca.as_deref())
}

/// `--health-check`: exit 0 when the server at `--metrics` is healthy, 1
/// (with one line saying why) when not.
fn health_check(metrics: std::net::SocketAddr) -> ExitCode {
    match health::check(metrics) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("echoloop: health check: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, installs the signal handler, runs until shut down.
fn run(config: Config) -> std::io::Result<()> {
    let server = Server::bind(config)?;
    let handle = server.handle();
    // First Ctrl-C/SIGTERM/SIGHUP: graceful shutdown. Second: exit at once.
    let signals = AtomicUsize::new(0);
    let hup_ignored = sighup_ignored();
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("echoloop: second signal, exiting now");
            std::process::exit(130);
        }
        if let Err(e) = handle.shutdown() {
            eprintln!("echoloop: waking the loop for shutdown: {e}");
            std::process::exit(1);
        }
    })
    .map_err(|e| std::io::Error::other(format!("installing signal handler: {e}")))?;
    if hup_ignored {
        keep_sighup_ignored()?;
    }
    server.run()?;
    Ok(())
}

/// Whether SIGHUP was ignored when we started, as `nohup` arranges: the
/// operator asked for the server to outlive its terminal.
#[cfg(unix)]
fn sighup_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the current
    // disposition into `old`, a zeroed struct of the right type.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Puts back the inherited "ignore SIGHUP" that `ctrlc` replaced (it handles
/// SIGINT, SIGTERM and SIGHUP together).
#[cfg(unix)]
fn keep_sighup_ignored() -> std::io::Result<()> {
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler to
    // race with; it only undoes the handler installed above for SIGHUP.
    if unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(std::io::Error::other(format!(
            "signal(SIGHUP, SIG_IGN): {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Windows has no SIGHUP.
#[cfg(not(unix))]
fn sighup_ignored() -> bool {
    false
}

/// Windows has no SIGHUP.
#[cfg(not(unix))]
fn keep_sighup_ignored() -> std::io::Result<()> {
    Ok(())
}
