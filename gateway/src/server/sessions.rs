//! The session table: every connection's [`Session`], the routes that address them (by
//! account, by origin), and the two things every part of the loop does to a session: queue a
//! message for it ([`Sessions::send`]) and start closing it ([`Sessions::end`]).
//!
//! **Invariants**: a message is queued only for an open session; a session whose queued
//! output exceeds `outbound_bytes_max` is dropped at once as a slow reader; a session that
//! starts closing with cancel-on-disconnect queues exactly one CancelAll for its account
//! (with a reserved key, unique for the gateway's life).
//!
//! **Performance**: `send` encodes straight into the session's output buffer; the session is
//! flushed once per loop iteration (the dirty list).

use super::session::{Ending, Role, Session};
use super::{GatewayStats, LINGER};
use crate::protocol::{Message, ProtocolCode, ProtocolError, RESERVED_KEY_BIT};
use kuku_engine::{AccountId, ClientOrderId, Command};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The session table and everything a send or a close touches.
pub(super) struct Sessions {
    pub slots: Vec<Option<Session>>,
    pub free: Vec<usize>,
    pub open_count: usize,
    /// Sessions with queued output to flush this iteration.
    pub dirty: Vec<usize>,
    /// Sessions that are closing or dead, checked by `reap`.
    pub ending: Vec<usize>,
    /// Commands the gateway itself must submit (cancel-on-disconnect), retried while Busy.
    pub internal: VecDeque<(u64, Command)>,
    pub last_internal_key: u64,
    pub outbound_bytes_max: usize,
    pub outbound_peak: usize,
    pub now: Instant,
    pub stats: Arc<GatewayStats>,
}

impl Sessions {
    pub fn new(outbound_bytes_max: usize, stats: Arc<GatewayStats>) -> Sessions {
        Sessions {
            slots: Vec::new(),
            free: Vec::new(),
            open_count: 0,
            dirty: Vec::new(),
            ending: Vec::new(),
            internal: VecDeque::new(),
            last_internal_key: 0,
            outbound_bytes_max,
            outbound_peak: 0,
            now: Instant::now(),
            stats,
        }
    }

    #[inline]
    pub fn get(&mut self, i: usize) -> Option<&mut Session> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Queues `message` for session `i` (an open one); a session whose queue overflows is
    /// aborted as a slow reader.
    #[inline]
    pub fn send(&mut self, i: usize, message: &Message) {
        let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !s.is_open() {
            return;
        }
        message.encode(&mut s.out);
        s.last_send = self.now;
        let queued = s.queued_bytes();
        if queued > self.outbound_bytes_max {
            GatewayStats::add(&self.stats.slow_readers);
            tracing::debug!(origin = s.origin, queued, "A slow reader was disconnected.");
            self.end(i, Ending::Abort);
            return;
        }
        self.outbound_peak = self.outbound_peak.max(queued);
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Starts closing session `i`; cancel-on-disconnect is queued here.
    pub fn end(&mut self, i: usize, ending: Ending) {
        let now = self.now;
        let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !s.is_open() {
            if ending == Ending::Abort {
                s.dead = true;
            }
            return;
        }
        match ending {
            Ending::Graceful(message) => {
                if matches!(message, Message::ProtocolError(_)) {
                    GatewayStats::add(&self.stats.protocol_errors);
                }
                message.encode(&mut s.out);
                s.closing_until = Some(now + LINGER);
                s.inbound = Vec::new();
                if !s.dirty {
                    s.dirty = true;
                    self.dirty.push(i);
                }
            }
            Ending::Abort => s.dead = true,
        }
        if let Role::Trading {
            account,
            cancel_on_disconnect: true,
            ..
        } = s.role
        {
            let key = (now_unix_ns() | RESERVED_KEY_BIT).max(self.last_internal_key + 1);
            self.last_internal_key = key;
            let cancel = Command::CancelAll {
                account,
                request_id: ClientOrderId(key),
                symbol: None,
            };
            self.internal.push_back((s.origin, cancel));
            GatewayStats::add(&self.stats.cancel_on_disconnect);
        }
        self.ending.push(i);
    }

    /// Sends ProtocolError `code` (about message type `msg_type`) and closes session `i`.
    pub fn protocol_error(&mut self, i: usize, code: ProtocolCode, msg_type: u8) {
        let m = ProtocolError {
            code: code.code(),
            msg_type,
        };
        self.end(i, Ending::Graceful(m.into()));
    }
}

/// Where events and replies go.
#[derive(Default)]
pub(super) struct Routes {
    pub by_account: FxHashMap<AccountId, Vec<usize>>,
    pub by_origin: FxHashMap<u64, usize>,
}
