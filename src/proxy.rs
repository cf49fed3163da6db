//! The PROXY protocol, versions 1 and 2 (HAProxy's specification,
//! `proxy-protocol.txt`): the header a balancer sends before a relayed
//! connection's first byte, naming the client it relays. Behind a balancer
//! that terminates TCP, every connection comes from the balancer; the
//! header is the only place the client's address survives.
//!
//! [`parse`] reads a header from the bytes received so far and decides as
//! early as the bytes allow: more needed ([`Parsed::Incomplete`]), a
//! complete header and its length (the bytes after it are the client's
//! data), or an [`Error`] whose [`Error::reason`] names a counter; while
//! incomplete, it says how many more bytes are certainly the header's, so a
//! server can read exactly the header and leave the data in the socket. It is
//! bounded: a version 1 header ends within [`V1_MAX`] bytes, a version 2
//! header is refused past [`MAX_HEADER`] as soon as its length field says
//! so, and TLVs are walked, never trusted, so a length that points past the
//! header is an error, not a read beyond it. It keeps no state: call it
//! again on the longer prefix when more bytes arrive (at most
//! [`MAX_HEADER`] of them, so re-reading the prefix costs little). [`v1`]
//! and [`v2`] write headers, for a client that speaks through a balancer.
//!
//! Version 1 is one text line, `PROXY TCP4 192.0.2.1 198.51.100.1 56324
//! 7\r\n` (or `TCP6`, or `UNKNOWN` and anything up to the line's end).
//! Version 2 is binary: a 12-byte signature, a version/command byte (`LOCAL`:
//! the balancer's own connection, a health check; `PROXY`: relayed), a
//! family/transport byte, a 16-bit length, the addresses, then TLVs. The two
//! differ in their first byte, so one byte tells which to expect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, `\r\n` included (the specification's
/// bound: a receiver reads no further looking for the line's end).
pub const V1_MAX: usize = 107;

/// The longest header accepted, any version. Version 2 allows 16 + 65,535
/// bytes; real balancers send the addresses and a few TLVs (an AWS NLB's
/// endpoint ID, HAProxy's TLS details), well under this.
pub const MAX_HEADER: usize = 4096;

/// What starts every version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The shortest version 1 header, `PROXY UNKNOWN\r\n` (a version 2 header
/// is longer): what may be read before anything is known.
const V1_MIN: usize = 15;

/// What starts every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a version 2 header: signature, version and command,
/// family and transport, length.
const V2_FIXED: usize = 16;

/// Whom a complete header says the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed connection: `source` is the client, `destination` the
    /// address it connected to (the balancer's front end).
    Proxied {
        /// The client, as the balancer saw it.
        source: SocketAddr,
        /// Where the client connected.
        destination: SocketAddr,
    },
    /// Version 2 `LOCAL`: the balancer's own connection (its health
    /// checks), to be treated as coming from the balancer itself.
    Local,
    /// A relayed connection whose addresses the header does not give in a
    /// form used here — version 1 `UNKNOWN`; version 2 `AF_UNSPEC`,
    /// `AF_UNIX` or a datagram transport — so the balancer's address
    /// stands for the client.
    Unknown,
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header so far, not yet complete: read more and call again.
    Incomplete {
        /// How many more bytes certainly belong to the header: a reader
        /// that takes no more than this from its socket never takes a byte
        /// of the data behind a valid header (it stays in the socket).
        needed: usize,
    },
    /// A complete header, the first `len` bytes; what follows is data.
    Complete {
        /// What it says.
        header: Header,
        /// Its length in bytes, to be dropped before the data.
        len: usize,
    },
}

/// Why the bytes are not an acceptable header; the connection should be
/// closed without echoing any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Neither version's signature: not a PROXY header at all.
    NotProxy,
    /// A header that breaks the specification; the words say where.
    Malformed(&'static str),
    /// Longer than [`V1_MAX`] (version 1) or [`MAX_HEADER`] (version 2).
    Oversized,
}

