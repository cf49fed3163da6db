//! Traffic on an open connection: issuing messages (as the window, the quota
//! and, in the open loop, the schedule allow), writing them straight from
//! the payload table, and reading, verifying and timing their echoes.

use std::io;

use echoloop::tls::Stream;
use mio::Token;

use echoloop::rules;
use echoloop::transport::Transport;

use super::end::End;
use super::{Phase, Tcp};
use crate::conn::Slot;
use crate::counts::Counts;
use crate::engine::{Core, SendTimer};
use crate::payload::PERIOD;
use crate::record::{LoopRecording, Series};

impl Tcp {
    /// Reads slot `s` until drained, verifying and timing the echoes.
    /// `unproven`: the event said a short read proves nothing
    /// ([`rules::short_read_unproven`]), so read on until `WouldBlock` or
    /// the end of stream itself. Returns whether the connection is still
    /// open.
    pub(super) fn read(&mut self, core: &mut Core, s: usize, unproven: bool, turn: u64) -> bool {
        let ending = loop {
            let Some(stream) = self.slots[s].stream.as_mut() else {
                return false;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    let slot = &self.slots[s];
                    break End::Unexpected(format!(
                        "read {}: closed by the server with {} of {} sent bytes echoed",
                        core.plan.addr, slot.received, slot.sent
                    ));
                }
                Ok(n) => {
                    if let Err(wrong) = self.take_echo(core, s, n, turn) {
                        break wrong;
                    }
                    // Finished (the caller closes it), or drained.
                    let slot = &self.slots[s];
                    let asked = self.buf.len();
                    let drained = |link: &Stream| link.read_proves_drained(n, asked, unproven);
                    if slot.done >= slot.quota || slot.stream.as_ref().is_some_and(drained) {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break End::Unexpected(format!("read {}: {e}", core.plan.addr)),
            }
        };
        self.end(core, s, ending);
        false
    }

    /// Verifies the `n` bytes just read into the buffer as the next part of
    /// slot `s`'s echo, and times every message they complete. A wrong or
    /// surplus byte is the verification error returned.
    fn take_echo(&mut self, core: &mut Core, s: usize, n: usize, turn: u64) -> Result<(), End> {
        if core.plan.exchange.is_some() {
            return self.take_responses(core, s, n, turn);
        }
        let Tcp {
            slots,
            sent_at,
            sent_actual,
            buf,
            outstanding,
            ..
        } = self;
        let Core {
            plan, rec, counts, ..
        } = core;
        let slot = &mut slots[s];
        let got = &buf[..n];
        if slot.received + n as u64 > slot.sent {
            return Err(End::Verification(format!(
                "connection {}: {} bytes echoed but only {} sent",
                slot.index,
                slot.received + n as u64,
                slot.sent
            )));
        }
        if let Some((i, want)) = plan.payload.first_mismatch(slot.start, slot.received, got) {
            let at = slot.received + i as u64;
            return Err(End::Verification(format!(
                "connection {}: stream byte {at} (message {}, byte {} of it) \
                 expected 0x{want:02x}, got 0x{:02x}",
                slot.index,
                at / plan.message_size,
                at % plan.message_size,
                got[i]
            )));
        }
        if slot.first_byte_from > 0 {
            rec.record(Series::FirstByte, turn.saturating_sub(slot.first_byte_from));
            slot.first_byte_from = 0;
        }
        slot.received += n as u64;
        counts.bytes += n as u64;
        slot.last_progress = turn;
        let complete = slot.received / plan.message_size;
        while slot.done < complete {
            let at = s * plan.pipeline as usize + (slot.done % plan.pipeline) as usize;
            Self::complete((sent_at, sent_actual), at, rec, counts, slot, turn);
            *outstanding -= 1;
        }
        Ok(())
    }

    /// Message `slot.done` came back whole at `turn`: times it (from its
    /// entry `at` of `sent_at`, and in the open loop of `sent_actual`) and
    /// counts it. The caller takes it off the loop's outstanding count.
    pub(super) fn complete(
        (sent_at, sent_actual): (&[u64], &[u64]),
        at: usize,
        rec: &mut LoopRecording,
        counts: &mut Counts,
        slot: &mut Slot,
        turn: u64,
    ) {
        rec.record(Series::Rtt, turn.saturating_sub(sent_at[at]));
        if let Some(actual) = sent_actual.get(at) {
            rec.record(Series::RttUncorrected, turn.saturating_sub(*actual));
        }
        slot.done += 1;
        counts.messages += 1;
    }

    /// Closes slot `s` if it is finished; otherwise issues what it may send
    /// and writes what is pending, adjusting WRITABLE interest.
    pub(super) fn pump(&mut self, core: &mut Core, s: usize) {
        let draining = matches!(self.phase, Phase::Drain { .. });
        let slot = &self.slots[s];
        if slot.done >= slot.quota || (draining && slot.outstanding() == 0) {
            return self.end(core, s, End::Done);
        }
        if core.plan.stages.is_some() && !core.active(s) {
            // Out of the stages' count: no new message; closed once the
            // last echo is in (and reopened when the count comes back).
            if slot.outstanding() == 0 {
                return self.end(core, s, End::Done);
            }
        } else if self.sending(core) {
            self.issue(core, s);
        }
        let pending = match self.flush(core, s) {
            Ok(pending) => pending,
            Err(e) => {
                let message = format!("write {}: {e}", core.plan.addr);
                return self.end(core, s, End::Unexpected(message));
            }
        };
        let slot = &mut self.slots[s];
        if let Some(stream) = slot.stream.as_mut() {
            let registry = core.poll.registry();
            let writable = pending || stream.wants_write();
            let socket = stream.socket_mut();
            if let Err(e) =
                rules::update_interest(registry, socket, Token(s), &mut slot.writable, writable)
            {
                self.end(core, s, End::Unexpected(format!("reregister: {e}")));
            }
        }
    }

    /// Hands slot `s` as many new messages as its window (pipeline), its
    /// quota and, in the open loop, its schedule allow.
    fn issue(&mut self, core: &mut Core, s: usize) {
        let now = core.now();
        let k = core.plan.pipeline;
        let base = s * k as usize;
        let slot = &mut self.slots[s];
        while slot.issued < slot.quota && slot.issued < slot.done + k {
            let timer = SendTimer {
                origin: slot.rate_origin,
                socket: s,
                generation: slot.generation,
                armed: &mut slot.timer_armed,
            };
            let Some(stamp) = core.send_stamp(now, slot.issued, timer) else {
                break;
            };
            if slot.issued == slot.done {
                // Nothing was in flight: the wait for an echo starts now.
                slot.last_progress = now;
            }
            let at = base + (slot.issued % k) as usize;
            self.sent_at[at] = stamp;
            if let Some(actual) = self.sent_actual.get_mut(at) {
                *actual = now;
            }
            slot.issued += 1;
            self.outstanding += 1;
        }
    }

    /// Writes slot `s`'s pending stream bytes straight from the payload
    /// table. Returns whether some are still pending (the socket is full).
    fn flush(&mut self, core: &mut Core, s: usize) -> io::Result<bool> {
        if core.plan.exchange.is_some() {
            return self.flush_requests(core, s);
        }
        let plan = &core.plan;
        let slot = &mut self.slots[s];
        let Some(stream) = slot.stream.as_mut() else {
            return Ok(false);
        };
        stream.flush()?;
        if stream.wants_write() {
            return Ok(true);
        }
        let target = slot.issued * plan.message_size;
        while slot.sent < target {
            let len = (target - slot.sent).min(PERIOD as u64) as usize;
            let n = stream.write(plan.payload.slice(slot.start, slot.sent, len))?;
            slot.sent += n as u64;
            if n < len {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
