//! The standby side: joining a primary (handshake, truncation of a divergent tail) and the
//! receiver that feeds the primary's commands into this node's pipeline.
//!
//! The receiver publishes each received command with the primary's `ts`; the pipeline numbers
//! it with the next seq, which is the primary's because the receiver is the standby's only
//! producer and checks every frame's seq. The journaller stage acks after its local commit.
//!
//! **Invariants**: frame `n` is published only after frame `n - 1`, with a valid CRC and the
//! session's epoch; anything else drops the connection (the primary re-sends from the last
//! received seq on reconnect).
//!
//! **Known limitations**: a reconnect that would need a truncation (the primary changed under
//! a running standby) is refused with a message asking for a restart, which truncates.

use super::wire::{self, Hello, Msg, RefuseCode, Welcome};
use super::{EpochFile, Replication, now_ms};
use crate::pipeline::{Origin, Submitter};
use anyhow::{Context, bail};
use kuku_journal::{Journal, JournalConfig, codec, decode_frame};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a standby keeps trying to reach its primary at start-up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins the primary before the node opens its journal: handshake and, if the primary says so,
/// truncation of the tail it does not have. Persists the primary's epoch history. Returns the
/// connection, on which the receiver sends `Start` once the node runs.
pub(crate) fn join(
    repl: &Arc<Replication>,
    journal_config: JournalConfig,
) -> anyhow::Result<(TcpStream, u64)> {
    let primary = repl
        .settings
        .standby_of
        .clone()
        .context("join needs replication.standby_of")?;
    let seq_last = local_seq_last(repl, journal_config)?;
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let (stream, welcome) = loop {
        match handshake(repl, &primary, seq_last) {
            Ok(ok) => break ok,
            Err(e) if Instant::now() < deadline && is_transient(&e) => {
                tracing::info!(%primary, error = %e, "The primary is not reachable yet; retrying.");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    let mut keeps = seq_last;
    if welcome.truncate_after != 0 && welcome.truncate_after < seq_last {
        let cut = kuku_journal::truncate_after(&repl.journal_dir, welcome.truncate_after)
            .with_context(|| {
                format!(
                    "cannot truncate the journal after seq {}",
                    welcome.truncate_after
                )
            })?;
        tracing::warn!(
            kept_seq_last = welcome.truncate_after,
            removed_seqs = format!("{}..={seq_last}", welcome.truncate_after + 1),
            segments_removed = cut.segments_removed,
            snapshots_removed = cut.snapshots_removed,
            "REJOIN: this node's journal held a tail the primary does not have (an older \
             epoch's unreplicated commands); it was truncated."
        );
        keeps = welcome.truncate_after;
    }
    let epochs = EpochFile {
        epoch: welcome.epoch,
        history: welcome.history.clone(),
    };
    epochs.store(&repl.journal_dir)?;
    repl.epoch.store(welcome.epoch, Ordering::Release);
    *repl.epochs.lock().expect("epochs lock") = epochs;
    tracing::info!(
        %primary,
        epoch = welcome.epoch,
        primary_seq = welcome.seq_last,
        from = keeps + 1,
        "Joined the primary as a hot standby."
    );
    Ok((stream, keeps))
}

fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::TimedOut
                | io::ErrorKind::ConnectionReset
        )
    })
}

/// The local journal's last seq (0 without a journal), after cutting a torn tail.
fn local_seq_last(repl: &Replication, config: JournalConfig) -> anyhow::Result<u64> {
    let dir = &repl.journal_dir;
    if !dir.is_dir() {
        return Ok(0);
    }
    let meta = kuku_journal::JournalMeta {
        epoch: repl.epoch(),
        ..repl.meta
    };
    match Journal::open(dir, config, meta) {
        Ok((journal, _)) => Ok(journal.seq_last()),
        Err(
            kuku_journal::JournalError::EmptyJournal { .. }
            | kuku_journal::JournalError::MissingDirectory { .. },
        ) => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot open the journal in {}", dir.display())),
    }
}

