//! Traffic on an open connection: issuing messages (as the window, the quota
//! and, in the open loop, the schedule allow), writing them straight from
//! the payload table, and reading, verifying and timing their echoes.

use std::cmp::Reverse;
use std::io::{self, Read};

use mio::Token;

use echoloop::rules;

use super::end::End;
use super::phase::Phase;
use super::Worker;
use crate::conn::State;
use crate::payload::PERIOD;
use crate::record::Series;

/// Open loop: how early a message may go out. `poll` sleeps in whole
/// milliseconds (mio rounds up), so waiting for the exact send time would
/// send up to 1 ms late and add that to the latency. We wake up to 1 ms
/// before, send what is due by then, and time an early message from its
/// real send time (a late one, always from its schedule).
pub(crate) const LOOKAHEAD_NS: u64 = 1_000_000;

impl Worker {
    /// Open loop: pumps every connection whose next send time has come.
    pub(super) fn fire_rate_timers(&mut self, now: u64) {
        while let Some(&Reverse((at, s, generation))) = self.rate_timers.peek() {
            if at > now {
                break;
            }
            self.rate_timers.pop();
            let slot = &mut self.slots[s];
            if slot.generation == generation && slot.state == State::Open {
                slot.timer_armed = false;
                self.pump(s);
            }
        }
    }

    /// Reads slot `s` until drained, verifying and timing the echoes.
    /// `unproven`: the event said a short read proves nothing
    /// ([`rules::short_read_unproven`]), so read on until `WouldBlock` or
    /// the end of stream itself. Returns whether the connection is still
    /// open.
    pub(super) fn read(&mut self, s: usize, unproven: bool, turn: u64) -> bool {
        let ending = loop {
            let Some(stream) = self.slots[s].stream.as_mut() else {
                return false;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    let slot = &self.slots[s];
                    break End::Unexpected(format!(
                        "read {}: closed by the server with {} of {} sent bytes echoed",
                        self.plan.addr, slot.received, slot.sent
                    ));
                }
                Ok(n) => {
                    if let Err(wrong) = self.take_echo(s, n, turn) {
                        break wrong;
                    }
                    // Finished (the caller closes it), or drained.
                    let slot = &self.slots[s];
                    if slot.done >= slot.quota
                        || rules::read_proves_drained(n, self.buf.len(), unproven)
                    {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break End::Unexpected(format!("read {}: {e}", self.plan.addr)),
            }
        };
        self.end(s, ending);
        false
    }

    /// Verifies the `n` bytes just read into the buffer as the next part of
    /// slot `s`'s echo, and times every message they complete. A wrong or
    /// surplus byte is the verification error returned.
    fn take_echo(&mut self, s: usize, n: usize, turn: u64) -> Result<(), End> {
        let Worker {
            plan,
            slots,
            sent_at,
            sent_actual,
            buf,
            rec,
            counts,
            outstanding,
            ..
        } = self;
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
        let k = plan.pipeline;
        let base = s * k as usize;
        let complete = slot.received / plan.message_size;
        while slot.done < complete {
            let at = base + (slot.done % k) as usize;
            rec.record(Series::Rtt, turn.saturating_sub(sent_at[at]));
            if let Some(actual) = sent_actual.get(at) {
                rec.record(Series::RttUncorrected, turn.saturating_sub(*actual));
            }
            slot.done += 1;
            *outstanding -= 1;
            counts.messages += 1;
        }
        Ok(())
    }

    /// Closes slot `s` if it is finished; otherwise issues what it may send
    /// and writes what is pending, adjusting WRITABLE interest.
    pub(super) fn pump(&mut self, s: usize) {
        let draining = matches!(self.phase, Phase::Drain { .. });
        let slot = &self.slots[s];
        if slot.done >= slot.quota || (draining && slot.outstanding() == 0) {
            return self.end(s, End::Done);
        }
        if self.sending() {
            self.issue(s);
        }
        let pending = match self.flush(s) {
            Ok(pending) => pending,
            Err(e) => {
                let message = format!("write {}: {e}", self.plan.addr);
                return self.end(s, End::Unexpected(message));
            }
        };
        let Worker { slots, poll, .. } = self;
        let slot = &mut slots[s];
        if let Some(stream) = slot.stream.as_mut() {
            let registry = poll.registry();
            if let Err(e) =
                rules::update_interest(registry, stream, Token(s), &mut slot.writable, pending)
            {
                self.end(s, End::Unexpected(format!("reregister: {e}")));
            }
        }
    }

    /// Hands slot `s` as many new messages as its window (pipeline), its
    /// quota and, in the open loop, its schedule allow.
    fn issue(&mut self, s: usize) {
        let now = self.now();
        let Worker {
            plan,
            slots,
            sent_at,
            sent_actual,
            rate_timers,
            outstanding,
            ..
        } = self;
        let slot = &mut slots[s];
        let k = plan.pipeline;
        let base = s * k as usize;
        while slot.issued < slot.quota && slot.issued < slot.done + k {
            let stamp = match plan.rate_interval_ns {
                None => now,
                Some(interval) => {
                    let due = slot
                        .rate_origin
                        .saturating_add(slot.issued.saturating_mul(interval));
                    if due > now.saturating_add(LOOKAHEAD_NS) {
                        if !slot.timer_armed {
                            rate_timers.push(Reverse((due - LOOKAHEAD_NS, s, slot.generation)));
                            slot.timer_armed = true;
                        }
                        break;
                    }
                    // Late (the window was full, or we were busy): timed from
                    // the schedule, so the delay counts against the server.
                    due.min(now)
                }
            };
            if slot.issued == slot.done {
                // Nothing was in flight: the wait for an echo starts now.
                slot.last_progress = now;
            }
            let at = base + (slot.issued % k) as usize;
            sent_at[at] = stamp;
            if let Some(actual) = sent_actual.get_mut(at) {
                *actual = now;
            }
            slot.issued += 1;
            *outstanding += 1;
        }
    }

    /// Writes slot `s`'s pending stream bytes straight from the payload
    /// table. Returns whether some are still pending (the socket is full).
    fn flush(&mut self, s: usize) -> io::Result<bool> {
        let plan = &self.plan;
        let slot = &mut self.slots[s];
        let Some(stream) = slot.stream.as_mut() else {
            return Ok(false);
        };
        let target = slot.issued * plan.message_size;
        while slot.sent < target {
            let len = (target - slot.sent).min(PERIOD as u64) as usize;
            let n =
                rules::write_until_full(&*stream, plan.payload.slice(slot.start, slot.sent, len))?;
            slot.sent += n as u64;
            if n < len {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
