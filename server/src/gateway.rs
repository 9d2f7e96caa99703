//! Wires the TCP gateway (kuku-gateway) into a node: the `[gateway]` settings, the link to
//! the pipeline (input ring + an output-ring poller woken by a `mio::Waker` once per output
//! batch), the gateway's credentials, and the rebuild of its read model and replay history
//! from the journal at start-up.
//!
//! **Invariants**: the gateway's mirror starts exactly at the node's recovered seq: it is
//! rebuilt from the journal up to `startup.seq_last`, and its output poller sees every event
//! after it (the poller exists before the first command is processed).
//!
//! **Known limitations**: the replay history after a restart covers the last
//! `history_commands_max` journaled commands (and the history's own bounds); older messages
//! are a gap the client sees at login.

use crate::config::NodeConfig;
use crate::node::{Node, NodeOutputs};
use crate::pipeline::{Origin, OutputPoller, Submitter};
use anyhow::Context;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Command, Engine, Event, EventSink};
use kuku_gateway::auth::{Credentials, Secret, decode_hex32};
use kuku_gateway::server::{
    Busy, Drained, Gateway, GatewayConfig, GatewayHandle, NodeLink, OutputRef,
};
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_journal::{JournalReader, decode_envelope};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The `[gateway]` section of the node config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Serve the TCP protocol (`kuku serve`).
    pub enabled: bool,
    /// Listen address (`--listen`, `KUKU_LISTEN`).
    pub listen: String,
    /// The credentials file (created with fresh secrets if missing); default
    /// `<data_dir>/gateway-secrets.toml`. `KUKU_GATEWAY_SECRET` and `KUKU_ADMIN_TOKEN`
    /// (64 hex digits each) override it.
    pub secrets_file: Option<PathBuf>,
    /// Hex overrides of the file's values (normally from the environment, not the file).
    #[serde(skip)]
    pub secret_hex: Option<String>,
    #[serde(skip)]
    pub admin_token_hex: Option<String>,
    pub sessions_max: usize,
    pub outbound_bytes_max: usize,
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub login_timeout_ms: u64,
    /// Each trading account's request budget (one token bucket per account, shared by all
    /// its sessions: ADR-016).
    pub rate_per_s: u32,
    pub burst: u32,
    pub history_per_account_max: usize,
    pub history_total_max: usize,
    /// Journaled commands replayed at start-up to rebuild the replay history.
    pub history_commands_max: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let d = GatewayConfig::new(
            "127.0.0.1:7878".parse().expect("a valid address"),
            Secret::from_bytes([0; 32]),
            [0; 32],
        );
        GatewaySettings {
            enabled: true,
            listen: "127.0.0.1:7878".to_owned(),
            secrets_file: None,
            secret_hex: None,
            admin_token_hex: None,
            sessions_max: d.sessions_max,
            outbound_bytes_max: d.outbound_bytes_max,
            heartbeat_interval_ms: d.heartbeat_interval.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            login_timeout_ms: d.login_timeout.as_millis() as u64,
            rate_per_s: d.rate_per_s,
            burst: d.burst,
            history_per_account_max: d.history_per_account_max,
            history_total_max: d.history_total_max,
            history_commands_max: 1_000_000,
        }
    }
}

impl GatewaySettings {
    /// The credentials file's path for a node with `data_dir`.
    pub fn secrets_path(&self, config: &NodeConfig) -> PathBuf {
        self.secrets_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("gateway-secrets.toml"))
    }

    /// The file's credentials (created if missing), with the hex overrides applied.
    pub fn credentials(&self, config: &NodeConfig) -> anyhow::Result<Credentials> {
        let mut c = match (&self.secret_hex, &self.admin_token_hex) {
            (Some(s), Some(a)) => Credentials {
                secret: Secret::from_hex(s).context("KUKU_GATEWAY_SECRET")?,
                admin_token: decode_hex32(a).context("KUKU_ADMIN_TOKEN")?,
            },
            _ => Credentials::load_or_create(&self.secrets_path(config))?,
        };
        if let Some(s) = &self.secret_hex {
            c.secret = Secret::from_hex(s).context("KUKU_GATEWAY_SECRET")?;
        }
        if let Some(a) = &self.admin_token_hex {
            c.admin_token = decode_hex32(a).context("KUKU_ADMIN_TOKEN")?;
        }
        Ok(c)
    }

    pub fn to_config(&self, credentials: Credentials) -> anyhow::Result<GatewayConfig> {
        let listen = self
            .listen
            .parse()
            .with_context(|| format!("gateway.listen {:?} is not an address", self.listen))?;
        let mut g = GatewayConfig::new(listen, credentials.secret, credentials.admin_token);
        g.sessions_max = self.sessions_max;
        g.outbound_bytes_max = self.outbound_bytes_max;
        g.heartbeat_interval = Duration::from_millis(self.heartbeat_interval_ms);
        g.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        g.login_timeout = Duration::from_millis(self.login_timeout_ms);
        g.rate_per_s = self.rate_per_s;
        g.burst = self.burst;
        g.history_per_account_max = self.history_per_account_max;
        g.history_total_max = self.history_total_max;
        g.validate()?;
        Ok(g)
    }
}

/// The gateway's link to the pipeline.
pub struct PipelineLink {
    pub submitter: Submitter,
    pub poller: OutputPoller,
}

