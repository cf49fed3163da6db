//! Who may be served: the decision Winsock's `WSAAccept` hands to a
//! condition function, made here in its portable form — accept, look at the
//! peer's address, and close at once whoever is not welcome — and the same
//! decision for every UDP datagram.
//!
//! Three rules, in order: `--deny` ranges (always win), `--allow` ranges
//! (when given, only those sources are served), and `--max-per-source` (at
//! most N connections open at once from one IP). The first two are
//! [`Rules`], one check that TCP (at accept) and UDP (per datagram, dropped
//! and counted as `udp_dropped_denied`) both make; with no ranges it is one
//! branch. `--max-per-source` counts connections, which UDP does not have:
//! UDP's per-source limit is `--udp-rate` ([`crate::rate_limit`]). The
//! per-source counts cost O(1) per accept and close — a hash map of the
//! sources with connections open, and each connection's source beside the
//! slab — and their memory is bounded by the connections held: a source's
//! entry goes when its last connection closes.
//!
//! # IPv4 in IPv6 clothing
//!
//! An IPv4 client of a dual-stack IPv6 socket arrives as `::ffff:a.b.c.d`
//! (an IPv4-mapped address); it is judged as `a.b.c.d`, whichever socket it
//! came in on. The rules are brought to the same form when they are built,
//! so that a rule means the same clients however it is written:
//!
//! - A range inside the mapped block, `::ffff:a.b.c.d/N` with N ≥ 96, is the
//!   IPv4 range `a.b.c.d/(N−96)`: `::ffff:127.0.0.1` is `127.0.0.1/32`,
//!   `::ffff:127.0.0.0/104` is `127.0.0.0/8`, `::ffff:0:0/96` every IPv4
//!   address.
//! - A range that holds the whole mapped block (N < 96, such as `::/0` or
//!   `::/64`) holds every IPv4 client as well as its IPv6 addresses:
//!   `--allow ::/0` admits everyone, `--deny ::/0` refuses everyone. To mean
//!   "IPv6 only", write ranges that leave the mapped block out (`2000::/3`,
//!   `::1`), or listen on IPv6 only.
//! - Any other range misses the mapped block and is kept as written.
//!
//! A CIDR range either lies inside another, holds it, or misses it, so
//! these three cases are all there are: every rule has a faithful IPv4 form
//! and none needs refusing. (The deprecated IPv4-*compatible* form
//! `::a.b.c.d` is an IPv6 address like any other, for rules and clients
//! alike.)

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// Why a client was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source is in a `--deny` range, or outside every `--allow` range.
    Denied,
    /// Its source already has `--max-per-source` connections open.
    PerSource,
}

/// `--allow` and `--deny`, in the form clients are judged in (see the
/// module docs): the one check TCP and UDP share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// When not empty, only sources in these ranges are served.
    allow: Vec<IpNet>,
    /// Sources in these ranges are never served.
    deny: Vec<IpNet>,
}

impl Rules {
    /// The rules of `--allow` and `--deny`, each range normalised.
    pub(crate) fn new(allow: &[IpNet], deny: &[IpNet]) -> Self {
        Rules {
            allow: normalised(allow),
            deny: normalised(deny),
        }
    }

    /// Whether a source at `ip` may be served by these rules. Without any
    /// rule this is one branch: the UDP echo asks it for every datagram.
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.is_empty() && self.deny.is_empty() {
            return true;
        }
        let ip = canonical(ip);
        !self.deny.iter().any(|net| net.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip)))
    }
}

/// The admission rules and the per-source bookkeeping they need.
#[derive(Debug)]
pub(crate) struct Admission {
    /// `--allow` and `--deny`.
    rules: Rules,
    /// `--max-per-source`, and the counts it needs; `None` when off.
    per_source: Option<PerSource>,
}

/// Connections open per source IP.
#[derive(Debug)]
struct PerSource {
    /// Most connections one source may hold open.
    limit: u32,
    /// Open connections of each source that has any.
    open: HashMap<IpAddr, u32>,
    /// Each connection's source, by slab key (`None`: a free key).
    source_of: Vec<Option<IpAddr>>,
}

impl Admission {
    /// The rules of a configuration.
    pub(crate) fn new(allow: &[IpNet], deny: &[IpNet], max_per_source: Option<usize>) -> Self {
        Admission {
            rules: Rules::new(allow, deny),
            per_source: max_per_source.map(|limit| PerSource {
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                open: HashMap::new(),
                source_of: Vec::new(),
            }),
        }
    }

