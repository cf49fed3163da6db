//! The fuzz package's build script: the main package's own (the same `cfg`
//! names, for the files compiled here from `src/bin/`), and the stress
//! client's module list, read from its `main.rs`, for the `report` target —
//! so that target follows the client's modules as they come and go.

use std::fmt::Write as _;
use std::path::Path;

#[path = "../build.rs"]
mod main_package;

fn main() {
    main_package::main();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/bin/echoloop-stress");
    let main_rs = dir.join("main.rs");
    println!("cargo::rerun-if-changed={}", main_rs.display());
    let text = std::fs::read_to_string(&main_rs).expect("read the stress client's main.rs");
    let mut out = format!("#[path = {:?}]\nmod stress {{\n", dir.display().to_string());
    let mut names = Vec::new();
    let mut attrs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[") {
            attrs.push(line);
            continue;
        }
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            if !attrs.contains(&"#[cfg(test)]") {
                for a in &attrs {
                    writeln!(out, "    {a}").unwrap();
                }
                writeln!(out, "    pub mod {name};").unwrap();
                names.push(name.to_string());
            }
        }
        attrs.clear();
    }
    assert!(
        names.contains(&"merge".to_string()),
        "no `mod merge;` in {}",
        main_rs.display()
    );
    out.push_str("}\n#[allow(unused_imports)]\nuse stress::*;\n");
    let path = Path::new(&std::env::var("OUT_DIR").unwrap()).join("stress_modules.rs");
    std::fs::write(path, out).expect("write stress_modules.rs");
}
