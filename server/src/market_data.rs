//! The node's market data: the market-data thread that runs the configured source through a
//! [`Pump`] (sim by default, or the replay of a recorded file), optionally recording what the
//! source delivered, and the candle writer that stores candles in the query database.
//!
//! The engine receives only top-of-book `QuoteUpdate` commands, submitted with the source's
//! timestamps; the ten-level quotes, the ticks, the candles and the reference data live in
//! the [`MarketData`] service, which [`Node::market_data`](crate::node::Node) exposes to the
//! gateway, the HTTP door and the WebSocket channels (docs/market-data.md,
//! docs/adr/ADR-022-market-data-outside-the-core.md).
//!
//! **Invariants**: nothing here runs on the processor thread or blocks it (submits are
//! `try_submit_at`); the source is polled only while the node serves and the market is in
//! its continuous phase (a replay pauses otherwise); the candle writer never blocks the
//! market-data thread: updates wait in a map with one entry per candle, at most
//! [`CANDLES_PENDING_MAX`]; a write that fails or takes longer than the statement timeout
//! abandons its connection (a hung one never blocks the writer or the node's stop) and is
//! retried on a new one at the next flush.
//!
//! **Performance**: the thread sleeps between polls (the source says how long); the candle
//! writer flushes every `candle_flush_ms` in one transaction.
//!
//! **Known limitations**: reference data changed with `kuku reference` while a node runs
//! reaches its service at the next start. At start the service takes up the newest stored
//! candle of each series, so an interval open across a restart goes on from its stored state;
//! ticks the source delivered while the node was down, or that reached the service but not
//! the candle writer before a crash, are not in it.

use crate::config::NodeConfig;
use anyhow::Context;
use kuku_engine::SymbolCode;
use kuku_marketdata::{
    Candle, CandleUpdate, Interval, MarketData, MarketDataHandle, Recorder, ReferenceBook,
    ReplaySource, ServiceLimits, SimSource, Source, Speed,
};
use kuku_persistence::{ConnectOptions, Database, DatabaseUrl};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The most candles waiting for the candle writer (one per symbol, interval and start).
pub const CANDLES_PENDING_MAX: usize = 100_000;

/// Which source feeds the node.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceChoice {
    /// The simulated walk (`sim`).
    Sim,
    /// The replay of a recorded file (`replay:FILE`).
    Replay(PathBuf),
    /// The KIS Open API (`kis`, configured by `[feed.kis]`, credentials from the environment).
    Kis,
}

impl SourceChoice {
    /// Parses `sim`, `kis` or `replay:FILE`.
    pub fn parse(s: &str) -> Result<SourceChoice, String> {
        match s.trim() {
            "sim" => Ok(SourceChoice::Sim),
            "kis" => Ok(SourceChoice::Kis),
            other => match other.strip_prefix("replay:") {
                Some(path) if !path.is_empty() => Ok(SourceChoice::Replay(PathBuf::from(path))),
                _ => Err(format!("{other:?} is not `sim`, `kis` or `replay:FILE`")),
            },
        }
    }
}

/// `[feed.kis]`: the KIS source (docs/market-data.md, "KIS"). The app key and secret come from
/// `KUKU_KIS_APP_KEY` / `KUKU_KIS_APP_SECRET` only, so no configuration file holds them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KisSettings {
    /// `https://host[:port]` of the REST API; default the mock-trading host
    /// (`kuku_kis::config::MOCK_REST_HOST`).
    pub rest_base: String,
    /// A PEM file of extra trust anchors for the REST host (a private CA), added to
    /// Mozilla's roots.
    pub rest_ca_file: Option<PathBuf>,
    /// `ws://host:port/path` of the WebSocket.
    pub ws_url: String,
    /// Six-digit KRX codes, at most 20 (two subscriptions each, 40 per session).
    pub symbols: Vec<String>,
    /// The access-token cache (mode 0600); default `DATA_DIR/kis-token.json`.
    pub token_cache: Option<PathBuf>,
    pub stale_after_ms: u64,
    pub silence_timeout_ms: u64,
    pub fallback_after_ms: u64,
    pub request_timeout_ms: u64,
}

