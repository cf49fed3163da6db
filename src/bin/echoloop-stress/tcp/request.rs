//! Any TCP server (`--send`, `--expect`; the rules are in `exchange.rs`):
//! each connection's requests rendered from the template and written, and
//! its responses taken whole, in order, matched and timed. Echo mode never
//! comes here: its bytes go straight from and to the payload table
//! (`traffic.rs`).

use std::io;

use echoloop::transport::Transport;

use super::end::End;
use super::Tcp;
use crate::engine::Core;
use crate::exchange::{shown, Found};

/// One connection's bytes in flight in any-server mode.
#[derive(Debug, Default)]
pub struct Wire {
    /// Requests rendered and not yet all written.
    out: Vec<u8>,
    /// Bytes of `out` written.
    written: usize,
    /// Messages rendered into `out` so far (the next one's `{seq}`).
    rendered: u64,
    /// Bytes received since the last whole response.
    got: Vec<u8>,
}

impl Wire {
    /// Empty again, for the slot's next connection (the buffers are kept).
    pub fn clear(&mut self) {
        self.out.clear();
        self.written = 0;
        self.rendered = 0;
        self.got.clear();
    }
}

impl Tcp {
    /// Renders slot `s`'s issued requests and writes what the socket takes.
    /// Returns whether some are still pending (the socket is full).
    pub(super) fn flush_requests(&mut self, core: &mut Core, s: usize) -> io::Result<bool> {
        let Some(exchange) = core.plan.exchange.as_ref() else {
            return Ok(false);
        };
        let slot = &mut self.slots[s];
        let wire = &mut self.wires[s];
        let Some(stream) = slot.stream.as_mut() else {
            return Ok(false);
        };
        stream.flush()?;
        if stream.wants_write() {
            return Ok(true);
        }
        while wire.rendered < slot.issued {
            exchange.request.render(wire.rendered, &mut wire.out);
            wire.rendered += 1;
        }
        while wire.written < wire.out.len() {
            let n = stream.write(&wire.out[wire.written..])?;
            wire.written += n;
            slot.sent += n as u64;
            if n == 0 {
                return Ok(true);
            }
        }
        wire.out.clear();
        wire.written = 0;
        Ok(false)
    }

    /// Takes the `n` bytes just read into the buffer as the next part of
    /// slot `s`'s responses, and times every response they complete. Bytes
    /// that are no response, or a response with no request, are the
    /// verification error returned.
    pub(super) fn take_responses(
        &mut self,
        core: &mut Core,
        s: usize,
        n: usize,
        turn: u64,
    ) -> Result<(), End> {
        let Core {
            plan, rec, counts, ..
        } = core;
        let Some(exchange) = plan.exchange.as_ref() else {
            return Ok(());
        };
        let k = plan.pipeline;
        let wire = &mut self.wires[s];
        wire.got.extend_from_slice(&self.buf[..n]);
        self.slots[s].received += n as u64;
        self.slots[s].last_progress = turn;
        let mut start = 0;
        let ending = loop {
            let slot = &self.slots[s];
            match exchange.expect.take(&wire.got[start..]) {
                Found::Partial => break None,
                Found::Wrong => {
                    break Some(format!(
                        "connection {}: response {} does not match the expected: {}",
                        slot.index,
                        slot.done,
                        shown(&wire.got[start..])
                    ))
                }
                Found::Response(_) if slot.done >= slot.issued => {
                    break Some(format!(
                        "connection {}: a response with no request outstanding: {}",
                        slot.index,
                        shown(&wire.got[start..])
                    ))
                }
                Found::Response(len) => {
                    start += len;
                    counts.bytes += len as u64;
                    let at = s * k as usize + (slot.done % k) as usize;
                    let times = (&self.sent_at[..], &self.sent_actual[..]);
                    Self::complete(times, at, rec, counts, &mut self.slots[s], turn);
                    self.outstanding -= 1;
                }
            }
        };
        wire.got.drain(..start);
        let slot = &mut self.slots[s];
        if slot.first_byte_from > 0 {
            rec.record(
                crate::record::Series::FirstByte,
                turn.saturating_sub(slot.first_byte_from),
            );
            slot.first_byte_from = 0;
        }
        match ending {
            Some(message) => Err(End::Verification(message)),
            None => Ok(()),
        }
    }
}