fn handshake(
    repl: &Replication,
    primary: &str,
    seq_last: u64,
) -> anyhow::Result<(TcpStream, Welcome)> {
    let addr: SocketAddr = primary
        .parse()
        .with_context(|| format!("replication.standby_of {primary:?} is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    wire::write_msg(
        &mut stream,
        &Msg::Hello(Hello {
            wire_version: wire::WIRE_VERSION,
            engine_logic_version: repl.meta.engine_logic_version,
            capacities_hash: repl.meta.capacities_hash,
            epoch: repl.epoch(),
            seq_last,
        }),
    )?;
    match wire::read_msg(&mut stream)? {
        Msg::Welcome(w) => Ok((stream, w)),
        Msg::Refused { code, reason } => {
            let code = RefuseCode::from_u16(code);
            bail!("the primary at {primary} refused this standby ({code:?}): {reason}")
        }
        other => bail!("the primary at {primary} answered the handshake with {other:?}"),
    }
}

/// Starts the receiver on the joined connection: it asks for frames from `seq_first`.
pub(crate) fn spawn_receiver(
    repl: &Arc<Replication>,
    stream: TcpStream,
    submitter: Submitter,
    seq_first: u64,
) -> anyhow::Result<JoinHandle<()>> {
    let repl = Arc::clone(repl);
    repl.received_seq.store(seq_first - 1, Ordering::Release);
    repl.receiver_running.store(true, Ordering::Release);
    let handle = std::thread::Builder::new()
        .name("kuku-repl-recv".into())
        .spawn(move || {
            let mut receiver = Receiver {
                repl: Arc::clone(&repl),
                submitter,
            };
            receiver.run(stream);
            repl.receiver_running.store(false, Ordering::Release);
        })?;
    Ok(handle)
}

struct Receiver {
    repl: Arc<Replication>,
    submitter: Submitter,
}

impl Receiver {
    fn stopping(&self) -> bool {
        self.repl.receiver_stop.load(Ordering::Acquire)
    }

    fn run(&mut self, stream: TcpStream) {
        let mut stream = Some(stream);
        while !self.stopping() {
            if let Some(s) = stream.take() {
                let seq_first = self.repl.received_seq.load(Ordering::Acquire) + 1;
                let result = self.stream_from(s, seq_first);
                if self.stopping() {
                    break;
                }
                self.repl.links.lock().expect("links lock").upstream = None;
                self.repl
                    .primary_lost_at_ms
                    .store(now_ms(), Ordering::Release);
                tracing::error!(
                    error = ?result.err(),
                    received_seq = self.repl.received_seq.load(Ordering::Relaxed),
                    "PRIMARY LOST: the replication stream ended. This standby keeps trying \
                     to reconnect; to fail over, promote it (`kuku promote --node <this node's \
                     replication address>`)."
                );
            }
            // Wait before reconnecting, in short steps: a promotion must not wait for it.
            let until = Instant::now() + self.repl.settings.heartbeat_interval();
            while Instant::now() < until && !self.stopping() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.stopping() {
                break;
            }
            match self.rejoin() {
                Ok(s) => stream = Some(s),
                Err(e) => tracing::debug!(error = %e, "Reconnecting to the primary failed."),
            }
        }
    }

    /// Reconnects to the primary after a loss (no truncation possible while running).
    fn rejoin(&self) -> anyhow::Result<TcpStream> {
        let primary = self.repl.settings.standby_of.clone().unwrap_or_default();
        let seq = self.repl.received_seq.load(Ordering::Acquire);
        let (stream, welcome) = handshake(&self.repl, &primary, seq)?;
        if welcome.truncate_after != 0 && welcome.truncate_after < seq {
            bail!(
                "the primary wants this standby to drop its tail after seq {}: restart the \
                 node (it truncates at start-up)",
                welcome.truncate_after
            );
        }
        if welcome.epoch != self.repl.epoch() {
            let epochs = EpochFile {
                epoch: welcome.epoch,
                history: welcome.history,
            };
            epochs.store(&self.repl.journal_dir)?;
            self.repl.epoch.store(welcome.epoch, Ordering::Release);
            *self.repl.epochs.lock().expect("epochs lock") = epochs;
        }
        self.repl.primary_lost_at_ms.store(0, Ordering::Release);
        tracing::warn!(%primary, seq, "Reconnected to the primary.");
        Ok(stream)
    }

    /// Sends `Start`, then receives until the connection fails or the receiver is stopped.
    fn stream_from(&mut self, mut stream: TcpStream, seq_first: u64) -> io::Result<()> {
        wire::write_msg(&mut stream, &Msg::Start { seq_first })?;
        // Acks are written by the journaller: a primary that stops reading must not block it.
        stream.set_write_timeout(Some(self.repl.settings.heartbeat_timeout()))?;
        let epoch = self.repl.epoch();
        self.repl.links.lock().expect("links lock").upstream = Some(stream.try_clone()?);
        let interval = self.repl.settings.heartbeat_interval();
        stream.set_read_timeout(Some((interval / 4).max(Duration::from_millis(5))))?;
        let mut reader = wire::MsgReader::default();
        let (mut heard, mut sent) = (Instant::now(), Instant::now());
        while !self.stopping() {
            match reader.poll(&mut stream)? {
                Some(Msg::Frames { epoch: e, bytes }) if e == epoch => {
                    heard = Instant::now();
                    self.publish(&bytes)?;
                }
                Some(Msg::StateHash { seq, hash }) => self.repl.check_hash(seq, None, Some(hash)),
                Some(Msg::Heartbeat { epoch: e, .. }) if e == epoch => heard = Instant::now(),
                Some(Msg::Frames { epoch: e, .. } | Msg::Heartbeat { epoch: e, .. }) => {
                    return Err(io::Error::other(format!(
                        "a message of epoch {e} was refused: this standby follows epoch {epoch}"
                    )));
                }
                Some(other) => {
                    return Err(io::Error::other(format!("unexpected message {other:?}")));
                }
                None => {}
            }
            if heard.elapsed() > self.repl.settings.heartbeat_timeout() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the primary was silent for {} ms",
                        heard.elapsed().as_millis()
                    ),
                ));
            }
            if sent.elapsed() >= interval {
                sent = Instant::now();
                let seq = self.repl.received_seq.load(Ordering::Acquire);
                let mut links = self.repl.links.lock().expect("links lock");
                if let Some(up) = links.upstream.as_mut() {
                    wire::write_msg(up, &Msg::Heartbeat { epoch, seq })?;
                }
            }
        }
        Ok(())
    }

    /// Verifies each frame (CRC, seq) and publishes its command with the primary's ts.
    fn publish(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            let expected = self.repl.received_seq.load(Ordering::Relaxed) + 1;
            let (frame, used) = decode_frame(
                &bytes[at..],
                expected,
                JournalConfig::FRAME_PAYLOAD_MAX_DEFAULT,
            )
            .map_err(|kind| {
                io::Error::other(format!(
                    "a received frame failed its check at seq {expected}: {kind}"
                ))
            })?;
            let command = codec::decode_command(frame.payload).map_err(|e| {
                io::Error::other(format!("seq {expected}: undecodable command: {e}"))
            })?;
            loop {
                match self
                    .submitter
                    .try_submit_at(Origin::INTERNAL, frame.ts, command.clone())
                {
                    Ok(()) => break,
                    Err(_) if self.stopping() => return Ok(()),
                    Err(_) => std::thread::sleep(Duration::from_micros(100)),
                }
            }
            self.repl.received_seq.store(expected, Ordering::Release);
            at += used;
        }
        Ok(())
    }
}
