//! One metrics connection: read the request head, answer, send FIN, read
//! until the scraper closes — each step within the loop's read budget, and
//! the input bounded (see the parent module's docs for why).

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Registry, Token};

use super::http::{self, Request};
use crate::rules;

/// Most bytes read from one metrics connection in all: its request head
/// and as much again, room for a pipelined next request (which is not
/// answered: every response says `Connection: close`). Past it the peer is
/// streaming, and the connection is closed.
const MAX_INPUT: usize = 2 * http::MAX_HEAD;

/// What one read takes: a request head comes in one or two.
const READ_SIZE: usize = 2048;

/// One scraper.
#[derive(Debug)]
pub(super) struct Scrape {
    /// Its socket, registered under `Source::Metrics(key)`.
    stream: TcpStream,
    /// Its source address (IPv4-mapped addresses as IPv4), for the
    /// per-source share.
    pub(super) source: IpAddr,
    /// The request head so far (at most `http::MAX_HEAD` and one read).
    head: Vec<u8>,
    /// The response, once the request is answered (`Some` from then on).
    out: Option<Vec<u8>>,
    /// How much of `out` is sent.
    sent: usize,
    /// The response is out and FIN sent: waiting for the scraper to close.
    pub(super) done: bool,
    /// Bytes read in all, bounded by [`MAX_INPUT`].
    pub(super) received: usize,
    /// WRITABLE is registered (only while `out` is not all sent).
    write_interest: bool,
    /// Accept time + `TIMEOUT`: closed then, whatever its state.
    pub(super) deadline: Instant,
    /// When it last sent a byte, as the service's event count (accept
    /// counts as sending): the stalest is the first closed to make room.
    pub(super) heard: u64,
    /// Its budget ran out with input maybe left: queued to be served again.
    pub(super) queued: bool,
}

/// What serving a scrape left it as.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Waiting for an event.
    Waiting,
    /// The read budget ran out with input maybe left (rule 1): serve it
    /// again next turn, without an event.
    ReadAgain,
    /// Finished, or given up on for the reason given: close it.
    Close(&'static str),
}

impl Scrape {
    /// A scrape just accepted from `source`.
    pub(super) fn new(stream: TcpStream, source: IpAddr, deadline: Instant, heard: u64) -> Self {
        Scrape {
            stream,
            source,
            head: Vec::new(),
            out: None,
            sent: 0,
            done: false,
            received: 0,
            write_interest: false,
            deadline,
            heard,
            queued: false,
        }
    }

    /// One turn's worth of work, at most `budget` reads: read the head,
    /// `answer` it, flush, then read what the scraper still sends until it
    /// closes.
    pub(super) fn serve(
        &mut self,
        token: Token,
        registry: &Registry,
        budget: usize,
        answer: impl Fn(Request) -> Vec<u8>,
    ) -> io::Result<Step> {
        let mut reads = 0;
        let mut buf = [0u8; READ_SIZE];
        // a. The request head, until it is complete (bounded by `parse`).
        while self.out.is_none() {
            match self.read(&mut buf, &mut reads, budget)? {
                Got::Some(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    if let Some(request) = http::parse(&self.head) {
                        self.out = Some(answer(request));
                        self.head = Vec::new();
                    }
                }
                Got::Closed => return Ok(Step::Close("closed before its request")),
                Got::Drained => return Ok(Step::Waiting),
                Got::Budget => return Ok(Step::ReadAgain),
            }
        }
        // b. The response, until all written; then FIN.
        if let (false, Some(out)) = (self.done, &self.out) {
            self.sent += rules::write_until_full(&self.stream, &out[self.sent..])?;
            let pending = self.sent < out.len();
            rules::update_interest(
                registry,
                &mut self.stream,
                token,
                &mut self.write_interest,
                pending,
            )?;
            if pending {
                return Ok(Step::Waiting);
            }
            self.stream.shutdown(std::net::Shutdown::Write)?;
            self.done = true;
        }
        // c. Read what the scraper still sends (nothing, usually) until its
        //    close: closing with unread input would send a reset, which may
        //    destroy the response before the scraper reads it. Bounded.
        loop {
            match self.read(&mut buf, &mut reads, budget)? {
                Got::Some(_) => {}
                Got::Closed => return Ok(Step::Close("answered")),
                Got::Drained => return Ok(Step::Waiting),
                Got::Budget => return Ok(Step::ReadAgain),
            }
        }
    }

    /// One read, counted against the turn's `budget` and [`MAX_INPUT`].
    fn read(&mut self, buf: &mut [u8], reads: &mut usize, budget: usize) -> io::Result<Got> {
        loop {
            if *reads == budget {
                return Ok(Got::Budget);
            }
            *reads += 1;
            match (&self.stream).read(buf) {
                Ok(0) => return Ok(Got::Closed),
                Ok(n) => {
                    self.received += n;
                    if self.received > MAX_INPUT {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("more than {MAX_INPUT} bytes sent: not a scraper"),
                        ));
                    }
                    return Ok(Got::Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one read gave.
#[derive(Debug)]
enum Got {
    /// This many bytes.
    Some(usize),
    /// End of stream.
    Closed,
    /// `WouldBlock`: nothing more for now.
    Drained,
    /// The turn's budget is spent; the socket may hold more.
    Budget,
}
