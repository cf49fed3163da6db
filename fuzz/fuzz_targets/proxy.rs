//! The PROXY protocol header reader (`echoloop::proxy`), on any bytes, or
//! on a header `v1`/`v2` wrote for any addresses followed by any bytes.
//! Read as its docs tell a server to read it — take what `Incomplete`
//! says is certainly the header's, parse again — it never panics, never
//! takes a byte of the data behind a header (it stops exactly at the
//! header's end), stays within `MAX_HEADER`, and decides as the whole
//! input would: the same header and length, or an error. A header written
//! by `v1`/`v2` reads back as the addresses it was written for.
//!
//! Input: the first byte picks raw bytes (even) or a written header (odd);
//! for a header, the next bytes give the version and the two addresses;
//! the rest follows as data.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use echoloop::proxy::{parse, v1, v2, Header, Parsed, MAX_HEADER};
use libfuzzer_sys::fuzz_target;

/// An address from 19 bytes: family, 16 address bytes, 2 port bytes.
fn address(b: &[u8]) -> SocketAddr {
    let port = u16::from_le_bytes([b[17], b[18]]);
    let ip = if b[0] % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[1..17]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    SocketAddr::new(ip, port)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut written = None;
    let input: Vec<u8> = if mode % 2 == 0 || rest.len() < 39 {
        rest.to_vec()
    } else {
        let (head, tail) = rest.split_at(39);
        let (source, mut destination) = (address(&head[1..20]), address(&head[20..39]));
        if source.is_ipv4() != destination.is_ipv4() {
            // One family per header.
            destination = SocketAddr::new(source.ip(), destination.port());
        }
        let mut bytes = if head[0] % 2 == 0 {
            v1(source, destination)
        } else {
            v2(source, destination)
        };
        written = Some((source, destination, bytes.len()));
        bytes.extend_from_slice(tail);
        bytes
    };

    // The reader the docs describe.
    let mut taken = 0;
    let outcome = loop {
        match parse(&input[..taken]) {
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1, "incomplete, but needs nothing more");
                assert!(
                    taken + needed <= MAX_HEADER,
                    "{taken} taken, {needed} more needed: past {MAX_HEADER}"
                );
                if taken == input.len() {
                    break Ok(Parsed::Incomplete { needed });
                }
                taken = (taken + needed).min(input.len());
            }
            Ok(Parsed::Complete { header, len }) => {
                assert_eq!(
                    len, taken,
                    "the reader took {taken} bytes of a {len}-byte header"
                );
                break Ok(Parsed::Complete { header, len });
            }
            Err(e) => break Err(e),
        }
    };
    // The whole input decides the same.
    let whole = parse(&input);
    match (outcome, whole) {
        (Ok(Parsed::Complete { .. }), w)
        | (Ok(Parsed::Incomplete { .. }), w @ Ok(Parsed::Incomplete { .. })) => {
            assert_eq!(w, outcome, "read step by step: {outcome:?}; whole: {w:?}");
        }
        (Err(_), Err(_)) => {}
        (o, w) => panic!("read step by step: {o:?}; whole: {w:?}"),
    }
    if let Some((source, destination, len)) = written {
        assert_eq!(
            outcome,
            Ok(Parsed::Complete {
                header: Header::Proxied {
                    source,
                    destination
                },
                len
            }),
            "a written header read back otherwise"
        );
    }
});
