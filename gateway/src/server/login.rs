//! Login: a connection becomes a trading session (an account and its token) or an admin
//! session (the admin token), or is refused with one LoginRejected and closed.
//!
//! Checks, in order: the node serves (else `9014 NotPrimary`); the protocol version (else
//! `9015 UnsupportedVersion`); the flags (unknown bits: ProtocolError `9054`); the token
//! (`9010 InvalidToken`); a `last_seen_acct_seq` that an asynchronous failover cut off this
//! node's history gets `LoginDiverged` (`9016 HistoryDiverged`, with the seq to replay
//! from); the account exists (`3001`); `last_seen_acct_seq` is not ahead (`9011 SeqAhead`). A trading session then gets `LoginAccepted`, the replay, and its
//! account's request budget.
//!
//! **Invariants**: the replay sent is a contiguous run of the newest held messages after
//! `last_seen_acct_seq`, at most half the outbound bound; it is queued before any live
//! message, so the client sees no gap and no duplicate between the two.

use super::GatewayStats;
use super::NodeLink;
use super::event_loop::EventLoop;
use super::session::{Ending, Role};
use crate::auth::tokens_equal;
use crate::protocol::{
    FLAG_CANCEL_ON_DISCONNECT, FLAG_NO_REPLAY, GatewayCode, Login, LoginAccepted, LoginDiverged,
    LoginRejected, Message, PROTOCOL_VERSION, ProtocolCode,
};
use crate::translate::AdminOutcome;
use kuku_engine::{AccountId, RejectReason};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

impl<L: NodeLink> EventLoop<L> {
    fn refuse_login(&mut self, i: usize, code: u16) {
        GatewayStats::add(&self.stats.login_rejects);
        let m = LoginRejected { code };
        self.sessions.end(i, Ending::Graceful(m.into()));
    }

    pub(super) fn login(&mut self, i: usize, login: Login) {
        let origin = self.sessions.get(i).map_or(0, |s| s.origin);
        if !self.config.serving.load(Ordering::Acquire) {
            return self.refuse_login(i, GatewayCode::NotPrimary.code());
        }
        if login.version != PROTOCOL_VERSION {
            return self.refuse_login(i, GatewayCode::UnsupportedVersion.code());
        }
        if login.account.0 == 0 {
            return self.admin_login(i, login, origin);
        }
        if login.flags & !(FLAG_CANCEL_ON_DISCONNECT | FLAG_NO_REPLAY) != 0 {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::InvalidValue, Login::TYPE);
        }
        let account = login.account;
        // A client whose history an asynchronous failover cut is told where to resume.
        if self.config.secret.verify(account, &login.token)
            && let Some(replay_from_seq) = self
                .mirror
                .history
                .diverged(account, login.last_seen_acct_seq)
        {
            GatewayStats::add(&self.stats.login_rejects);
            let m = LoginDiverged {
                code: GatewayCode::HistoryDiverged.code(),
                replay_from_seq,
            };
            return self.sessions.end(i, Ending::Graceful(m.into()));
        }
        let reject = if !self.config.secret.verify(account, &login.token) {
            Some(GatewayCode::InvalidToken.code())
        } else {
            match self.mirror.read_model.accounts.get(&account) {
                None => Some(RejectReason::UnknownAccount.code()),
                Some(a) if login.last_seen_acct_seq > a.acct_seq => {
                    Some(GatewayCode::SeqAhead.code())
                }
                Some(_) => None,
            }
        };
        if let Some(code) = reject {
            return self.refuse_login(i, code);
        }
        let acct_seq_last = self
            .mirror
            .read_model
            .accounts
            .get(&account)
            .map_or(0, |a| a.acct_seq);
        // Replay the newest held messages that fit in half the outbound bound; older ones
        // are a gap the client sees in `replay_first_seq`.
        let held: Vec<(u64, Message)> = if login.flags & FLAG_NO_REPLAY != 0 {
            Vec::new()
        } else {
            self.mirror
                .history
                .after(account, login.last_seen_acct_seq)
                .map(|(s, m)| (s, *m))
                .collect()
        };
        let budget = self.config.outbound_bytes_max / 2;
        let mut bytes = 0;
        let mut first = held.len();
        while first > 0 && bytes + held[first - 1].1.frame_len() <= budget {
            bytes += held[first - 1].1.frame_len();
            first -= 1;
        }
        let replay = &held[first..];
        let accepted = LoginAccepted {
            account,
            session_id: origin,
            acct_seq_last,
            replay_first_seq: replay.first().map_or(0, |(s, _)| *s),
            replay_count: replay.len() as u32,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u32,
            idle_timeout_ms: self.config.idle_timeout.as_millis() as u32,
            rate_per_s: self.rate_limits.rate_per_s(),
            burst: self.rate_limits.burst(),
        };
        self.sessions.send(i, &accepted.into());
        for (_, m) in replay {
            self.sessions.send(i, m);
        }
        let budget = self.rate_limits.budget(account, self.sessions.now);
        if let Some(s) = self.sessions.get(i) {
            s.role = Role::Trading {
                account,
                cancel_on_disconnect: login.flags & FLAG_CANCEL_ON_DISCONNECT != 0,
                budget,
            };
            self.routes.by_account.entry(account).or_default().push(i);
            GatewayStats::add(&self.stats.logins);
        }
    }

    fn admin_login(&mut self, i: usize, login: Login, origin: u64) {
        if !tokens_equal(&self.config.admin_token, &login.token) {
            return self.refuse_login(i, GatewayCode::InvalidToken.code());
        }
        if login.flags != 0 {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::InvalidValue, Login::TYPE);
        }
        // An admin session has no account, no replay and no request budget (rate 0 and
        // burst 0 say "not limited").
        let accepted = LoginAccepted {
            account: AccountId(0),
            session_id: origin,
            acct_seq_last: 0,
            replay_first_seq: 0,
            replay_count: 0,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u32,
            idle_timeout_ms: self.config.idle_timeout.as_millis() as u32,
            rate_per_s: 0,
            burst: 0,
        };
        self.sessions.send(i, &accepted.into());
        if let Some(s) = self.sessions.get(i) {
            s.role = Role::Admin {
                pending: VecDeque::new(),
                result: AdminOutcome::default(),
            };
            GatewayStats::add(&self.stats.logins);
        }
    }
}