impl Default for KisSettings {
    fn default() -> Self {
        let limits = kuku_kis::KisLimits::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        KisSettings {
            rest_base: kuku_kis::config::MOCK_REST_HOST.to_owned(),
            rest_ca_file: None,
            ws_url: kuku_kis::config::MOCK_WS_URL.to_owned(),
            symbols: Vec::new(),
            token_cache: None,
            stale_after_ms: ms(limits.stale_after),
            silence_timeout_ms: ms(limits.silence_timeout),
            fallback_after_ms: ms(limits.fallback_after),
            request_timeout_ms: ms(limits.request_timeout),
        }
    }
}

impl KisSettings {
    /// The adapter's configuration, with the credentials from the environment.
    pub fn adapter_config(
        &self,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<kuku_kis::KisConfig> {
        let (app_key, app_secret) = kuku_kis::KisConfig::credentials_from_env()?;
        let symbols = self
            .symbols
            .iter()
            .map(|s| {
                kuku_kis::ShortCode::parse(s).ok_or_else(|| {
                    anyhow::anyhow!("feed.kis.symbols: {s:?} is not a six-character code")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let config = kuku_kis::KisConfig {
            rest_base: self.rest_base.clone(),
            rest_ca_file: self.rest_ca_file.clone(),
            ws_url: self.ws_url.clone(),
            app_key,
            app_secret,
            token_cache: self
                .token_cache
                .clone()
                .unwrap_or_else(|| data_dir.join("kis-token.json")),
            symbols,
            limits: kuku_kis::KisLimits {
                stale_after: Duration::from_millis(self.stale_after_ms.max(1)),
                silence_timeout: Duration::from_millis(self.silence_timeout_ms.max(1)),
                fallback_after: Duration::from_millis(self.fallback_after_ms.max(1)),
                request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
                ..kuku_kis::KisLimits::default()
            },
        };
        config.validate()?;
        Ok(config)
    }
}

/// The source the node runs, with the KIS handles when the source is KIS.
pub struct OpenedSource {
    pub source: Box<dyn Source>,
    /// The quote-status changes the node journals before each poll (KIS only).
    pub kis_status: Option<kuku_kis::KisStatus>,
    pub kis_metrics: Option<Arc<kuku_kis::KisMetrics>>,
}

/// Builds the configured source.
pub fn open_source(config: &NodeConfig) -> anyhow::Result<OpenedSource> {
    let feed = &config.feed;
    let choice =
        SourceChoice::parse(&feed.source).map_err(|e| anyhow::anyhow!("feed.source: {e}"))?;
    let source: Box<dyn Source> = match choice {
        SourceChoice::Kis => {
            let adapter = feed.kis.adapter_config(&config.data_dir)?;
            let (source, status) = kuku_kis::KisSource::start(adapter)?;
            return Ok(OpenedSource {
                kis_metrics: Some(source.metrics()),
                source: Box::new(source),
                kis_status: Some(status),
            });
        }
        SourceChoice::Sim => Box::new(SimSource::new(
            feed.seed,
            Duration::from_millis(feed.interval_ms.max(1)),
        )),
        SourceChoice::Replay(path) => {
            let speed = Speed::new(feed.speed).ok_or_else(|| {
                anyhow::anyhow!(
                    "feed.speed {} is not 0 (unpaced) or a multiple in (0, {}]",
                    feed.speed,
                    Speed::MAX
                )
            })?;
            Box::new(ReplaySource::open(&path, speed)?)
        }
    };
    Ok(OpenedSource {
        source,
        kis_status: None,
        kis_metrics: None,
    })
}

/// The service with the reference data of the query database (empty without one).
pub fn start_service(
    config: &NodeConfig,
) -> anyhow::Result<(MarketDataHandle, Option<DatabaseUrl>)> {
    let url = crate::database::database_url(config)?;
    let (reference, candles) = match &url {
        Some(url) => {
            let options = connect_options(config);
            let deadline = options.connect_timeout + options.statement_timeout * 3;
            kuku_persistence::block_on(async {
                tokio::time::timeout(deadline, async {
                    let db = Database::connect(url, &options).await?;
                    let loaded = async {
                        let book = db.reference_book().await?;
                        let candles = db.latest_candles().await?;
                        Ok::<_, kuku_persistence::PersistenceError>((book, candles))
                    }
                    .await;
                    db.close().await;
                    loaded
                })
                .await
            })
            .map_err(|_| anyhow::anyhow!("the database did not answer within {deadline:?}"))?
            .context(
                "cannot load the reference data and the latest candles from the query database",
            )?
        }
        None => (ReferenceBook::default(), Vec::new()),
    };
    let service = MarketData::new(ServiceLimits::default(), reference);
    // An interval open across a restart goes on from what was stored, instead of starting
    // again from the next tick and overwriting the stored row.
    service.resume_candles(&candles);
    Ok((service, url))
}

fn connect_options(config: &NodeConfig) -> ConnectOptions {
    ConnectOptions {
        connections_max: 1,
        connect_timeout: Duration::from_secs(config.database.connect_timeout_s.max(1)),
        statement_timeout: Duration::from_millis(config.database.statement_timeout_ms.max(1)),
        migrate: true,
    }
}

/// Opens the recorder if `feed.record` is set.
pub fn open_recorder(config: &NodeConfig, source: &dyn Source) -> anyhow::Result<Option<Recorder>> {
    config
        .feed
        .record
        .as_ref()
        .map(|path| Recorder::create(path, source.name()))
        .transpose()
        .context("cannot start recording the market data")
}

/// Candles for a reader (the HTTP door): the newest `limit` of `symbol` and `interval`
/// starting in `[from, to)`, oldest first, from the database (`None`: memory only) merged with
/// the service's memory, whose state of a candle wins (the open candle, and candles the
/// candle writer has not flushed yet).
pub async fn candle_history(
    service: &MarketData,
    db: Option<&Database>,
    symbol: SymbolCode,
    interval: Interval,
    from: kuku_marketdata::TimestampNs,
    to: kuku_marketdata::TimestampNs,
    limit: u32,
) -> Result<Vec<Candle>, kuku_persistence::PersistenceError> {
    let limit = limit.min(kuku_persistence::market::CANDLES_PER_READ_MAX);
    let mut merged: BTreeMap<u64, Candle> = BTreeMap::new();
    if let Some(db) = db {
        for c in db.newest_candles(symbol, interval, from, to, limit).await? {
            merged.insert(c.start_ns.0, c);
        }
    }
    for c in service.candles(symbol, interval, from, to, limit as usize) {
        merged.insert(c.start_ns.0, c);
    }
    let skip = merged.len().saturating_sub(limit as usize);
    Ok(merged.into_values().skip(skip).collect())
}

type CandleKey = (SymbolCode, Interval, u64);

/// Candles waiting for the writer: the newest state of each.
#[derive(Default)]
pub struct PendingCandles {
    candles: Mutex<BTreeMap<CandleKey, Candle>>,
}

impl PendingCandles {
    /// Keeps the newest state of each updated candle; false if some did not fit.
    pub fn offer(&self, updates: &[CandleUpdate]) -> bool {
        let mut pending = self.candles.lock();
        let mut all = true;
        for u in updates {
            let c = u.candle;
            let key = (c.symbol, c.interval, c.start_ns.0);
            if pending.len() >= CANDLES_PENDING_MAX && !pending.contains_key(&key) {
                all = false;
                continue;
            }
            pending.insert(key, c);
        }
        all
    }

    fn take(&self) -> BTreeMap<CandleKey, Candle> {
        std::mem::take(&mut *self.candles.lock())
    }

    /// Puts back a batch that failed, unless newer states arrived meanwhile.
    fn restore(&self, batch: BTreeMap<CandleKey, Candle>) {
        let mut pending = self.candles.lock();
        for (key, candle) in batch {
            if pending.len() < CANDLES_PENDING_MAX {
                pending.entry(key).or_insert(candle);
            }
        }
    }
}

/// The candle writer: a thread with its own runtime and connection.
pub struct CandleWriter {
    pub pending: Arc<PendingCandles>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The candle writer's connection: opened on demand, abandoned after any failure.
struct CandleStore {
    url: DatabaseUrl,
    options: ConnectOptions,
    runtime: tokio::runtime::Runtime,
    db: Option<Database>,
}

impl CandleStore {
    /// Writes one batch within the statement deadline; an error names what failed.
    fn write(&mut self, candles: &[Candle]) -> Result<(), String> {
        let deadline = self.options.connect_timeout + self.options.statement_timeout;
        if self.db.is_none() {
            let connected = self.runtime.block_on(async {
                tokio::time::timeout(deadline, Database::connect(&self.url, &self.options)).await
            });
            match connected {
                Ok(Ok(db)) => self.db = Some(db),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("no connection within {deadline:?}")),
            }
        }
        let db = self.db.as_ref().expect("connected above");
        let timeout = self.options.statement_timeout;
        let written = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, db.upsert_candles(candles)).await });
        let failed = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        self.abandon();
        Err(failed)
    }

    /// Drops the pool without waiting for its connections: one of them may hang for ever.
    /// A transaction left open on the server ends by MariaDB's idle_write_transaction_timeout
    /// (twice the statement timeout; `kuku_persistence::db`).
    fn abandon(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.db.take());
    }

    fn close(&mut self) {
        if let Some(db) = self.db.take() {
            let timeout = self.options.statement_timeout;
            let closed = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, db.close()).await });
            if closed.is_err() {
                tracing::warn!("The candle writer's connection did not close in time; abandoned.");
            }
        }
    }
}

