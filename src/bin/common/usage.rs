//! How both binaries report a bad flag: one line, exit status 2, naming the
//! environment variable when the bad value came from one.
//!
//! Included by each binary's `main` with `#[path]` rather than living in the
//! library: it needs clap, which the library does not depend on.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue};

/// Exit status for a usage error (a bad flag), as clap and sysexits use.
pub const EXIT_USAGE: u8 = 2;

/// Parses the command line; on a bad flag, prints one line naming it —
/// without clap's usage and tip lines — prefixed with `program`, and exits
/// with [`EXIT_USAGE`]. `--help` and `--version` print and exit 0 as usual,
/// or, when stdout cannot take them, say so in one line and exit with
/// [`crate::output::EXIT_OUTPUT`].
pub fn parse_or_exit<P: clap::Parser>(program: &str) -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            let printed = e
                .print()
                .and_then(|()| std::io::Write::flush(&mut std::io::stdout()));
            match printed {
                Ok(()) => std::process::exit(e.exit_code()),
                Err(why) => {
                    crate::output::report_failure(program, &why);
                    std::process::exit(i32::from(crate::output::EXIT_OUTPUT));
                }
            }
        }
        Err(e) => {
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let line = name_the_variable::<P>(&e, line, std::env::args_os().skip(1).collect());
            eprintln!("{program}: {}", line.trim_start_matches("error: "));
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}

/// Rewrites clap's `… for '--flag <V>'` as `… for ECHOLOOP_FLAG (--flag
/// <V>)` when the bad value came from the flag's environment variable:
/// clap reads the variable exactly when the flag is not on the command
/// line (`args`), and names only the flag, which the operator never typed.
fn name_the_variable<P: clap::CommandFactory>(
    e: &clap::Error,
    line: &str,
    args: Vec<OsString>,
) -> String {
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return line.to_string();
    };
    let Some(long) = shown
        .strip_prefix("--")
        .and_then(|s| s.split([' ', '=']).next())
    else {
        return line.to_string();
    };
    let command = P::command();
    let Some(var) = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
    else {
        return line.to_string();
    };
    let flag = format!("--{long}");
    let given = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    if given || std::env::var_os(var).is_none() {
        return line.to_string();
    }
    let var = var.to_string_lossy();
    line.replacen(&format!("'{shown}'"), &format!("{var} ({shown})"), 1)
}
