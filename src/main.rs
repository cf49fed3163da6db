//! The `echoloop` binary: flags in, exit code out. All the work is in the
//! library; this file only wires signals to a graceful shutdown.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use echoloop::{Cli, Server};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echoloop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, installs the signal handler, runs until shut down.
fn run() -> std::io::Result<()> {
    let config = Cli::parse().into_config();
    let server = Server::bind(config)?;
    let handle = server.handle();
    // First Ctrl-C/SIGTERM: graceful shutdown. Second: exit at once.
    let signals = AtomicUsize::new(0);
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
    server.run()?;
    Ok(())
}
