//! Requests of logged-in sessions: each goes through the translation layer
//! ([`crate::translate`]) and becomes a submitted command, an answered query, or an
//! immediate refusal; a message the session may not send closes it (`9056`).
//!
//! Trading requests (orders, cancels, modifies and queries alike) first take a token of the
//! account's request budget (`9002 RateLimited` when there is none); a command the node's
//! input ring cannot take is refused with `9001 Busy`. Admin requests are answered in order,
//! one AdminResult each (or TokenIssued), when their command's last event arrives.
//!
//! **Invariants**: a refused request never reaches the node (no journal entry, no key used).

use super::GatewayStats;
use super::NodeLink;
use super::event_loop::EventLoop;
use super::session::{Role, Session};
use crate::protocol::{GatewayCode, Message, ProtocolCode, TokenIssued};
use crate::translate::{
    self, AccountBudget, AdminRequest, Query, Refusal, Request, Scope, admin_rejection,
    trading_rejection,
};
use kuku_engine::{AccountId, RejectReason};

impl<L: NodeLink> EventLoop<L> {
    pub(super) fn trading_request(
        &mut self,
        i: usize,
        account: AccountId,
        budget: &AccountBudget,
        message: Message,
    ) {
        let ty = message.msg_type();
        // Only a trading request has a refusal reply; anything else is not the session's.
        if trading_rejection(&message, 0).is_none() {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::UnexpectedMessage, ty);
        }
        GatewayStats::add(&self.stats.requests);
        let refuse = |code: u16| trading_rejection(&message, code).unwrap_or(message);
        if !budget.try_take(self.sessions.now) {
            GatewayStats::add(&self.stats.rate_limited);
            return self
                .sessions
                .send(i, &refuse(GatewayCode::RateLimited.code()));
        }
        let origin = self.sessions.get(i).map_or(0, |s| s.origin);
        match translate::trading_request(account, message, &self.mirror.symbols) {
            Ok(Request::Query(q)) => self.answer(i, q, Scope::Account(account)),
            Ok(Request::Command(command)) => {
                if self.link.submit(origin, command).is_err() {
                    GatewayStats::add(&self.stats.busy);
                    self.sessions.send(i, &refuse(GatewayCode::Busy.code()));
                }
            }
            Err(Refusal::Reject(code)) => self.sessions.send(i, &refuse(code)),
            Err(Refusal::NotAllowed) => {
                self.sessions
                    .protocol_error(i, ProtocolCode::UnexpectedMessage, ty)
            }
        }
    }

    pub(super) fn admin_request(&mut self, i: usize, message: Message) {
        let ty = message.msg_type();
        let request_id = translate::requests::admin_request_id(&message);
        let (request_id, command) = match translate::admin_request(message, &self.mirror.symbols) {
            Ok(AdminRequest::Query(q)) => return self.answer(i, q, Scope::Any),
            Ok(AdminRequest::IssueToken(t)) => {
                let reply: Message = if self.mirror.read_model.accounts.contains_key(&t.account) {
                    TokenIssued {
                        request_id: t.request_id,
                        account: t.account,
                        token: self.config.secret.account_token(t.account),
                    }
                    .into()
                } else {
                    admin_rejection(t.request_id, ty, RejectReason::UnknownAccount.code())
                };
                return self.sessions.send(i, &reply);
            }
            Ok(AdminRequest::Command {
                request_id,
                command,
            }) => (request_id, command),
            Err(Refusal::Reject(code)) => {
                let reply = admin_rejection(request_id.unwrap_or(0), ty, code);
                return self.sessions.send(i, &reply);
            }
            Err(Refusal::NotAllowed) => {
                return self
                    .sessions
                    .protocol_error(i, ProtocolCode::UnexpectedMessage, ty);
            }
        };
        let origin = self.sessions.get(i).map_or(0, |s| s.origin);
        match self.link.submit(origin, command) {
            Ok(()) => {
                if let Some(Session {
                    role: Role::Admin { pending, .. },
                    ..
                }) = self.sessions.get(i)
                {
                    pending.push_back((request_id, ty));
                }
            }
            Err(_) => {
                GatewayStats::add(&self.stats.busy);
                let reply = admin_rejection(request_id, ty, GatewayCode::Busy.code());
                self.sessions.send(i, &reply);
            }
        }
    }

    /// Answers a query from the mirror, straight into the session's output.
    fn answer(&mut self, i: usize, query: Query, scope: Scope) {
        let (mirror, sessions) = (&self.mirror, &mut self.sessions);
        translate::answer(
            query,
            scope,
            &mirror.read_model,
            &mirror.symbols,
            &mut |m| sessions.send(i, &m),
        );
    }
}
