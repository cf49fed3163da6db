//! The stress client's report reader behind `merge`, on any bytes: either a
//! clean error that names the file, or a report; and a report read, written
//! back out (`merge --json`) and read again writes out the same text — it
//! re-serialises to itself. The whole stress client is compiled here from
//! its own files (a binary exports nothing), module for module as its
//! `main.rs` declares them, so `merge` runs exactly as shipped.

#![no_main]
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

// The stress client's modules, declared as its `main.rs` declares them
// (from its folder, so `udp.rs` finds `udp/`), and brought to this crate's
// root, where their `crate::` paths look for them. build.rs writes the list
// from main.rs.
include!(concat!(env!("OUT_DIR"), "/stress_modules.rs"));

/// Where this process writes the input (the reader takes a file).
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echoloop-fuzz-{}-{name}.json", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch("input");
    std::fs::write(&path, data).expect("write the scratch file");
    let name = path.display().to_string();
    let report = match merge::merge(std::slice::from_ref(&path), &[50.0, 99.9]) {
        Err(message) => {
            assert!(
                message.starts_with(&name),
                "the error does not name the file: {message}"
            );
            return;
        }
        Ok(report) => report,
    };
    let once = report.json();
    let again_path = scratch("again");
    std::fs::write(&again_path, &once).expect("write the scratch file");
    let again = merge::merge(std::slice::from_ref(&again_path), &[50.0, 99.9])
        .unwrap_or_else(|e| panic!("a report we wrote is refused: {e}\n{once}"));
    assert_eq!(
        again.json(),
        once,
        "a report read and written again changed"
    );
});