impl CandleWriter {
    /// Connects (migrating the schema) and starts the thread.
    pub fn start(
        config: &NodeConfig,
        url: &DatabaseUrl,
        service: &MarketDataHandle,
    ) -> anyhow::Result<CandleWriter> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the candle writer's runtime")?;
        let options = connect_options(config);
        let db = runtime
            .block_on(Database::connect(url, &options))
            .context("cannot start the candle writer")?;
        let mut store = CandleStore {
            url: url.clone(),
            options,
            runtime,
            db: Some(db),
        };
        let pending = Arc::new(PendingCandles::default());
        let stop = Arc::new(AtomicBool::new(false));
        let flush = Duration::from_millis(config.feed.candle_flush_ms.max(10));
        let thread = {
            let pending = Arc::clone(&pending);
            let stop = Arc::clone(&stop);
            let service = Arc::clone(service);
            std::thread::Builder::new()
                .name("kuku-candles".into())
                .spawn(move || {
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        let batch = pending.take();
                        if !batch.is_empty() {
                            let candles: Vec<Candle> = batch.values().copied().collect();
                            if let Err(error) = store.write(&candles) {
                                tracing::warn!(%error, candles = candles.len(), "Candles could not be written; retrying.");
                                service.stats.candle_write_failures.fetch_add(1, Ordering::Relaxed);
                                if !stopping {
                                    pending.restore(batch);
                                }
                            }
                        }
                        if stopping {
                            break;
                        }
                        crate::node::sleep_unless_stopped(&stop, flush);
                    }
                    store.close();
                })
                .context("cannot spawn the candle writer")?
        };
        Ok(CandleWriter {
            pending,
            stop,
            thread: Some(thread),
        })
    }

    /// Writes what is pending (within one statement deadline) and stops.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CandleWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_from_their_names() {
        assert_eq!(SourceChoice::parse("sim"), Ok(SourceChoice::Sim));
        assert_eq!(
            SourceChoice::parse("replay:data/x.jsonl"),
            Ok(SourceChoice::Replay(PathBuf::from("data/x.jsonl")))
        );
        assert_eq!(SourceChoice::parse("kis"), Ok(SourceChoice::Kis));
        for bad in ["replay:", "KIS", "", "simulated"] {
            assert!(SourceChoice::parse(bad).is_err(), "{bad}");
        }
    }
}
