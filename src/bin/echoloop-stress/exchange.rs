//! Any TCP server, not only echo: what each message is (`--send`) and what
//! one response to it is (`--expect REGEX` or `--expect-bytes N`). Echo
//! stays the default, verified byte for byte against the payload table
//! (`payload.rs`); with `--send` the client measures request → response
//! latency instead, and verification is "each response matches".
//!
//! - **The request.** `--send TEXT` is the message, with escapes `\r`,
//!   `\n`, `\t`, `\0`, `\\` and `\xHH`, and the placeholder `{seq}`: the
//!   message's number on its connection (0, 1, 2, …), in decimal; `{{` is
//!   a literal `{`. `--send @FILE` takes the file's bytes as they are (no
//!   escapes), `{seq}` and `{{` still replaced. Example: a Redis server,
//!   `--send 'PING\r\n' --expect '\+PONG\r\n'`.
//! - **The response.** Responses come back in order (pipelining included):
//!   the first response is at the start of what the connection has
//!   received, the next right after its end. `--expect-bytes N`: each is
//!   N bytes, whatever they are. `--expect REGEX`: each is the match of
//!   REGEX (the `regex` crate's syntax, over bytes) that starts there. A
//!   response that has not arrived whole yet is waited for; a wrong one is
//!   caught at its first byte that no response can continue with: the
//!   bytes so far are run through REGEX's lazy DFA (regex-automata's,
//!   the engine inside `regex`), anchored, and a dead state means no
//!   continuation can match. More than [`MAX_RESPONSE`] bytes with no
//!   match is wrong too; a server that answers nothing stalls
//!   (`--echo-timeout`). Write REGEX so that a partial response does not
//!   match: `(?s)HTTP/1\.1 200 .*?\r\n\r\nok` for a two-byte body, not
//!   `HTTP/1\.1 200.*`.
//!
//! [`parse_send`] and [`Expect::parse`] are pure functions of the flags'
//! text (fuzz targets can call them as they are).

use std::fmt::Write as _;

use regex::bytes::Regex;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::{Anchored, Input};

/// The most bytes one response may take before, with no match of
/// `--expect` among them, it counts as wrong.
pub const MAX_RESPONSE: usize = 1 << 20;

/// One piece of the request template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes sent as they are.
    Bytes(Vec<u8>),
    /// `{seq}`: the message's number on its connection, in decimal.
    Counter,
}

/// `--send`: each message's bytes, from a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request(pub Vec<Piece>);

impl Request {
    /// Appends message `n`'s bytes to `out`.
    pub fn render(&self, n: u64, out: &mut Vec<u8>) {
        for piece in &self.0 {
            match piece {
                Piece::Bytes(bytes) => out.extend_from_slice(bytes),
                Piece::Counter => {
                    let mut digits = String::new();
                    let _ = write!(digits, "{n}");
                    out.extend_from_slice(digits.as_bytes());
                }
            }
        }
    }

    /// Whether the template has bytes at all (else nothing would be sent).
    fn is_empty(&self) -> bool {
        self.0
            .iter()
            .all(|p| matches!(p, Piece::Bytes(b) if b.is_empty()))
    }
}

/// Parses a `--send` template: `escapes` (a TEXT: yes; an @FILE's bytes:
/// no) turns `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` into their bytes;
/// `{seq}` is the counter and `{{` a literal `{` either way.
pub fn parse_send(text: &[u8], escapes: bool) -> Result<Request, String> {
    let mut pieces = Vec::new();
    let mut bytes = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let rest = &text[i..];
        if rest.starts_with(b"{seq}") {
            pieces.push(Piece::Bytes(std::mem::take(&mut bytes)));
            pieces.push(Piece::Counter);
            i += 5;
        } else if rest.starts_with(b"{{") {
            bytes.push(b'{');
            i += 2;
        } else if c == b'\\' && escapes {
            let (byte, used) = escape(&text[i + 1..])
                .ok_or_else(|| format!("byte {i}: unknown escape (\\r \\n \\t \\0 \\\\ \\xHH)"))?;
            bytes.push(byte);
            i += 1 + used;
        } else {
            bytes.push(c);
            i += 1;
        }
    }
    pieces.push(Piece::Bytes(bytes));
    pieces.retain(|p| !matches!(p, Piece::Bytes(b) if b.is_empty()));
    let request = Request(pieces);
    if request.is_empty() {
        return Err("the message is empty".into());
    }
    Ok(request)
}

/// The byte an escape (after its `\`) stands for, and how many bytes it took.
fn escape(after: &[u8]) -> Option<(u8, usize)> {
    let byte = match after.first()? {
        b'r' => b'\r',
        b'n' => b'\n',
        b't' => b'\t',
        b'0' => 0,
        b'\\' => b'\\',
        b'x' => {
            let hex = std::str::from_utf8(after.get(1..3)?).ok()?;
            return Some((u8::from_str_radix(hex, 16).ok()?, 3));
        }
        _ => return None,
    };
    Some((byte, 1))
}

