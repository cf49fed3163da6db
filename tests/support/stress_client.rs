//! The real `echoloop-stress` and its JSON report.

/// The stress client.
pub const STRESS: &str = env!("CARGO_BIN_EXE_echoloop-stress");

/// The value of `"key": value` in the JSON report of `echoloop-stress`
/// (numbers, `null`, `true`/`false`, or a string without its quotes).
pub fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\": ");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key:?} in report:\n{json}"))
        + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"')
}

/// A numeric field of the stress report.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let v = json_field(json, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not an integer"))
}
