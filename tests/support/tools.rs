//! The programs some tests run besides ours — Prometheus' `promtool`, the
//! fault lab's `ip`, `tc`, `ss` and `nft`, the shells that check the
//! completion scripts, Python's `venv` for HdrHistogram_py, podman and runc
//! for the container image (and rustup's musl target), headless Chromium for
//! the stress client's HTML page — and the one rule for a program that is
//! missing.
//!
//! 1. Found on `PATH` (or in the sbin folders a non-login root shell may
//!    lack): the test runs.
//! 2. Missing, on Linux as root with `apt-get` (a fresh Debian or Ubuntu
//!    machine, and CI): its Debian package is installed the first time a
//!    test asks, with one line on stderr saying so. That is how `cargo
//!    test` alone sets up everything the suite needs. (`.ci/run` installs
//!    the same packages before the tests, so that in CI no install runs
//!    beside a test that measures.)
//! 3. Still missing: under CI (`CI` set, which `.ci/run` exports; CI runs
//!    as root) the test fails, because CI can always run it; elsewhere it
//!    prints one line saying what it skipped and why, and passes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The path of `program`, installing `package` first when it is missing
/// (rule 2); `None` after saying why the test `test` skips (rule 3).
pub fn program(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    let present = || find(program).is_some();
    if available(test, &format!("`{program}`"), package, present) {
        find(program)
    } else {
        None
    }
}

/// Whether `what` is here — `present` says so — installing `package`
/// first when it is not (rule 2). `false` after saying why the test
/// `test` skips (rule 3).
pub fn available(test: &str, what: &str, package: &str, present: impl Fn() -> bool) -> bool {
    if present() {
        return true;
    }
    let why = match install(package, test) {
        Ok(()) if present() => return true,
        Ok(()) => format!("{what} is missing even after installing {package}"),
        Err(why) => format!("{what} is missing (Debian package {package}) and {why}"),
    };
    unavailable(test, &why);
    false
}

/// Rule 3 for a test that cannot run for a reason of its own (no root for
/// a network namespace, no package index for pip): fails under CI, else
/// says what was skipped and why.
pub fn unavailable(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run this test, but {why}"
    );
    eprintln!("{test}: skipped: {why}");
}

/// Whether this process runs as root.
#[cfg(unix)]
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this process runs as root: never, off Unix.
#[cfg(not(unix))]
pub fn is_root() -> bool {
    false
}

/// Where `program` is: a file of that name in a `PATH` folder or in the
/// sbin folders.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|file| file.is_file())
}

/// Installs the Debian `package` once per test process (the first test to
/// ask does it; the others wait for its outcome). `Err` says why not.
fn install(package: &str, test: &str) -> Result<(), String> {
    static DONE: Mutex<Option<HashMap<String, Result<(), String>>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let done = done.get_or_insert_with(HashMap::new);
    if let Some(outcome) = done.get(package) {
        return outcome.clone();
    }
    let outcome = apt_get_install(package, test);
    done.insert(package.to_owned(), outcome.clone());
    outcome
}

/// `apt-get update` (once per process) then `apt-get install package`,
/// where that can work: Linux, as root, with apt-get.
fn apt_get_install(package: &str, test: &str) -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("packages are installed only on Linux".into());
    }
    if !is_root() {
        return Err(format!(
            "installing it needs root (apt-get install {package})"
        ));
    }
    if find("apt-get").is_none() {
        return Err("there is no apt-get to install it with".into());
    }
    eprintln!("{test}: installing {package} (apt-get), which this test needs");
    static UPDATED: Mutex<bool> = Mutex::new(false);
    let mut updated = UPDATED.lock().unwrap_or_else(|p| p.into_inner());
    if !*updated {
        apt_get(&["update", "-qq"])?;
        *updated = true;
    }
    apt_get(&["install", "-y", "-qq", "--no-install-recommends", package])
}

/// Runs apt-get with `args`, non-interactively, waiting up to two minutes
/// for a lock another apt holds.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("apt-get");
    cmd.args(["-o", "DPkg::Lock::Timeout=120"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    super::run_tool(&format!("apt-get {}", args.join(" ")), &mut cmd).map(drop)
}

/// Whether the Rust standard library for `triple` is installed, adding it
/// with `rustup target add` first when it is not (rule 2, with rustup in
/// apt-get's place); `false` after saying why the test `test` skips
/// (rule 3).
pub fn rust_target(test: &str, triple: &str) -> bool {
    let installed = || {
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "list", "--installed"]);
        super::run_tool("rustup target list", &mut cmd).map(|out| out.lines().any(|l| l == triple))
    };
    let why = match installed() {
        Ok(true) => return true,
        Ok(false) => {
            eprintln!("{test}: adding the Rust target {triple} (rustup), which this test needs");
            let mut cmd = Command::new("rustup");
            cmd.args(["target", "add", triple]);
            match super::run_tool("rustup target add", &mut cmd) {
                Ok(_) => return true,
                Err(why) => why,
            }
        }
        Err(why) => format!("the Rust target {triple} cannot be checked ({why})"),
    };
    unavailable(test, &why);
    false
}
