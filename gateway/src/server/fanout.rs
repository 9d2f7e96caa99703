//! Fan-out: each output event of the node, translated by the mirror, goes to every session
//! of the accounts it concerns, and completes the admin request that caused it.
//!
//! **Invariants**: a sequenced message (`acct_seq > 0`) goes to every open session of its
//! account, in output order; an unsequenced one (a reject for a command without a valid
//! account) only to the trading session that sent the command; an admin session gets one
//! AdminResult per submitted request, in submission order, when the command's last event
//! arrives.
//!
//! **Performance**: per event one mirror update and one encode per recipient session.

use super::OutputRef;
use super::mirror::Mirror;
use super::session::{Role, Session};
use super::sessions::{Routes, Sessions};
use crate::translate::AdminOutcome;

/// Handles one output event: the mirror, the account's sessions, the origin's admin reply.
pub(super) fn on_output(
    mirror: &mut Mirror,
    sessions: &mut Sessions,
    routes: &Routes,
    out: OutputRef<'_>,
) {
    let translated = mirror.apply(out.seq, out.ts, out.event);
    for a in translated.iter().flatten() {
        if a.acct_seq > 0 {
            if let Some(list) = routes.by_account.get(&a.account) {
                for &i in list {
                    sessions.send(i, &a.message);
                }
            }
        } else if let Some(&i) = routes.by_origin.get(&out.origin)
            && sessions
                .get(i)
                .is_some_and(|s| matches!(s.role, Role::Trading { .. }))
        {
            // A reject without a sequence number (no valid account): only the sender hears.
            sessions.send(i, &a.message);
        }
    }
    if out.origin == 0 {
        return;
    }
    let Some(&i) = routes.by_origin.get(&out.origin) else {
        return;
    };
    let reply = match sessions.get(i) {
        Some(Session {
            role: Role::Admin { pending, result },
            ..
        }) if !pending.is_empty() => {
            result.accumulate(out.event);
            if out.last {
                let (request_id, ty) = pending.pop_front().unwrap_or((0, 0));
                let r = result.result(request_id, ty);
                *result = AdminOutcome::default();
                Some(r)
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some(r) = reply {
        sessions.send(i, &r.into());
    }
}
