//! `--health-check`: one `GET /healthz` to the `--metrics` address, as the
//! container image's HEALTHCHECK. An image built `FROM scratch` has no shell
//! and no curl, so the probe must be a program already in it; the server's
//! own binary asking its own endpoint is the smallest such program, and it
//! checks exactly what an orchestrator's HTTP probe checks (Kubernetes asks
//! `/healthz` itself and does not need this).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the connect, the request and the answer may each take: a
/// container runtime gives a health check a few seconds in all.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The longest status line read: `HTTP/1.1 200 OK` and a margin.
const MAX_STATUS_LINE: u64 = 256;

/// Asks `metrics` for `/healthz`: `Ok` on a 200, else why not. A wildcard
/// address (the `0.0.0.0:9100` a container listens on) is asked on
/// loopback, where the server listening on it answers.
pub fn check(metrics: SocketAddr) -> Result<(), String> {
    let addr = match metrics.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), metrics.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), metrics.port())
        }
        _ => metrics,
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let line = line.trim_end();
    match line.split(' ').nth(1) {
        Some("200") if line.starts_with("HTTP/1.") => Ok(()),
        _ => Err(format!("{addr}/healthz answered {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot HTTP server on 127.0.0.1:0 answering `status_line`; its
    /// port, and the request it got once joined.
    fn answer(status_line: &'static str) -> (u16, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = String::new();
            BufReader::new(&stream)
                .read_line(&mut request)
                .expect("request line");
            let response = format!("{status_line}\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(response.as_bytes()).expect("answer");
            request
        });
        (port, server)
    }

    /// A 200 is healthy, and the wildcard address the image's
    /// ECHOLOOP_METRICS names (0.0.0.0) is asked on loopback.
    #[test]
    fn a_200_on_the_wildcard_port_is_healthy() {
        let (port, server) = answer("HTTP/1.1 200 OK");
        assert_eq!(check(SocketAddr::from(([0, 0, 0, 0], port))), Ok(()));
        assert_eq!(server.join().expect("server"), "GET /healthz HTTP/1.0\r\n");
    }

    /// Anything but a 200 (the 503 of a server shutting down, an answer
    /// that is not HTTP, nothing listening) is unhealthy, saying what came.
    #[test]
    fn anything_but_a_200_is_unhealthy() {
        let (port, server) = answer("HTTP/1.1 503 Service Unavailable");
        let why = check(SocketAddr::from(([127, 0, 0, 1], port))).expect_err("503");
        assert!(why.contains("503"), "{why}");
        server.join().expect("server");
        let (port, server) = answer("SSH-2.0-OpenSSH 200");
        assert!(check(SocketAddr::from(([127, 0, 0, 1], port))).is_err());
        server.join().expect("server");
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("local_addr");
        drop(closed);
        let why = check(addr).expect_err("nothing listening");
        assert!(why.starts_with("connect "), "{why}");
    }
}
