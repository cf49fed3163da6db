//! `--proxy-protocol`: connections from a trusted balancer begin with a
//! PROXY header ([`crate::proxy`]) naming the client it relays, and that
//! client, not the balancer, is the one admitted, limited and logged.
//!
//! Such a connection is accepted into the slab like any other (it holds a
//! descriptor, so it counts against `--max-connections`), but is not yet
//! `active`, nor admitted: it only reads its header, each read no longer
//! than the header (so the data behind it waits in the socket), within
//! `--proxy-header-timeout` of its accept. Then the client the header
//! names is judged by the admission rules, as a direct client is at
//! accept, and served — or refused, and closed with nothing echoed. A
//! header that fails closes the connection, counted by reason.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::debug;

use super::{Close, EventLoop};
use crate::admission::{Refusal, Rules};
use crate::config::Config;
use crate::connection::Hints;
use crate::idle::IdleQueue;
use crate::proxy::{self, Header};
use crate::stats::Counter;

/// The balancers a loop trusts, and the connections whose headers it is
/// reading.
#[derive(Debug)]
pub(super) struct Balancers {
    /// `--proxy-protocol`'s ranges (as an allow list: the same matching,
    /// IPv4-mapped addresses included, as `--allow`).
    trusted: Rules,
    /// Connections still reading their header, oldest first: each one's
    /// deadline is its accept plus the one shared timeout.
    deadlines: IdleQueue,
    /// How many: in the slab, but not `active`.
    pub(super) pending: usize,
}

impl Balancers {
    /// The balancers of `config`; `None` when it names none.
    pub(super) fn new(config: &Config) -> Option<Balancers> {
        (!config.proxy_protocol.is_empty()).then(|| Balancers {
            trusted: Rules::new(&config.proxy_protocol, &[]),
            deadlines: IdleQueue::new(config.proxy_header_timeout),
            pending: 0,
        })
    }

    /// Whether a connection from `ip` must begin with a header.
    pub(super) fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.permits(ip)
    }

    /// When the oldest header still awaited runs out of time.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next_deadline()
    }
}

impl EventLoop {
    /// Accept, from a trusted balancer: registered connection `key` waits
    /// for its header from `now`.
    pub(super) fn await_header(&mut self, key: usize, balancer: SocketAddr, now: Instant) {
        let Some(balancers) = &mut self.balancers else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(key) {
            conn.expect_header(balancer);
            balancers.deadlines.touch(key, now);
            balancers.pending += 1;
            self.counters.add(Counter::ProxyPending, 1);
            debug!("conn {key}: accepted from balancer {balancer}, reading its PROXY header");
        }
    }

    /// Forgets the header deadline of connection `key`: its header was
    /// read, or it closed.
    pub(super) fn header_ended(&mut self, key: usize) {
        if let Some(balancers) = &mut self.balancers {
            balancers.deadlines.remove(key);
            balancers.pending -= 1;
            self.counters.sub(Counter::ProxyPending, 1);
        }
    }

    /// Connection `key`'s header said it is for `client`: admit that client
    /// as a direct one is admitted at accept, and serve what followed the
    /// header; or refuse it, echoing nothing.
    pub(super) fn admit_proxied(&mut self, key: usize, client: SocketAddr, header: Header) {
        self.header_ended(key);
        self.counters.add(
            match header {
                Header::Proxied { .. } => Counter::ProxyProxied,
                Header::Local => Counter::ProxyLocal,
                Header::Unknown => Counter::ProxyUnknown,
            },
            1,
        );
        let refusal = match self.admission.check(client.ip()) {
            Err(Refusal::Denied) => Some((Counter::RefusedDenied, "--allow/--deny")),
            Err(Refusal::PerSource) => Some((Counter::RefusedPerSource, "--max-per-source")),
            Ok(()) => None,
        };
        if let Some((counter, flag)) = refusal {
            self.refused(client, counter, flag);
            self.close(key, Close::Unadmitted);
            return;
        }
        self.admission.opened(key, client.ip());
        self.peers.record(key, client);
        self.counters.add(Counter::Accepted, 1);
        self.set_active();
        debug!("conn {key}: PROXY header {header:?}: serving {client}");
        // The data behind the header may already be in the socket, and no
        // new event will say so.
        self.serve(key, Hints::default());
    }

    /// Connection `key` sent no acceptable header: closed, counted by why.
    pub(super) fn refuse_header(&mut self, key: usize, why: proxy::Error) {
        self.counters.add(
            match why {
                proxy::Error::NotProxy => Counter::ProxyNotProxy,
                proxy::Error::Malformed(_) => Counter::ProxyMalformed,
                proxy::Error::Oversized => Counter::ProxyOversized,
            },
            1,
        );
        debug!("conn {key} ({}): {why}", self.peers.get(key));
        self.close(key, Close::Unadmitted);
    }

    /// Step 5: closes the connections whose header is overdue.
    pub(super) fn expire_headers(&mut self) {
        while let Some(key) = (self.balancers.as_ref()).and_then(|b| b.deadlines.expired(self.now))
        {
            self.counters.add(Counter::ProxyTimeout, 1);
            debug!(
                "conn {key} ({}): PROXY header too slow",
                self.peers.get(key)
            );
            self.close(key, Close::Unadmitted);
        }
    }
}
