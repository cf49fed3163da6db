//! How both binaries report a bad flag: one line, exit status 2.
//!
//! Included by each binary's `main` with `#[path]` rather than living in the
//! library: it needs clap, which the library does not depend on.

/// Exit status for a usage error (a bad flag), as clap and sysexits use.
pub const EXIT_USAGE: u8 = 2;

/// Parses the command line; on a bad flag, prints one line naming it —
/// without clap's usage and tip lines — prefixed with `program`, and exits
/// with [`EXIT_USAGE`]. `--help` and `--version` print and exit 0 as usual.
pub fn parse_or_exit<P: clap::Parser>(program: &str) -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            eprintln!("{program}: {}", line.trim_start_matches("error: "));
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}
