//! Just enough HTTP/1.1 for a scrape: read one request head, answer it, close.
//!
//! The answer is decided by the request line alone: `GET` (or `HEAD`) of
//! `/metrics` or `/healthz`; any other path is 404, any other method 405, a
//! head that is not HTTP/1.x is 400, and one that has not ended within
//! [`MAX_HEAD`] bytes is 431. Every response closes the connection.

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
    /// Not an HTTP/1.x request line.
    Malformed,
    /// No end of the head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
}

/// Parses what has arrived so far: `None` while the head is still
/// incomplete (and within bounds).
pub(crate) fn parse(head: &[u8]) -> Option<Request> {
    let end = find(head, b"\r\n\r\n").or_else(|| find(head, b"\n\n"));
    let Some(end) = end else {
        return (head.len() > MAX_HEAD).then_some(Request::HeadTooLarge);
    };
    if end > MAX_HEAD {
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
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() {
        return Some(Request::Malformed);
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
}