/// What one response is.
#[derive(Debug, Clone)]
pub enum Expect {
    /// `--expect-bytes N`: N bytes, whatever they are.
    Bytes(usize),
    /// `--expect REGEX`: the match starting where the response starts.
    Regex(Box<Pattern>),
}

/// `--expect REGEX`, compiled twice.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern anchored at the start.
    anchored: Regex,
    /// The same pattern as a lazy DFA, to tell a partial response from a
    /// wrong one ([`could_match`]); `None` for a pattern it cannot take (a
    /// Unicode word boundary): then a wrong response is waited for until
    /// it stalls.
    dfa: Option<DFA>,
}

/// What [`Expect::take`] found at the start of the bytes received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A whole response, this many bytes long.
    Response(usize),
    /// Not yet a whole one: wait for more.
    Partial,
    /// Bytes that are no response.
    Wrong,
}

impl Expect {
    /// `--expect REGEX`, compiled (the error is the regex crate's).
    pub fn parse(pattern: &str) -> Result<Expect, String> {
        let compile = |p: String| Regex::new(&p).map_err(|e| e.to_string());
        let anchored = compile(format!("^(?:{pattern})"))?;
        if anchored.is_match(b"") {
            return Err("it matches the empty response: every response would be empty".into());
        }
        let dfa = DFA::new(pattern).ok();
        Ok(Expect::Regex(Box::new(Pattern { anchored, dfa })))
    }

    /// Whether `got`, the bytes received since the last response, begins
    /// with a whole response.
    pub fn take(&self, got: &[u8]) -> Found {
        match self {
            Expect::Bytes(n) if got.len() >= *n => Found::Response(*n),
            Expect::Bytes(_) => Found::Partial,
            Expect::Regex(pattern) => {
                let Pattern { anchored, dfa } = &**pattern;
                if let Some(m) = anchored.find(got) {
                    return Found::Response(m.end());
                }
                let hopeless = dfa.as_ref().is_some_and(|dfa| !could_match(dfa, got));
                if got.len() > MAX_RESPONSE || hopeless {
                    Found::Wrong
                } else {
                    Found::Partial
                }
            }
        }
    }
}

/// Whether some continuation of `got` could still match `dfa` from its
/// start: false once the anchored DFA is in its dead state. Runs only
/// when no response is whole yet (a short read, or a wrong response),
/// so its cache is made per call; if the DFA gives up, it says "could".
fn could_match(dfa: &DFA, got: &[u8]) -> bool {
    let mut cache = Cache::new(dfa);
    let input = Input::new(got).anchored(Anchored::Yes);
    let Ok(mut state) = dfa.start_state_forward(&mut cache, &input) else {
        return true;
    };
    for &byte in got {
        match dfa.next_state(&mut cache, state, byte) {
            Ok(next) if next.is_dead() => return false,
            Ok(next) => state = next,
            Err(_) => return true,
        }
    }
    true
}

/// Up to 64 bytes of `bytes`, escaped, for a report.
pub fn shown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let mut text: String = head.escape_ascii().to_string();
    if bytes.len() > head.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escapes and the counter placeholder make the bytes asked for.
    #[test]
    fn templates_render() {
        let request =
            parse_send(b"GET /{seq} HTTP/1.1\\r\\nX: \\x41{{\\t\\\\\\0\\n", true).expect("parse");
        let mut out = Vec::new();
        request.render(42, &mut out);
        assert_eq!(out, b"GET /42 HTTP/1.1\r\nX: A{\t\\\0\n");
        let raw = parse_send(b"a\\r{seq}", false).expect("parse");
        out.clear();
        raw.render(7, &mut out);
        assert_eq!(out, b"a\\r7");
        assert!(parse_send(b"\\q", true).unwrap_err().contains("escape"));
        assert!(parse_send(b"\\x4", true).is_err());
        assert!(parse_send(b"", true).is_err());
    }

    /// A response is taken whole from the start, waited for while
    /// partial, and refused when a match starts later or nothing matches
    /// within the bound.
    #[test]
    fn responses_are_told_apart() {
        let pong = Expect::parse(r"\+PONG\r\n").expect("regex");
        assert_eq!(pong.take(b"+PONG\r\n+PO"), Found::Response(7));
        assert_eq!(pong.take(b"+PO"), Found::Partial);
        assert_eq!(pong.take(b"-ERR\r\n+PONG\r\n"), Found::Wrong);
        assert_eq!(pong.take(b"-"), Found::Wrong);
        assert_eq!(pong.take(b"+PX"), Found::Wrong);
        assert_eq!(pong.take(&vec![b'x'; MAX_RESPONSE + 1]), Found::Wrong);
        assert_eq!(Expect::Bytes(3).take(b"ab"), Found::Partial);
        assert_eq!(Expect::Bytes(3).take(b"abcd"), Found::Response(3));
        assert!(Expect::parse("a*").is_err());
        assert!(Expect::parse("(").is_err());
    }
}