impl NodeLink for PipelineLink {
    #[inline]
    fn submit(&mut self, origin: u64, command: Command) -> Result<(), Busy> {
        self.submitter
            .try_submit(Origin(origin), command)
            .map_err(|_| Busy)
    }

    fn drain(&mut self, limit: usize, sink: &mut dyn FnMut(OutputRef<'_>)) -> Drained {
        match self.poller.take(limit as u64) {
            Ok(mut guard) => {
                let mut n = 0;
                for slot in &mut guard {
                    n += 1;
                    sink(OutputRef {
                        seq: slot.seq,
                        ts: slot.ts,
                        origin: slot.origin.0,
                        event: &slot.event,
                        last: slot.last,
                    });
                }
                Drained::Events(n)
            }
            Err(disruptor::Polling::NoEvents) => Drained::Events(0),
            Err(disruptor::Polling::Shutdown) => Drained::Shutdown,
        }
    }
}

/// Starts a node with the gateway on its output ring. Stop them with [`shutdown`]. The
/// gateway's port is bound only once the node has started and the gateway's read model and
/// replay history are rebuilt: a client never connects to a node that is not ready (or that
/// refuses to start).
pub fn start(config: &NodeConfig, outputs: NodeOutputs) -> anyhow::Result<(Node, GatewayHandle)> {
    crate::node::check_data_dir(&config.data_dir)?;
    let credentials = config.gateway.credentials(config)?;
    let gateway_config = config.gateway.to_config(credentials)?;
    let serving = Arc::clone(&gateway_config.serving);
    let mut gateway = Gateway::new(gateway_config)?;
    let waker = gateway.waker();
    let mut outputs = outputs;
    outputs.serving = Some(serving);
    outputs.pollers += 1;
    outputs.notifiers.push(Arc::new(move || {
        let _ = waker.wake();
    }));
    let mut node = Node::start(config, outputs)?;
    let poller = node
        .pollers
        .pop()
        .context("the node did not create the gateway's poller")?;
    if let Err(e) = recover(&mut gateway, config, node.startup.seq_last) {
        drop(poller);
        node.shutdown();
        return Err(e);
    }
    let link = PipelineLink {
        submitter: node.submitter.clone(),
        poller,
    };
    let handle = match gateway.spawn(link) {
        Ok(handle) => handle,
        Err(e) => {
            node.shutdown();
            return Err(e.into());
        }
    };
    tracing::info!(addr = %handle.local_addr(), "The gateway is serving.");
    Ok((node, handle))
}

/// Stops the gateway (sessions end; cancel-on-disconnect is submitted), then the node.
pub fn shutdown(node: Node, gateway: GatewayHandle) -> u64 {
    gateway.shutdown();
    node.shutdown()
}

/// Feeds replayed events to the gateway with their command's seq and ts.
struct Fold<'a> {
    gateway: &'a mut Gateway,
    seq: u64,
    ts: u64,
}

impl EventSink for Fold<'_> {
    fn emit(&mut self, event: &Event) {
        self.gateway.recover_event(self.seq, self.ts, event);
    }
}

/// Rebuilds the gateway's read model and replay history from the journal up to `seq_last`:
/// the state before the last `history_commands_max` commands, then those commands' events.
fn recover(gateway: &mut Gateway, config: &NodeConfig, seq_last: u64) -> anyhow::Result<()> {
    if seq_last == 0 {
        return Ok(());
    }
    let dir = config.journal_dir();
    let reader = JournalReader::open(&dir)?;
    // Not before the journal's first frame (after `kuku upgrade` a snapshot stands in for
    // the frames before it).
    let base_seq = seq_last
        .saturating_sub(config.gateway.history_commands_max)
        .max(reader.seq_first() - 1);
    let at = |seq: u64| {
        recover_engine_with(
            &dir,
            &config.engine,
            RecoverOptions {
                seq_until: Some(seq),
                use_snapshots: true,
            },
        )
    };
    let mut engine = if base_seq == 0 {
        Engine::new(config.engine)
    } else {
        match at(base_seq) {
            Ok((engine, _)) => engine,
            // E.g. a pruned journal with no snapshot before the window: no history.
            Err(e) => {
                tracing::warn!(error = %e, "The gateway's replay history starts empty.");
                at(seq_last)?.0
            }
        }
    };
    gateway.seed(ReadModel::from_engine(&engine));
    if engine.last_seq() >= seq_last {
        return Ok(());
    }
    let mut fold = Fold {
        gateway,
        seq: 0,
        ts: 0,
    };
    let mut replayed = 0u64;
    for frame in reader.frames_from(engine.last_seq() + 1)? {
        let frame = frame?;
        let envelope = decode_envelope(&frame)?;
        fold.seq = envelope.seq;
        fold.ts = envelope.ts;
        engine.apply(&envelope, &mut fold);
        replayed += 1;
        if envelope.seq >= seq_last {
            break;
        }
    }
    anyhow::ensure!(
        engine.last_seq() == seq_last,
        "the gateway's journal replay ended at seq {} before the node's {seq_last}",
        engine.last_seq()
    );
    tracing::info!(
        replayed,
        messages = fold.gateway.mirror().history.len(),
        "The gateway rebuilt its read model and replay history from the journal."
    );
    Ok(())
}
