//! The internals the fuzz targets under `fuzz/` drive, and nothing else
//! (`fuzz/README.md` says how to run them). Built only with the `fuzzing`
//! feature and hidden from the docs: this is not an API, and it changes
//! whenever the internals do.

use std::fmt::Debug;

/// The `--metrics` request reader.
pub mod metrics {
    use super::Debug;
    use crate::metrics::http;

    /// The longest request head the reader takes before it answers 431.
    pub const MAX_HEAD: usize = http::MAX_HEAD;

    /// What the request head received so far asks for (its `Debug` form
    /// names the answer), or `None` while it is incomplete.
    pub fn parse(head: &[u8]) -> Option<impl Debug + PartialEq + Copy> {
        http::parse(head)
    }
}

/// One server connection, served as the loop serves it, over a transport
/// the caller provides (and scripts).
pub mod connection {
    use std::io;

    use mio::{Poll, Token};

    use crate::connection::{Connection, Hints, Io, Status};
    use crate::pending::BufferPool;
    use crate::stats::{Counters, Stats};
    use crate::transport::Transport;

    /// What one turn of serving left.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Served {
        /// The peer is done and everything was echoed: the loop closes it.
        pub finished: bool,
        /// The read budget ran out: the loop serves it again next turn.
        pub read_again: bool,
        /// Some byte moved (the idle timer's activity).
        pub moved: bool,
    }

    /// A connection, the poll it is registered with, and what the loop
    /// lends it: its read buffer, a buffer pool and counters.
    #[derive(Debug)]
    pub struct Driver<T: Transport> {
        /// `None` once closed.
        conn: Option<Connection<T>>,
        /// The connection's own poll (its socket is registered there).
        poll: Poll,
        /// The loop's read buffer.
        buf: Vec<u8>,
        /// Where pending output comes from.
        pool: BufferPool,
        /// Bytes in and out, pending bytes.
        counters: Counters,
        /// `--max-pending`.
        max_pending: usize,
        /// Reads per turn.
        reads_per_turn: usize,
        /// False once shutdown began.
        reading: bool,
    }

    impl<T: Transport> Driver<T> {
        /// Registers `stream` as a freshly accepted connection.
        pub fn new(
            stream: T,
            read_buffer: usize,
            max_pending: usize,
            reads_per_turn: usize,
        ) -> io::Result<Self> {
            let poll = Poll::new()?;
            let conn = Connection::register(stream, poll.registry(), Token(0))?;
            Ok(Driver {
                conn: Some(conn),
                poll,
                buf: vec![0; read_buffer.max(1)],
                pool: BufferPool::new(1),
                counters: Counters::default(),
                max_pending,
                reads_per_turn: reads_per_turn.max(1),
                reading: true,
            })
        }

        /// Serves one event with these hints (all false: a turn from the
        /// read-again queue). An error closes the connection, as the loop
        /// does. Serving a closed connection does nothing.
        pub fn serve(
            &mut self,
            readable: bool,
            writable: bool,
            short_read_unproven: bool,
        ) -> io::Result<Served> {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(Served {
                    finished: true,
                    read_again: false,
                    moved: false,
                });
            };
            let hints = Hints {
                readable,
                writable,
                short_read_unproven,
            };
            let mut io = Io {
                buf: &mut self.buf,
                pool: &mut self.pool,
                counters: &self.counters,
                max_pending: self.max_pending,
                reads_per_turn: self.reads_per_turn,
                reading: self.reading,
            };
            match conn.serve(hints, self.poll.registry(), Token(0), &mut io) {
                Ok((status, moved)) => Ok(Served {
                    finished: status == Status::Finished,
                    read_again: status == Status::ReadAgain,
                    moved,
                }),
                Err(e) => {
                    self.close();
                    Err(e)
                }
            }
        }

        /// Begins the graceful shutdown: flush, FIN, discard until the
        /// peer's FIN.
        pub fn shut_down(&mut self) {
            self.reading = false;
        }

        /// Bytes the connection owes its peer and holds.
        pub fn pending_len(&self) -> usize {
            self.conn.as_ref().map_or(0, Connection::pending_len)
        }

        /// The counters (bytes in and out, the pending gauge).
        pub fn stats(&self) -> Stats {
            self.counters.reader().snapshot()
        }

        /// Whether it is still open.
        pub fn is_open(&self) -> bool {
            self.conn.is_some()
        }

        /// Closes it (the idle timer, an error, or the end).
        pub fn close(&mut self) {
            if let Some(conn) = self.conn.take() {
                conn.close(&mut self.pool, &self.counters);
            }
        }
    }
}