impl Error {
    /// A short name for counting and logging: `not_proxy`, `malformed`,
    /// `oversized`.
    pub fn reason(self) -> &'static str {
        match self {
            Error::NotProxy => "not_proxy",
            Error::Malformed(_) => "malformed",
            Error::Oversized => "oversized",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotProxy => f.write_str("not a PROXY protocol header"),
            Error::Malformed(what) => write!(f, "malformed PROXY header: {what}"),
            Error::Oversized => write!(f, "PROXY header longer than {MAX_HEADER} bytes"),
        }
    }
}

impl std::error::Error for Error {}

/// Reads a header, version 1 or 2, from the start of `buf`, the bytes
/// received so far.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let starts = |signature: &[u8]| {
        let n = buf.len().min(signature.len());
        buf[..n] == signature[..n]
    };
    if buf.is_empty() {
        Ok(Parsed::Incomplete { needed: V1_MIN })
    } else if starts(V1_PREFIX) {
        parse_v1(buf)
    } else if starts(&V2_SIGNATURE) {
        parse_v2(buf)
    } else {
        Err(Error::NotProxy)
    }
}

/// Version 1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN
/// …\r\n`, within [`V1_MAX`] bytes.
fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(Error::Oversized);
        }
        // The line ends with "\r\n": two bytes more at least, one after
        // its "\r".
        let tail = if buf.ends_with(b"\r") { 1 } else { 2 };
        let needed = V1_MIN.saturating_sub(buf.len()).max(tail);
        return Ok(Parsed::Incomplete { needed });
    };
    let len = end + 1;
    let line = window[..end].strip_suffix(b"\r").ok_or(Error::Malformed(
        "v1: a line feed without its carriage return",
    ))?;
    let line = std::str::from_utf8(&line[V1_PREFIX.len()..])
        .map_err(|_| Error::Malformed("v1: not ASCII"))?;
    let mut fields = line.split(' ');
    let v4 = match fields.next() {
        Some("TCP4") => true,
        Some("TCP6") => false,
        Some("UNKNOWN") => {
            let header = Header::Unknown;
            return Ok(Parsed::Complete { header, len });
        }
        _ => return Err(Error::Malformed("v1: protocol not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Error::Malformed("v1: not four fields after the protocol"));
    };
    let header = Header::Proxied {
        source: SocketAddr::new(v1_ip(src, v4)?, v1_port(sport)?),
        destination: SocketAddr::new(v1_ip(dst, v4)?, v1_port(dport)?),
    };
    Ok(Parsed::Complete { header, len })
}

/// A version 1 address of the family its protocol names.
fn v1_ip(text: &str, v4: bool) -> Result<IpAddr, Error> {
    let ip = if v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::from)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::from)
    };
    ip.map_err(|_| Error::Malformed("v1: an address not of its protocol's family"))
}

/// A version 1 port: decimal digits only (no sign), 0 to 65535.
fn v1_port(text: &str) -> Result<u16, Error> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok())
        .flatten()
        .ok_or(Error::Malformed("v1: a port not from 0 to 65535"))
}

/// Version 2: the fixed 16 bytes, then `len` more (addresses, then TLVs).
fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < V2_FIXED {
        let needed = V2_FIXED - buf.len();
        return Ok(Parsed::Incomplete { needed });
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(Error::Malformed("v2: version not 2"));
    }
    let local = match command {
        0 => true,
        1 => false,
        _ => return Err(Error::Malformed("v2: command not LOCAL or PROXY")),
    };
    let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > MAX_HEADER {
        return Err(Error::Oversized);
    }
    if buf.len() < total {
        let needed = total - buf.len();
        return Ok(Parsed::Incomplete { needed });
    }
    let body = &buf[V2_FIXED..total];
    let header = if local {
        // LOCAL: the specification says to ignore the address block.
        Header::Local
    } else {
        v2_addresses(buf[13], body)?
    };
    Ok(Parsed::Complete { header, len: total })
}

