//! One client connection: its socket, buffers, login state (with the account's request
//! budget) and timers.
//!
//! **Invariants**
//! - `out[out_pos..]` holds the bytes not yet written; `out.len() - out_pos` never exceeds
//!   the configured bound by more than one frame (the frame that overflowed it closes the
//!   session).
//! - `inbound` holds less than one frame after each parse (whole frames are consumed).
//! - A closing session takes no requests; it only flushes what is queued, then shuts its
//!   write side and waits (a bounded linger) for the peer to close.

use crate::protocol::Message;
use crate::translate::{AccountBudget, AdminOutcome};
use kuku_engine::AccountId;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

/// What a session is.
pub(super) enum Role {
    /// Connected, waiting for Login.
    Connected,
    Trading {
        account: AccountId,
        cancel_on_disconnect: bool,
        /// The account's request budget, shared with its other sessions and doors.
        budget: Arc<AccountBudget>,
    },
    Admin {
        /// Requests submitted and not yet answered: (request_id, request type), in order.
        pending: VecDeque<(u64, u8)>,
        /// What the events of the oldest pending request said so far.
        result: AdminOutcome,
    },
}

/// How a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// Send this message, flush, shut the write side, linger for the peer's close.
    Graceful(Message),
    /// Drop the connection now (peer gone, I/O error, slow reader).
    Abort,
}

pub(super) struct Session {
    pub stream: TcpStream,
    pub origin: u64,
    pub role: Role,
    pub inbound: Vec<u8>,
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub connected_at: Instant,
    pub last_recv: Instant,
    pub last_send: Instant,
    /// Set when the session started closing: the linger deadline.
    pub closing_until: Option<Instant>,
    pub write_shut: bool,
    /// Remove at the end of this loop iteration.
    pub dead: bool,
    /// Queued in the loop's flush list.
    pub dirty: bool,
    /// Queued in the loop's read list (input may remain unread).
    pub ready: bool,
}

impl Session {
    pub fn new(stream: TcpStream, origin: u64, now: Instant) -> Session {
        Session {
            stream,
            origin,
            role: Role::Connected,
            inbound: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            connected_at: now,
            last_recv: now,
            last_send: now,
            closing_until: None,
            write_shut: false,
            dead: false,
            dirty: false,
            ready: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.closing_until.is_none() && !self.dead
    }

    pub fn account(&self) -> Option<AccountId> {
        match self.role {
            Role::Trading { account, .. } => Some(account),
            _ => None,
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued bytes until the socket would block. `Err` on a broken connection.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            // Give back memory a burst (e.g. a replay) made the buffer grow to.
            if self.out.capacity() > 256 * 1024 {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.out_pos >= 64 * 1024 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        if self.closing_until.is_some() && self.out_pos == self.out.len() && !self.write_shut {
            self.write_shut = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }
}