    /// Whether a client from `ip` may be served; `Err` says why not.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if !self.rules.permits(ip) {
            return Err(Refusal::Denied);
        }
        match &self.per_source {
            Some(p) if p.open.get(&canonical(ip)).is_some_and(|&n| n >= p.limit) => {
                Err(Refusal::PerSource)
            }
            _ => Ok(()),
        }
    }

    /// Records that connection `key`, from `ip`, was admitted.
    pub(crate) fn opened(&mut self, key: usize, ip: IpAddr) {
        if let Some(p) = &mut self.per_source {
            let ip = canonical(ip);
            *p.open.entry(ip).or_insert(0) += 1;
            if p.source_of.len() <= key {
                p.source_of.resize(key + 1, None);
            }
            p.source_of[key] = Some(ip);
        }
    }

    /// Records that connection `key` closed.
    pub(crate) fn closed(&mut self, key: usize) {
        let Some(p) = &mut self.per_source else {
            return;
        };
        let Some(ip) = p.source_of.get_mut(key).and_then(Option::take) else {
            return;
        };
        if let Some(n) = p.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                p.open.remove(&ip);
            }
        }
    }
}

/// An IPv4 client of a dual-stack IPv6 listener arrives as `::ffff:a.b.c.d`;
/// the rules and counts are about `a.b.c.d`.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The first address of the IPv4-mapped block, `::ffff:0.0.0.0`.
const MAPPED: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0);