/// The addresses of a version 2 `PROXY` header, by its family/transport
/// byte, after checking that the TLVs behind them fit.
fn v2_addresses(family: u8, body: &[u8]) -> Result<Header, Error> {
    let size = match family >> 4 {
        0 => 0,   // AF_UNSPEC
        1 => 12,  // AF_INET: two 4-byte addresses, two ports
        2 => 36,  // AF_INET6: two 16-byte addresses, two ports
        3 => 216, // AF_UNIX: two 108-byte paths
        _ => return Err(Error::Malformed("v2: unknown address family")),
    };
    let transport = family & 0x0f;
    if transport > 2 {
        return Err(Error::Malformed("v2: unknown transport"));
    }
    let addresses = body
        .get(..size)
        .ok_or(Error::Malformed("v2: length shorter than its addresses"))?;
    skip_tlvs(&body[size..])?;
    let ip = |bytes: &[u8]| match *bytes {
        [a, b, c, d] => IpAddr::from([a, b, c, d]),
        _ => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")),
    };
    match (family >> 4, transport) {
        (1 | 2, 1) => {
            let half = (size - 4) / 2; // one address
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            Ok(Header::Proxied {
                source: SocketAddr::new(ip(&addresses[..half]), port(2 * half)),
                destination: SocketAddr::new(ip(&addresses[half..2 * half]), port(2 * half + 2)),
            })
        }
        _ => Ok(Header::Unknown),
    }
}

