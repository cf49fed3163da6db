//! Which loop serves a client: a hash of its source address, the same for
//! every connection and datagram from one IP, so that everything counted per
//! source (`--max-per-source`, `--udp-rate`) lives in one loop and stays
//! exact with no state shared between loops.
//!
//! There are two ways the hash is applied, one per platform family (the
//! rustdoc of [`crate::Server`]'s `# Loops` says which runs where):
//!
//! - **The kernel steers** (Linux, epoll): every loop binds its own listener
//!   (and UDP socket) on the same address with `SO_REUSEPORT`, and a classic
//!   BPF program attached with `SO_ATTACH_REUSEPORT_CBPF` ([`attach`])
//!   computes [`loop_for`] on each SYN and datagram: the index it returns is
//!   the socket, in the order the loops joined the group, that gets it.
//!   Classic BPF is what every kernel since 4.5 accepts without privilege;
//!   the program reads the source address through the network-header
//!   offset `SKF_NET_OFF` (the payload is where the packet data starts).
//! - **One loop hands off** (everywhere else, and mio's forced `poll(2)`
//!   backend): loop 0 owns the listeners, accepts, and passes each client to
//!   the loop [`loop_for`] names, through that loop's queue and waker.

use std::net::IpAddr;

/// Multiplier of the hash (Knuth's multiplicative hashing: 2^32 / φ). A
/// multiply scatters neighbouring addresses, such as a test's
/// 127.0.0.1–16, over every loop; the high half of the product is the
/// better mixed, hence the shift.
const MIX: u32 = 0x9E37_79B1;

/// The bits of the product dropped before the modulo.
const SHIFT: u32 = 16;

/// The loop (of `loops`) that serves clients from `ip`. IPv6 folds its four
/// 32-bit words together by XOR; an IPv4-mapped IPv6 address hashes as the
/// IPv4 address it maps.
pub(crate) fn loop_for(ip: IpAddr, loops: usize) -> usize {
    let word = match ip.to_canonical() {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .fold(0, |a, w| a ^ w),
    };
    let n = u32::try_from(loops.max(1)).unwrap_or(u32::MAX);
    ((word.wrapping_mul(MIX) >> SHIFT) % n) as usize
}

/// Attaches to `socket` (one of a `SO_REUSEPORT` group; the program then
/// serves the whole group) the classic BPF program that computes
/// [`loop_for`] over `loops` for each packet's source address, IPv4 or IPv6
/// as `ipv6` says.
#[cfg(reuseport_steering)]
pub(crate) fn attach(socket: &socket2::Socket, ipv6: bool, loops: usize) -> std::io::Result<()> {
    use libc::{sock_filter, sock_fprog};
    use std::os::fd::AsRawFd;

    let op = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // A load of the 32-bit word `at` bytes into the IP header (network
    // byte order, as `u32::from(Ipv4Addr)` reads it).
    let load = |at: i32| {
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_NET_OFF + at) as u32,
        )
    };
    let alu = |what: u32, k: u32| op(libc::BPF_ALU | what | libc::BPF_K, k);
    let mut program = Vec::new();
    if ipv6 {
        // A = word(8) ^ word(12) ^ word(16) ^ word(20): the source address.
        program.push(load(8));
        for at in [12, 16, 20] {
            program.push(op(libc::BPF_MISC | libc::BPF_TAX, 0));
            program.push(load(at));
            program.push(op(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0));
        }
    } else {
        program.push(load(12)); // the IPv4 source address
    }
    program.push(alu(libc::BPF_MUL, MIX));
    program.push(alu(libc::BPF_RSH, SHIFT));
    program.push(alu(libc::BPF_MOD, u32::try_from(loops).unwrap_or(u32::MAX)));
    program.push(op(libc::BPF_RET | libc::BPF_A, 0));
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: a valid socket descriptor; `fprog` points at `program`, which
    // lives until the call returns, and the kernel copies the program in.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const sock_fprog).cast(),
            std::mem::size_of::<sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One loop serves everyone; 16 neighbouring sources spread over every
    /// one of 4 loops; IPv4-mapped hashes as IPv4.
    #[test]
    fn neighbours_spread_and_one_source_stays() {
        assert_eq!(loop_for("10.1.2.3".parse().unwrap(), 1), 0);
        let mut served = [0; 4];
        for i in 1..=16u8 {
            served[loop_for(IpAddr::from([127, 0, 0, i]), 4)] += 1;
        }
        assert!(served.iter().all(|&n| n > 0), "{served:?}");
        let mapped: IpAddr = "::ffff:127.0.0.7".parse().unwrap();
        assert_eq!(
            loop_for(mapped, 4),
            loop_for("127.0.0.7".parse().unwrap(), 4)
        );
    }
}
