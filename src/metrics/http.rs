//! Just enough HTTP/1.1 for a scrape: read one request head, answer it, close.
//!
//! The answer is decided by the request line alone: `GET` (or `HEAD`) of
//! `/metrics` or `/healthz`; any other path is 404, any other method 405,
//! and a head that has not ended within [`MAX_HEAD`] bytes is 431. Every
//! response closes the connection.
//!
//! The version must be `HTTP/1.0` or `HTTP/1.1`, the two this endpoint
//! implements. A request line that is not `method SP target SP version`, or
//! whose version is not of the form `HTTP/DIGIT.DIGIT` (`HTTP/1.1garbage`,
//! `HTTP/2`, `SPDY/3`), is an invalid request-line: 400, as RFC 9112 §3
//! advises. A well-formed version we do not implement (`HTTP/1.9`,
//! `HTTP/2.0`) is 505 Version Not Supported (RFC 9110 §15.6.6: the server
//! "does not support, or refuses to support" it), as hyper answers.
//! RFC 9110 §2.5 would let a server read `HTTP/1.9` as 1.1; there is no such
//! version, and a health probe that sends one is better told than guessed.
//!
//! Empty lines before the request line are skipped (RFC 9112 §2.2: a server
//! "SHOULD ignore at least one empty line (CRLF) received prior to the
//! request-line"); they count against [`MAX_HEAD`].

/// The longest request head read: a scraper's is a few hundred bytes.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// What a request asks for, or why it cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// `GET /metrics`; `head` for `HEAD`, which gets no body.
    Metrics { head: bool },
    /// `GET /healthz`.
    Health { head: bool },
    /// Any other path.
    NotFound,
    /// Any method but GET and HEAD.
    MethodNotAllowed,
    /// Not a request line: 400.
    Malformed,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1: 505.
    VersionNotSupported,
    /// No end of the head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
}

/// Parses what has arrived so far: `None` while the head is still
/// incomplete (and within bounds).
pub(crate) fn parse(received: &[u8]) -> Option<Request> {
    let skipped = leading_empty_lines(received);
    let head = &received[skipped..];
    // The head ends at its first blank line, in either spelling: the
    // earlier one, or the answer would depend on how the bytes were split.
    let end = match (find(head, b"\r\n\r\n"), find(head, b"\n\n")) {
        (Some(crlf), Some(lf)) => Some(crlf.min(lf)),
        (crlf, lf) => crlf.or(lf),
    };
    let Some(end) = end else {
        return (received.len() > MAX_HEAD).then_some(Request::HeadTooLarge);
    };
    if skipped + end > MAX_HEAD {
        return Some(Request::HeadTooLarge);
    }
    let line_end = find(head, b"\n").unwrap_or(end);
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Some(Request::Malformed);
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(Request::Malformed);
    };
    if !well_formed(version) || !target.starts_with('/') || method.is_empty() {
        return Some(Request::Malformed);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Some(Request::VersionNotSupported);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Some(Request::MethodNotAllowed),
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(match path {
        "/metrics" => Request::Metrics { head },
        "/healthz" => Request::Health { head },
        _ => Request::NotFound,
    })
}

/// A complete response: status line, headers and (unless `head_only`)
/// `body`.
pub(crate) fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Whether `version` is `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3), supported or not.
fn well_formed(version: &str) -> bool {
    match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

/// How many bytes of empty lines (CRLF, or a bare LF) `received` starts with.
fn leading_empty_lines(received: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &received[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return at,
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each request line gets the answer the module docs promise.
    #[test]
    fn requests_are_routed_by_their_line() {
        let cases: [(&[u8], Option<Request>); 9] = [
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Some(Request::Metrics { head: false }),
            ),
            (
                b"HEAD /healthz?x=1 HTTP/1.0\r\n\r\n",
                Some(Request::Health { head: true }),
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Some(Request::NotFound)),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                Some(Request::MethodNotAllowed),
            ),
            (b"GET /metrics\r\n\r\n", Some(Request::Malformed)),
            (b"GET /metrics HTTP/2\r\n\r\n", Some(Request::Malformed)),
            (b"\xff\xfe\r\n\r\n", Some(Request::Malformed)),
            (b"GET /metrics HTTP/1.1\r\nHost:", None),
            (
                b"GET /metrics HTTP/1.1\n\n",
                Some(Request::Metrics { head: false }),
            ),
        ];
        for (head, want) in cases {
            assert_eq!(parse(head), want, "{}", String::from_utf8_lossy(head));
        }
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse(&long), Some(Request::HeadTooLarge));
    }

    /// Only HTTP/1.0 and HTTP/1.1 are answered: another well-formed version
    /// is 505, a version that is not `HTTP/DIGIT.DIGIT` is 400.
    #[test]
    fn only_http_1_0_and_1_1_are_answered() {
        for (version, want) in [
            ("HTTP/1.1", Request::Health { head: false }),
            ("HTTP/1.0", Request::Health { head: false }),
            ("HTTP/1.9", Request::VersionNotSupported),
            ("HTTP/2.0", Request::VersionNotSupported),
            ("HTTP/0.9", Request::VersionNotSupported),
            ("HTTP/1.1garbage", Request::Malformed),
            ("HTTP/1.10", Request::Malformed),
            ("HTTP/1.", Request::Malformed),
            ("HTTP/a.1", Request::Malformed),
            ("http/1.1", Request::Malformed),
            ("HTTP/2", Request::Malformed),
        ] {
            let head = format!("GET /healthz {version}\r\n\r\n");
            assert_eq!(parse(head.as_bytes()), Some(want), "{version}");
        }
    }

    /// Empty lines before the request line are skipped, CRLF or bare LF,
    /// one or several; empty lines alone are an incomplete head, and count
    /// against the head's bound.
    #[test]
    fn leading_empty_lines_are_skipped() {
        let health = Some(Request::Health { head: false });
        assert_eq!(parse(b"\r\nGET /healthz HTTP/1.1\r\n\r\n"), health);
        assert_eq!(parse(b"\r\n\r\n\nGET /healthz HTTP/1.1\r\n\r\n"), health);
        assert_eq!(parse(b"\r\n\r\n"), None);
        assert_eq!(parse(b"\r\nGET /healthz HTTP/1.1\r\n"), None);
        let mut blank = b"\r\n".repeat(MAX_HEAD / 2);
        blank.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&blank), Some(Request::HeadTooLarge));
        assert_eq!(
            parse(&b"\r\n".repeat(MAX_HEAD)),
            Some(Request::HeadTooLarge)
        );
    }

    /// A head ends at its first blank line, whichever spelling comes later
    /// in the same read: a bare `\n\n` within the limit answers, though a
    /// `\r\n\r\n` follows past it (that read was 431, while the same bytes
    /// split earlier were answered; found while writing the fuzz target,
    /// whose "the split does not matter" property it broke).
    #[test]
    fn a_head_ends_at_its_first_blank_line() {
        let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 100, b'a');
        head.extend_from_slice(b"\n\n");
        let answered_early = parse(&head);
        head.resize(MAX_HEAD + 100, b'b');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(answered_early, Some(Request::Metrics { head: false }));
        assert_eq!(parse(&head), answered_early);
    }
}