/// Walks the TLVs (type, 16-bit length, value) that fill the rest of a
/// version 2 header: each must fit in what is left. Their contents are not
/// used here.
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), Error> {
    while !tlvs.is_empty() {
        let [_, hi, lo, ref rest @ ..] = *tlvs else {
            return Err(Error::Malformed("v2: a TLV cut short"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = rest
            .get(len..)
            .ok_or(Error::Malformed("v2: a TLV longer than the header"))?;
    }
    Ok(())
}

/// A version 1 header for a TCP connection from `source` to
/// `destination` (both of one family; `UNKNOWN` if they differ).
pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let line = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        _ => "PROXY UNKNOWN\r\n".to_string(),
    };
    line.into_bytes()
}

/// A version 2 `PROXY` header for a TCP connection from `source` to
/// `destination` (both of one family; `AF_UNSPEC` if they differ), with no
/// TLVs.
pub fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, PROXY
    let mut body = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11 // AF_INET, STREAM
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x21 // AF_INET6, STREAM
        }
        _ => 0x00, // AF_UNSPEC: no addresses
    };
    if family != 0 {
        body.extend_from_slice(&source.port().to_be_bytes());
        body.extend_from_slice(&destination.port().to_be_bytes());
    }
    header.push(family);
    let len = u16::try_from(body.len()).expect("at most 36 bytes of addresses");
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&body);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    /// The header `bytes` parses to, and its length.
    #[track_caller]
    fn complete(bytes: &[u8]) -> (Header, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// Every proper prefix of `header` asks for more, never more than the
    /// header still holds; the whole of it, with data behind, is complete
    /// at exactly its length.
    #[track_caller]
    fn assert_incremental(header: &[u8]) -> Header {
        for n in 0..header.len() {
            match parse(&header[..n]) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(
                        (1..=header.len() - n).contains(&needed),
                        "{needed} after {n}"
                    )
                }
                other => panic!("prefix of {n} bytes: {other:?}"),
            }
        }
        let mut with_data = header.to_vec();
        with_data.extend_from_slice(b"PROXY TCP4 data, not a header\r\n");
        let (parsed, len) = complete(&with_data);
        assert_eq!(len, header.len());
        parsed
    }

    /// A version 2 header with the given version/command, family and body.
    fn v2_raw(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, family]);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    /// Version 1 TCP4 and TCP6 name the client and the front end, and are
    /// decided only once their line has ended, whatever follows it.
    #[test]
    fn v1_tcp4_and_tcp6() {
        let v4 = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 7\r\n";
        assert_eq!(
            assert_incremental(v4),
            Header::Proxied {
                source: addr("192.0.2.1:56324"),
                destination: addr("198.51.100.7:7")
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
        assert_eq!(
            assert_incremental(v6),
            Header::Proxied {
                source: addr("[2001:db8::1]:65535"),
                destination: addr("[2001:db8::2]:0")
            }
        );
    }

    /// UNKNOWN, with or without what follows it on the line, leaves the
    /// balancer's address standing.
    #[test]
    fn v1_unknown() {
        assert_eq!(assert_incremental(b"PROXY UNKNOWN\r\n"), Header::Unknown);
        let long = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(assert_incremental(long), Header::Unknown);
    }

    /// The longest possible version 1 line fits in V1_MAX; 107 bytes with no
    /// line end is oversized, one fewer still incomplete.
    #[test]
    fn v1_bound() {
        let max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {max} {max} 65535 65535\r\n");
        assert!(line.len() <= V1_MAX);
        complete(line.as_bytes());
        let mut unended = b"PROXY UNKNOWN ".to_vec();
        unended.resize(V1_MAX - 1, b'x');
        assert!(matches!(
            parse(&unended),
            Ok(Parsed::Incomplete { needed: 2 })
        ));
        unended.push(b'x');
        assert_eq!(parse(&unended), Err(Error::Oversized));
        unended.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&unended),
            Err(Error::Oversized),
            "a line end past the bound"
        );
    }

    /// Each way a version 1 line can break the specification is malformed.
    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.7 1 7\n"[..],
            b"PROXY TCP5 192.0.2.1 198.51.100.7 1 7\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.7 1 7\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 +1 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 -1 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1 \r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.7 1 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1 7 8\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1 7 \r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 192.0.2.\xff 198.51.100.7 1 7\r\n",
        ] {
            let got = parse(bad);
            assert!(
                matches!(got, Err(Error::Malformed(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Bytes that are neither version's signature are refused at the first
    /// byte that differs, never read as a header.
    #[test]
    fn not_a_header() {
        for (bytes, want) in [
            (&b"G"[..], Err(Error::NotProxy)),
            (b"GET / HTTP/1.1\r\n", Err(Error::NotProxy)),
            (b"PROX", Ok(Parsed::Incomplete { needed: 11 })),
            (b"PROXY", Ok(Parsed::Incomplete { needed: 10 })),
            (b"PROXYTCP4", Err(Error::NotProxy)),
            (b"proxy TCP4", Err(Error::NotProxy)),
            (b"\r\n\r\n", Ok(Parsed::Incomplete { needed: 12 })),
            (b"\r\n\r\nX", Err(Error::NotProxy)),
            (b"\r\n\r\n\0\r\nQUIT\r", Err(Error::NotProxy)),
        ] {
            assert_eq!(parse(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    /// What [`v1`] and [`v2`] write, [`parse`] reads back, byte by byte,
    /// for both families; mixed families are UNKNOWN / AF_UNSPEC.
    #[test]
    fn written_headers_read_back() {
        for (source, destination) in [
            (addr("192.0.2.1:1"), addr("198.51.100.7:7")),
            (addr("[2001:db8::1]:65535"), addr("[::1]:7878")),
        ] {
            let proxied = Header::Proxied {
                source,
                destination,
            };
            assert_eq!(assert_incremental(&v1(source, destination)), proxied);
            assert_eq!(assert_incremental(&v2(source, destination)), proxied);
        }
        let (s, d) = (addr("192.0.2.1:1"), addr("[::1]:7"));
        assert_eq!(complete(&v1(s, d)).0, Header::Unknown);
        assert_eq!(complete(&v2(s, d)).0, Header::Unknown);
    }

    /// LOCAL is the balancer itself, whatever its address block holds; the
    /// whole block is the header's.
    #[test]
    fn v2_local_ignores_its_addresses() {
        let header = v2_raw(0x20, 0x11, &[0xAB; 40]);
        assert_eq!(assert_incremental(&header), Header::Local);
        assert_eq!(assert_incremental(&v2_raw(0x20, 0x00, &[])), Header::Local);
    }

    /// TLVs after the addresses are stepped over, and a TLV that does not
    /// fit what the length field left is malformed.
    #[test]
    fn v2_tlvs_are_skipped_safely() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 7, 0, 80, 0, 7];
        body.extend_from_slice(&[0x01, 0, 2, b'h', b'2']); // ALPN
        body.extend_from_slice(&[0x04, 0, 0]); // NOOP, empty
        body.extend_from_slice(&[0x05, 0, 3, 1, 2, 3]); // UNIQUE_ID
        let header = assert_incremental(&v2_raw(0x21, 0x11, &body));
        assert_eq!(
            header,
            Header::Proxied {
                source: addr("192.0.2.1:80"),
                destination: addr("198.51.100.7:7")
            }
        );
        let addresses = &body[..12];
        for tail in [
            &[0x01][..],
            &[0x01, 0],
            &[0x01, 0, 3, b'h', b'2'],
            &[0x01, 0xff, 0xff],
        ] {
            let mut bad = addresses.to_vec();
            bad.extend_from_slice(tail);
            let got = parse(&v2_raw(0x21, 0x11, &bad));
            assert!(matches!(got, Err(Error::Malformed(_))), "{tail:?}: {got:?}");
        }
    }

    /// Families and transports with no address used here (AF_UNSPEC,
    /// AF_UNIX, a datagram) leave the balancer's address standing.
    #[test]
    fn v2_unsupported_families_are_unknown() {
        assert_eq!(
            assert_incremental(&v2_raw(0x21, 0x00, &[])),
            Header::Unknown
        );
        assert_eq!(
            assert_incremental(&v2_raw(0x21, 0x31, &[0; 216])),
            Header::Unknown
        );
        assert_eq!(
            assert_incremental(&v2_raw(0x21, 0x12, &[0; 12])),
            Header::Unknown
        );
        assert_eq!(
            assert_incremental(&v2_raw(0x21, 0x20, &[0; 36])),
            Header::Unknown
        );
    }

    /// Version 2 fields out of the specification are malformed, decided as
    /// soon as the fixed part has come.
    #[test]
    fn v2_malformed() {
        for (ver_cmd, family, body, what) in [
            (0x11, 0x11, &[0u8; 12][..], "version 1 in the binary form"),
            (0x22, 0x11, &[0; 12], "command 2"),
            (0x21, 0x41, &[0; 12], "family 4"),
            (0x21, 0x13, &[0; 12], "transport 3"),
            (0x21, 0x11, &[0; 11], "IPv4 addresses cut short"),
            (0x21, 0x21, &[0; 12], "IPv6 addresses cut short"),
            (0x21, 0x31, &[0; 100], "Unix paths cut short"),
        ] {
            let got = parse(&v2_raw(ver_cmd, family, body));
            assert!(matches!(got, Err(Error::Malformed(_))), "{what}: {got:?}");
        }
        let early = &v2_raw(0x11, 0x11, &[0; 12])[..V2_FIXED];
        assert!(matches!(parse(early), Err(Error::Malformed(_))));
    }

    /// A version 2 length past MAX_HEADER is refused from the fixed part
    /// alone, before the rest is waited for; at the bound it is accepted.
    #[test]
    fn v2_bound() {
        let mut fixed = v2_raw(0x21, 0x00, &[]);
        let over = u16::try_from(MAX_HEADER - V2_FIXED + 1).unwrap();
        fixed[14..16].copy_from_slice(&over.to_be_bytes());
        assert_eq!(parse(&fixed), Err(Error::Oversized));
        let mut body = vec![0u8; 12];
        let tlv = MAX_HEADER - V2_FIXED - 12 - 3;
        body.extend_from_slice(&[0x04]);
        body.extend_from_slice(&u16::try_from(tlv).unwrap().to_be_bytes());
        body.resize(MAX_HEADER - V2_FIXED, 0);
        let (_, len) = complete(&v2_raw(0x21, 0x11, &body));
        assert_eq!(len, MAX_HEADER);
    }

    /// Each error has its counter's name.
    #[test]
    fn reasons() {
        assert_eq!(Error::NotProxy.reason(), "not_proxy");
        assert_eq!(Error::Malformed("x").reason(), "malformed");
        assert_eq!(Error::Oversized.reason(), "oversized");
    }

    /// Mangled headers (bytes flipped, cut, extended) never panic, and a
    /// complete header never claims more bytes than were given or than
    /// MAX_HEADER.
    #[test]
    fn mangled_headers_never_overrun() {
        let seeds = [
            v1(addr("192.0.2.1:1"), addr("198.51.100.7:7")),
            v2(addr("[2001:db8::1]:2"), addr("[::1]:7")),
            v2_raw(
                0x21,
                0x11,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 9],
            ),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at.max(1)),
                    _ => bytes.insert(at, next() as u8),
                }
            }
            if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
                assert!(len <= bytes.len() && len <= MAX_HEADER, "{bytes:?}");
            }
        }
    }
}