/// Ranges in the form clients are judged in ([`canonical`]; the cases are
/// in the module docs): one inside the mapped block becomes its IPv4 range,
/// one holding the block gains every IPv4 address, others stay. Host bits
/// are cleared (`::ffff:127.0.0.1/104` is `127.0.0.0/8`).
fn normalised(rules: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(rules.len());
    for net in rules.iter().map(IpNet::trunc) {
        let IpNet::V6(v6) = net else {
            out.push(net);
            continue;
        };
        let (network, len) = (v6.network(), v6.prefix_len());
        match network.to_ipv4_mapped() {
            Some(v4) if len >= 96 => {
                let v4 = Ipv4Net::new(v4, len - 96).expect("a /96..=/128 leaves /0..=/32");
                out.push(IpNet::V4(v4));
            }
            // Below /96, holding one mapped address is holding them all.
            _ if len < 96 && v6.contains(&MAPPED) => {
                out.push(net);
                out.push(IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0"),
                ));
            }
            _ => out.push(net),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A range, or a bare address as one host (as the command line takes it).
    fn net_or_host(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| IpNet::from(ip(s)))
    }

    mod properties {
        use super::super::*;
        use ipnet::Ipv6Net;
        use proptest::prelude::*;

        /// An IPv4 address from a small block, so that ranges and clients
        /// meet often.
        fn v4() -> impl Strategy<Value = Ipv4Addr> {
            (0u8..4, 0u8..4).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c, d))
        }

        /// A rule as an operator may write it: IPv4, IPv4-mapped, a prefix
        /// of `::` (holding the mapped block or not), or plain IPv6.
        fn rule() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (v4(), 0u8..=32).prop_map(|(a, n)| Ipv4Net::new(a, n).unwrap().into()),
                (v4(), 0u8..=32)
                    .prop_map(|(a, n)| Ipv6Net::new(a.to_ipv6_mapped(), 96 + n).unwrap().into()),
                (0u8..=128).prop_map(|n| Ipv6Net::new(Ipv6Addr::UNSPECIFIED, n).unwrap().into()),
                (0u8..=128).prop_map(|n| {
                    Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), n)
                        .unwrap()
                        .into()
                }),
            ]
        }

        /// A client: IPv4, the same mapped into IPv6, IPv4-compatible
        /// (`::a.b.c.d`, plain IPv6), or other IPv6.
        fn client() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                v4().prop_map(IpAddr::V4),
                v4().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
                #[allow(deprecated)]
                v4().prop_map(|a| IpAddr::V6(a.to_ipv6_compatible())),
                Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Just(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            ]
        }

        /// The model of the module docs: a client is in a range when
        /// either spelling of it is (`a.b.c.d` or `::ffff:a.b.c.d`).
        fn in_range(net: &IpNet, ip: IpAddr) -> bool {
            match canonical(ip) {
                IpAddr::V4(a) => {
                    net.contains(&IpAddr::V4(a)) || net.contains(&IpAddr::V6(a.to_ipv6_mapped()))
                }
                v6 => net.contains(&v6),
            }
        }

        fn permitted(allow: &[IpNet], deny: &[IpNet], ip: IpAddr) -> bool {
            !deny.iter().any(|n| in_range(n, ip))
                && (allow.is_empty() || allow.iter().any(|n| in_range(n, ip)))
        }

        /// What the server does to the admission bookkeeping.
        #[derive(Debug, Clone)]
        enum Op {
            /// A client from this address is accepted, and kept if admitted.
            Accept(IpAddr),
            /// The n-th open connection (of those open) closes or is reset.
            Close(usize),
            /// A key closes that is already closed (a second close path).
            CloseAgain(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => client().prop_map(Op::Accept),
                2 => any::<usize>().prop_map(Op::Close),
                1 => (0usize..16).prop_map(Op::CloseAgain),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any `--allow`/`--deny` lists, written in any family, judge
            /// every client as the model does: deny wins, an allow list
            /// admits only its ranges, and a client is in a range when
            /// either spelling of its address is.
            #[test]
            fn rules_match_either_spelling(
                allow in prop::collection::vec(rule(), 0..4),
                deny in prop::collection::vec(rule(), 0..4),
                clients in prop::collection::vec(client(), 1..16),
            ) {
                let rules = Rules::new(&allow, &deny);
                for ip in clients {
                    prop_assert_eq!(rules.permits(ip), permitted(&allow, &deny, ip), "{}", ip);
                }
            }

            /// Under any order of accepts, closes, resets and second closes
            /// (slab keys reused as the server reuses them), each source's
            /// count is that of the model: never above `--max-per-source`,
            /// a refusal exactly when it is reached (or the rules deny),
            /// and nothing left once every connection has closed.
            #[test]
            fn per_source_counts_match_the_model(
                limit in 1usize..4,
                allow in prop::collection::vec(rule(), 0..2),
                deny in prop::collection::vec(rule(), 0..2),
                ops in prop::collection::vec(op(), 1..80),
            ) {
                let mut admission = Admission::new(&allow, &deny, Some(limit));
                let mut slab: slab::Slab<IpAddr> = slab::Slab::new();
                let mut model: HashMap<IpAddr, usize> = HashMap::new();
                for op in ops {
                    match op {
                        Op::Accept(ip) => {
                            let count = model.get(&canonical(ip)).copied().unwrap_or(0);
                            let want = if !permitted(&allow, &deny, ip) {
                                Err(Refusal::Denied)
                            } else if count >= limit {
                                Err(Refusal::PerSource)
                            } else {
                                Ok(())
                            };
                            prop_assert_eq!(admission.check(ip), want, "{}", ip);
                            if want.is_ok() {
                                let key = slab.insert(ip);
                                admission.opened(key, ip);
                                *model.entry(canonical(ip)).or_insert(0) += 1;
                            }
                        }
                        Op::Close(n) if !slab.is_empty() => {
                            let key = slab.iter().map(|(k, _)| k).nth(n % slab.len()).unwrap();
                            let ip = slab.remove(key);
                            admission.closed(key);
                            let count = model.get_mut(&canonical(ip)).unwrap();
                            *count -= 1;
                            if *count == 0 {
                                model.remove(&canonical(ip));
                            }
                        }
                        Op::Close(_) => {}
                        Op::CloseAgain(key) => {
                            if !slab.contains(key) {
                                admission.closed(key);
                            }
                        }
                    }
                    let p = admission.per_source.as_ref().unwrap();
                    let counts: HashMap<IpAddr, usize> =
                        p.open.iter().map(|(&ip, &n)| (ip, n as usize)).collect();
                    prop_assert_eq!(&counts, &model);
                    prop_assert!(counts.values().all(|&n| n >= 1 && n <= limit));
                }
                for key in slab.iter().map(|(k, _)| k).collect::<Vec<_>>() {
                    admission.closed(key);
                }
                let p = admission.per_source.as_ref().unwrap();
                prop_assert!(p.open.is_empty(), "left open: {:?}", p.open);
                prop_assert!(p.source_of.iter().all(Option::is_none));
            }
        }
    }

    /// Deny wins over allow; an allow list admits only its ranges; IPv4
    /// mapped into IPv6 is judged as IPv4.
    #[test]
    fn deny_wins_and_allow_restricts() {
        let a = Admission::new(&[net("127.0.0.0/8")], &[net("127.0.0.2/32")], None);
        assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(a.check(ip("127.0.0.2")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("10.0.0.1")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("::ffff:127.0.0.2")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("::1")), Err(Refusal::Denied));
    }

    /// A rule inside the IPv4-mapped block means its IPv4 range, for IPv4
    /// clients and mapped ones alike: `--deny ::ffff:127.0.0.1` and
    /// `--deny ::ffff:127.0.0.0/104` (host bits and all) deny 127.0.0.1,
    /// `--allow ::ffff:127.0.0.1` admits it and nobody else.
    #[test]
    fn mapped_rules_mean_their_ipv4_range() {
        for rule in [
            "::ffff:127.0.0.1",
            "::ffff:127.0.0.1/128",
            "::ffff:127.0.0.9/104",
        ] {
            let deny = Rules::new(&[], &[net_or_host(rule)]);
            for client in ["127.0.0.1", "::ffff:127.0.0.1"] {
                assert!(!deny.permits(ip(client)), "--deny {rule} let {client} in");
            }
        }
        let deny = Rules::new(&[], &[net("::ffff:127.0.0.0/104")]);
        assert!(!deny.permits(ip("127.200.0.1")));
        assert!(deny.permits(ip("128.0.0.1")));
        assert!(deny.permits(ip("::1")));
        let allow = Rules::new(&[net_or_host("::ffff:127.0.0.1")], &[]);
        assert!(allow.permits(ip("127.0.0.1")));
        assert!(allow.permits(ip("::ffff:127.0.0.1")));
        assert!(!allow.permits(ip("127.0.0.2")));
        assert!(!allow.permits(ip("::1")));
        assert_eq!(
            Rules::new(&[net("::ffff:0:0/96")], &[]).allow,
            [net("0.0.0.0/0")]
        );
    }

    /// A range holding the whole mapped block holds every IPv4 client too:
    /// `--allow ::/0` admits 127.0.0.1, `--deny ::/64` refuses it; a range
    /// that misses the block (`2000::/3`, `::1`, the IPv4-compatible
    /// `::127.0.0.1`) never touches an IPv4 client.
    #[test]
    fn ranges_holding_the_mapped_block_hold_ipv4() {
        let allow_all = Rules::new(&[net("::/0")], &[]);
        for client in [
            "127.0.0.1",
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "::1",
            "2001:db8::1",
        ] {
            assert!(
                allow_all.permits(ip(client)),
                "--allow ::/0 refused {client}"
            );
        }
        let deny = Rules::new(&[], &[net("::/64")]);
        assert!(!deny.permits(ip("127.0.0.1")));
        assert!(!deny.permits(ip("::1")));
        assert!(deny.permits(ip("2001:db8::1")));
        for rule in ["2000::/3", "::1/128", "::127.0.0.1/128", "::ffff:0:0:0/96"] {
            let deny = Rules::new(&[], &[net(rule)]);
            assert!(
                deny.permits(ip("127.0.0.1")),
                "--deny {rule} refused 127.0.0.1"
            );
            assert_eq!(deny.deny, [net(rule)], "{rule} changed");
        }
    }

    /// No rules: everyone is served, whatever the family.
    #[test]
    fn no_rules_permit_everyone() {
        let open = Rules::new(&[], &[]);
        assert!(["127.0.0.1", "::1", "::ffff:1.2.3.4"]
            .iter()
            .all(|c| open.permits(ip(c))));
    }

    /// The per-source count follows opens and closes, and forgets a source
    /// once its last connection closed.
    #[test]
    fn per_source_counts_follow_opens_and_closes() {
        let mut a = Admission::new(&[], &[], Some(2));
        a.opened(0, ip("127.0.0.1"));
        a.opened(1, ip("127.0.0.1"));
        assert_eq!(a.check(ip("127.0.0.1")), Err(Refusal::PerSource));
        assert_eq!(a.check(ip("127.0.0.9")), Ok(()));
        a.closed(0);
        assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
        a.closed(1);
        a.closed(1); // a second close of the same key changes nothing
        let p = a.per_source.as_ref().unwrap();
        assert!(p.open.is_empty());
    }
}
