//! Operator requests on the replication address: `kuku promote` and `kuku replication
//! status` (client side), and the promotion itself (node side).
//!
//! Promotion of a standby: stop the receiver, let the pipeline journal and apply everything
//! received, raise the epoch and persist it (with the seq it starts at), journal a
//! `BeginEpoch` as the epoch's first command (it opens the new epoch's segment and moves every
//! id counter and account sequence number into the epoch's range, so nothing an old primary
//! issued in a lost tail is ever issued again, `kuku_engine::epochs`) and wait until it is
//! applied, become primary (the gateway takes logins), and journal a `TakeSnapshot`: its
//! snapshot records the state at the promotion point.
//!
//! **Invariants**: a diverged standby is never promoted; the epoch file is fsynced before the
//! node accepts a single order in the new epoch.

use super::wire::{self, Msg};
use super::{Replication, Role, StatusReport};
use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn request(addr: &str, msg: &Msg, timeout: Duration) -> anyhow::Result<(bool, String)> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an IP:port address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot reach the replication address {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    wire::write_msg(&mut stream, msg)?;
    match wire::read_msg(&mut stream)? {
        Msg::Reply { ok, text } => Ok((ok, text)),
        Msg::Refused { reason, .. } => Ok((false, reason)),
        other => bail!("{addr} answered with {other:?}"),
    }
}

/// The replication status of the node at `addr` (its replication address).
pub fn status(addr: &str, timeout: Duration) -> anyhow::Result<StatusReport> {
    let (ok, text) = request(addr, &Msg::Status, timeout)?;
    if !ok {
        bail!("{addr} refused the status request: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{addr} sent a bad status: {text}"))
}

/// Promotes the standby at `addr`; returns its answer (JSON with the new epoch and seq).
pub fn promote(addr: &str, admin_token: [u8; 32]) -> anyhow::Result<String> {
    let (ok, text) = request(
        addr,
        &Msg::Promote { token: admin_token },
        Duration::from_secs(30),
    )?;
    if !ok {
        bail!("{addr} refused the promotion: {text}");
    }
    Ok(text)
}

fn tokens_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The node side of `Promote`: (accepted, answer).
pub(crate) fn promote_here(repl: &Arc<Replication>, token: &[u8; 32]) -> (bool, String) {
    if !tokens_equal(token, &repl.admin_token) {
        return (false, "unauthorized: the admin token does not match".into());
    }
    if repl.diverged.load(Ordering::Acquire) {
        return (
            false,
            "unpromotable: this node's state hash once differed from its primary's \
             (see the DIVERGED file in its data directory); promote another standby"
                .into(),
        );
    }
    match repl.role() {
        Role::Primary => {
            return (
                true,
                format!("{{\"epoch\":{},\"already\":true}}", repl.epoch()),
            );
        }
        Role::Fenced => {
            return (
                false,
                "this node is fenced (an old primary): restart it as a standby instead".into(),
            );
        }
        Role::Promoting => return (false, "a promotion is already in progress".into()),
        Role::Standby => {}
    }
    match promote_standby(repl) {
        Ok(text) => (true, text),
        Err(e) => {
            repl.set_role(Role::Standby);
            (false, format!("the promotion failed: {e:#}"))
        }
    }
}

fn promote_standby(repl: &Arc<Replication>) -> anyhow::Result<String> {
    let started = Instant::now();
    repl.set_role(Role::Promoting);
    repl.receiver_stop.store(true, Ordering::Release);
    if let Some(up) = repl.links.lock().expect("links lock").upstream.take() {
        let _ = up.shutdown(std::net::Shutdown::Both);
    }
    wait_until(Duration::from_secs(10), || {
        !repl.receiver_running.load(Ordering::Acquire)
    })
    .context("the receiver did not stop")?;
    let received = repl.received_seq.load(Ordering::Acquire);
    let status = repl.pipeline.get().context("the pipeline is not running")?;
    wait_until(Duration::from_secs(30), || {
        status.applied_seq.load(Ordering::Acquire) >= received
    })
    .context("the pipeline did not apply what was received")?;
    let mut epochs = repl.epochs.lock().expect("epochs lock");
    let epoch = epochs.epoch.max(repl.epoch()) + 1;
    let mut next = epochs.clone();
    next.epoch = epoch;
    next.history.push((epoch, received + 1));
    next.store(&repl.journal_dir)?;
    *epochs = next;
    drop(epochs);
    repl.epoch.store(epoch, Ordering::Release);
    repl.links.lock().expect("links lock").sent_seq = received;
    // The epoch's first command, before any client's: ids continue in the epoch's range.
    if !repl.submit(kuku_engine::Command::BeginEpoch { epoch }) {
        bail!("the epoch's first command could not be submitted (the input ring is full)");
    }
    wait_until(Duration::from_secs(30), || {
        status.applied_seq.load(Ordering::Acquire) > received
    })
    .context("the pipeline did not apply the epoch's first command")?;
    repl.set_role(Role::Primary);
    // A primary has no primary to lose: the standby's "lost at" no longer applies.
    repl.primary_lost_at_ms.store(0, Ordering::Release);
    if !repl.submit(kuku_engine::Command::TakeSnapshot) {
        tracing::warn!("The promotion snapshot could not be submitted (ring full).");
    }
    tracing::warn!(
        epoch,
        seq = received,
        took_ms = started.elapsed().as_millis() as u64,
        "PROMOTED: this node is the primary now; clients may log in."
    );
    let peers = Arc::clone(repl);
    let _ = std::thread::Builder::new()
        .name("kuku-repl-fence".into())
        .spawn(move || super::fence_peers(&peers));
    Ok(format!("{{\"epoch\":{epoch},\"seq\":{received}}}"))
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
