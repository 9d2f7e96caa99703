//! The replication listener (every role) and a primary's standby sessions.
//!
//! A connection starts with one message: `Hello` (a standby joins: handshake, then `Start`,
//! catch-up from the local journal, then live streaming and the ack loop), `Promote` or
//! `Status` (operator requests, answered with `Reply`).
//!
//! Catch-up: frames up to `Links::sent_seq` are in the local journal; the session streams them
//! from disk without blocking the journaller, and when it is close, takes the links lock,
//! streams the rest and joins the live set in the same critical section, so no frame is sent
//! twice or skipped.
//!
//! **Known limitations**: one thread per connection (standbys and operator requests are few).

use super::wire::{self, Hello, Msg, RefuseCode, Welcome};
use super::{LiveStandby, Replication, Role};
use kuku_journal::{JournalReader, encode_frame};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames behind `sent_seq` at which catch-up takes the lock for its last stretch.
const CATCH_UP_LOCKED_MAX: u64 = 256;

/// Binds the replication address and serves connections until the node stops.
pub(crate) fn spawn_listener(
    repl: &Arc<Replication>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let addr = repl.settings.listen.as_deref().unwrap_or("127.0.0.1:0");
    let listener = TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen for replication on {addr}: {e} (replication.listen)")
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    tracing::info!(%local, role = ?repl.role(), "The replication listener is up.");
    let repl = Arc::clone(repl);
    let handle = std::thread::Builder::new()
        .name("kuku-repl-listen".into())
        .spawn(move || {
            while !repl.stopped.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let repl = Arc::clone(&repl);
                        let _ = std::thread::Builder::new()
                            .name("kuku-repl-conn".into())
                            .spawn(move || {
                                if let Err(e) = serve_connection(&repl, stream) {
                                    tracing::warn!(%peer, error = %e, "A replication connection ended.");
                                }
                            });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed on the replication listener");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok((local, handle))
}

fn serve_connection(repl: &Arc<Replication>, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    match wire::read_msg(&mut stream)? {
        Msg::Hello(hello) => handshake(repl, stream, hello),
        Msg::Status => {
            let text = serde_json::to_string(&repl.status()).map_err(io::Error::other)?;
            wire::write_msg(&mut stream, &Msg::Reply { ok: true, text })
        }
        Msg::Promote { token } => {
            let (ok, text) = super::control::promote_here(repl, &token);
            wire::write_msg(&mut stream, &Msg::Reply { ok, text })
        }
        other => refuse(
            &mut stream,
            RefuseCode::BadMessage,
            format!("expected Hello, Status or Promote first, got {other:?}"),
        ),
    }
}

fn refuse(stream: &mut TcpStream, code: RefuseCode, reason: String) -> io::Result<()> {
    tracing::warn!(?code, %reason, "A replication peer was refused.");
    wire::write_msg(
        stream,
        &Msg::Refused {
            code: code as u16,
            reason,
        },
    )
}

/// Checks a standby's Hello; on success answers Welcome and runs the session.
fn handshake(repl: &Arc<Replication>, mut stream: TcpStream, hello: Hello) -> io::Result<()> {
    let epoch = repl.epoch();
    let meta = repl.meta;
    if hello.wire_version != wire::WIRE_VERSION {
        let why = format!(
            "replication wire version {} is not this node's {}: run the same Kuku build on both",
            hello.wire_version,
            wire::WIRE_VERSION
        );
        return refuse(&mut stream, RefuseCode::WireVersion, why);
    }
    if hello.engine_logic_version != meta.engine_logic_version {
        let why = format!(
            "engine-logic version mismatch: standby {} vs primary {}; a standby must run the \
             same engine build as the primary (upgrade both, or replay the journal)",
            hello.engine_logic_version, meta.engine_logic_version
        );
        return refuse(&mut stream, RefuseCode::EngineLogicVersion, why);
    }
    if hello.capacities_hash != meta.capacities_hash {
        let why = format!(
            "capacities hash mismatch: standby {:#x} vs primary {:#x}; give the standby the \
             same [engine] settings as the primary",
            hello.capacities_hash, meta.capacities_hash
        );
        return refuse(&mut stream, RefuseCode::CapacitiesHash, why);
    }
    if hello.epoch > epoch && repl.role() == Role::Primary {
        let why = format!(
            "this node is in epoch {epoch} but you have seen epoch {}: it is a stale primary \
             and fences itself",
            hello.epoch
        );
        repl.fence(hello.epoch, "a standby from a newer epoch");
        return refuse(&mut stream, RefuseCode::StaleEpoch, why);
    }
    if repl.role() != Role::Primary {
        let why = format!(
            "this node is not the primary (role {:?}, epoch {epoch}); connect to the primary",
            repl.role()
        );
        return refuse(&mut stream, RefuseCode::NotPrimary, why);
    }
    let epochs = repl.epochs.lock().expect("epochs lock").clone();
    let seq_primary = repl.links.lock().expect("links lock").sent_seq;
    let cut = epochs.cut_for(hello.epoch).filter(|&c| hello.seq_last > c);
    let keeps = cut.unwrap_or(hello.seq_last);
    if cut.is_none() && hello.seq_last > seq_primary {
        let why = format!(
            "the standby holds seq {} but this primary's journal ends at {seq_primary} in the \
             same epoch {epoch}: their journals diverged; rebuild the standby from scratch",
            hello.seq_last
        );
        return refuse(&mut stream, RefuseCode::Diverged, why);
    }
    wire::write_msg(
        &mut stream,
        &Msg::Welcome(Welcome {
            epoch,
            seq_last: seq_primary,
            truncate_after: cut.unwrap_or(0),
            history: epochs.history.clone(),
        }),
    )?;
    tracing::info!(
        standby_seq = hello.seq_last,
        standby_epoch = hello.epoch,
        truncate_after = ?cut,
        "A standby passed the handshake."
    );
    // The standby opens its journal (after truncating) and then says where to start.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let seq_first = match wire::read_msg(&mut stream)? {
        Msg::Start { seq_first } => seq_first,
        other => {
            return refuse(
                &mut stream,
                RefuseCode::BadMessage,
                format!("expected Start, got {other:?}"),
            );
        }
    };
    if seq_first != keeps + 1 {
        let why = format!(
            "Start at {seq_first} but the handshake agreed on {}",
            keeps + 1
        );
        return refuse(&mut stream, RefuseCode::BadMessage, why);
    }
    session(repl, stream, seq_first)
}

/// Catch-up, then the ack loop of one live standby.
fn session(repl: &Arc<Replication>, stream: TcpStream, seq_first: u64) -> io::Result<()> {
    let id = repl.next_standby_id.fetch_add(1, Ordering::Relaxed);
    // Bounds every write to this standby (the journaller ships under the links lock): a
    // standby that stops reading is dropped after heartbeat_timeout_ms instead of blocking
    // the primary for ever.
    stream.set_write_timeout(Some(repl.settings.heartbeat_timeout()))?;
    let mut writer = stream.try_clone()?;
    let mut next = seq_first;
    let epoch = repl.epoch();
    loop {
        let target = repl.links.lock().expect("links lock").sent_seq;
        if target + 1 < next + CATCH_UP_LOCKED_MAX {
            let mut links = repl.links.lock().expect("links lock");
            send_from_journal(repl, &mut writer, epoch, next, links.sent_seq)?;
            links.standbys.push(LiveStandby { id, stream: writer });
            break;
        }
        send_from_journal(repl, &mut writer, epoch, next, target)?;
        next = target + 1;
    }
    if repl.degraded.swap(false, Ordering::AcqRel) {
        tracing::warn!(
            standby = id,
            "A standby caught up: replication is synchronous again."
        );
    }
    tracing::info!(
        standby = id,
        from = seq_first,
        "A standby caught up and streams live."
    );
    let result = ack_loop(repl, stream, id, epoch);
    let mut links = repl.links.lock().expect("links lock");
    links.standbys.retain(|s| s.id != id);
    drop(links);
    tracing::error!(standby = id, "A standby was lost: {result:?}");
    result
}

/// Sends frames `from..=to` read back from the local journal, in messages of about 1 MiB.
fn send_from_journal(
    repl: &Replication,
    stream: &mut TcpStream,
    epoch: u64,
    from: u64,
    to: u64,
) -> io::Result<()> {
    if from > to {
        return Ok(());
    }
    let reader = JournalReader::open(&repl.journal_dir).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(super::log::BATCH_BYTES_MAX + (64 << 10));
    for frame in reader.frames_from(from).map_err(io::Error::other)? {
        let frame = frame.map_err(io::Error::other)?;
        encode_frame(&mut buf, frame.seq, frame.ts, frame.payload);
        if buf.len() >= super::log::BATCH_BYTES_MAX || frame.seq >= to {
            wire::write_frames(stream, epoch, &buf)?;
            buf.clear();
        }
        if frame.seq >= to {
            return Ok(());
        }
    }
    Err(io::Error::other(format!(
        "the local journal ends before seq {to} (catch-up from {from})"
    )))
}

/// Reads acks and heartbeats of one live standby; sends a heartbeat every interval. Ends when
/// the standby is silent for `heartbeat_timeout_ms`, sends another epoch, or disconnects.
fn ack_loop(repl: &Replication, mut stream: TcpStream, id: u64, epoch: u64) -> io::Result<()> {
    let interval = repl.settings.heartbeat_interval();
    stream.set_read_timeout(Some((interval / 4).max(Duration::from_millis(5))))?;
    let mut reader = wire::MsgReader::default();
    let (mut heard, mut sent) = (Instant::now(), Instant::now());
    while !repl.stopped.load(Ordering::Acquire) {
        match reader.poll(&mut stream)? {
            Some(Msg::Ack { epoch: e, seq }) if e == epoch => {
                heard = Instant::now();
                repl.record_ack(seq);
            }
            Some(Msg::Heartbeat { epoch: e, .. }) if e == epoch => heard = Instant::now(),
            Some(Msg::Ack { epoch: e, .. } | Msg::Heartbeat { epoch: e, .. }) => {
                return Err(io::Error::other(format!(
                    "an ack of epoch {e} was refused: this primary is in epoch {epoch}"
                )));
            }
            Some(other) => {
                return Err(io::Error::other(format!("unexpected message {other:?}")));
            }
            None => {}
        }
        if heard.elapsed() > repl.settings.heartbeat_timeout() {
            return Err(io::Error::other(format!(
                "no message for {} ms (heartbeat_timeout_ms)",
                heard.elapsed().as_millis()
            )));
        }
        if sent.elapsed() >= interval {
            sent = Instant::now();
            let mut links = repl.links.lock().expect("links lock");
            let seq = links.sent_seq;
            if let Some(s) = links.standbys.iter_mut().find(|s| s.id == id) {
                wire::write_msg(&mut s.stream, &Msg::Heartbeat { epoch, seq })?;
            }
        }
    }
    Ok(())
}

/// After a promotion: tells every peer that a newer epoch exists, with a handshake in it. A
/// peer still running as the old primary fences itself (it stops serving at once instead of
/// stalling its clients); unreachable peers are skipped (they probe at start-up).
pub(crate) fn fence_peers(repl: &Replication) {
    for peer in &repl.settings.peers {
        let Ok(addr) = peer.parse::<SocketAddr>() else {
            continue;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let hello = Msg::Hello(Hello {
            wire_version: wire::WIRE_VERSION,
            engine_logic_version: repl.meta.engine_logic_version,
            capacities_hash: repl.meta.capacities_hash,
            epoch: repl.epoch(),
            seq_last: 0,
        });
        if wire::write_msg(&mut stream, &hello).is_ok()
            && let Ok(Msg::Refused { code, .. }) = wire::read_msg(&mut stream)
            && code == RefuseCode::StaleEpoch as u16
        {
            tracing::warn!(%peer, "A peer still acting as the old primary was told to fence itself.");
        }
    }
}

/// Asks `peers` for their status; returns the newest epoch a primary among them is in, if it is
/// newer than `epoch`.
/// What the `peers` said at a primary's start-up.
#[derive(Debug, Default)]
pub(crate) struct PeerProbe {
    /// A primary in a newer epoch (this node must fence itself): (its epoch, its address).
    pub newer: Option<(u64, String)>,
    /// The standby of this node's epoch that journaled the most: (its address, its last seq).
    pub standby_ahead: Option<(String, u64)>,
}

pub(crate) fn probe_peers(peers: &[String], epoch: u64) -> PeerProbe {
    let mut probe = PeerProbe::default();
    for peer in peers {
        match super::control::status(peer, Duration::from_millis(1_000)) {
            Ok(s) if s.epoch > epoch && s.role == "primary" => {
                if probe.newer.as_ref().is_none_or(|(e, _)| s.epoch > *e) {
                    probe.newer = Some((s.epoch, peer.clone()));
                }
            }
            Ok(s) if s.epoch == epoch && s.role == "standby" => {
                if probe
                    .standby_ahead
                    .as_ref()
                    .is_none_or(|(_, seq)| s.journaled_seq > *seq)
                {
                    probe.standby_ahead = Some((peer.clone(), s.journaled_seq));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(%peer, error = %e, "A replication peer did not answer at start-up.")
            }
        }
    }
    probe
}
