//! Node configuration: defaults, then a TOML file (`--config`), then environment variables
//! and flags (the binary applies those last).
//!
//! ```toml
//! data_dir = "kuku-data"
//! database_url = "mysql://kuku:secret@127.0.0.1:3306/kuku"   # default: DATA_DIR/kuku.sqlite
//! durability = "every-batch"     # or "none"
//! watermark_interval_ms = 1000   # none: how often the durable watermark advances (0: at stops)
//! schedule = "krx"               # "krx" | "always-open" | "manual"
//! metrics_listen = "127.0.0.1:7880"   # GET /metrics (Prometheus text); default: off
//! [pipeline]
//! processor_core = 1             # pin the processor; omit to leave it unpinned
//! processor_wait = "busy-spin"   # "busy-spin" | "spin-hint" | "yield" | "backoff"
//! layout = "fused"               # default; "staged" gives the journal its own thread
//!                                # (every-batch always runs staged: ADR-006)
//! [feed]
//! enabled = true
//! source = "sim"                 # or "replay:FILE" (a recorded file), or "kis"
//! interval_ms = 200              # sim: one walk step per symbol this often
//! speed = 1.0                    # replay: x recorded pace; 0 = as fast as possible
//! record = "md.jsonl"            # record what the source delivers (default: off)
//! [feed.kis]                     # source = "kis"; the app key and secret: KUKU_KIS_APP_KEY,
//!                                # KUKU_KIS_APP_SECRET (never in this file)
//! rest_base = "https://openapivts.koreainvestment.com:29443"   # default (mock trading)
//! rest_ca_file = "private-ca.pem"  # extra trust anchors for rest_base (default: none)
//! ws_url = "ws://ops.koreainvestment.com:31000/tryitout"
//! symbols = ["005930", "000660"] # at most 20
//! stale_after_ms = 30000         # no quote for this long: SetQuoteStatus Stale (ADR-023)
//! [gateway]
//! listen = "127.0.0.1:7878"
//! rate_per_s = 20000
//! [database]
//! batch_commands_max = 2048
//! [engine]
//! orders_max = 1048576
//! [replication]                  # see crate::replication and docs/operations.md, Failover
//! mode = "sync"                  # "none" | "async" | "sync"
//! listen = "10.0.0.1:7900"       # standbys and `kuku promote` connect here
//! standby_of = "10.0.0.2:7900"   # run as a hot standby of that primary
//! peers = ["10.0.0.2:7900"]      # asked for a newer epoch at start-up (fencing)
//! on_standby_loss = "stall"      # "stall" | "degrade" (after degrade_after_ms)
//! ```

use crate::database::DatabaseSettings;
use crate::gateway::GatewaySettings;
use crate::pipeline::wait::Wait;
use crate::pipeline::{Layout, PipelineConfig};
use crate::scheduler::ScheduleMode;
use kuku_engine::EngineConfig;
use kuku_journal::Durability;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    pub input_ring_size: usize,
    pub output_ring_size: usize,
    pub processor_core: Option<usize>,
    pub layout: Layout,
    pub processor_wait: Wait,
    pub journal_wait: Wait,
    pub consumer_wait: Wait,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        let p = PipelineConfig::default();
        PipelineSettings {
            input_ring_size: p.input_ring_size,
            output_ring_size: p.output_ring_size,
            processor_core: p.processor_core,
            layout: p.layout,
            processor_wait: p.processor_wait,
            journal_wait: p.journal_wait,
            consumer_wait: p.consumer_wait,
        }
    }
}

impl PipelineSettings {
    pub fn to_config(&self) -> PipelineConfig {
        PipelineConfig {
            input_ring_size: self.input_ring_size,
            output_ring_size: self.output_ring_size,
            journal_wait: self.journal_wait,
            processor_wait: self.processor_wait,
            consumer_wait: self.consumer_wait,
            processor_core: self.processor_core,
            layout: self.layout,
            on_processor_start: None,
        }
    }
}

/// `[feed]`: the market-data source (see `crate::market_data`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    pub enabled: bool,
    /// `sim` (the simulated walk) or `replay:FILE` (a recorded file).
    pub source: String,
    /// The simulated walk's step interval.
    pub interval_ms: u64,
    pub seed: u64,
    /// A replay's pace: a multiple of the recorded pace, 0 for as fast as the engine takes it.
    pub speed: f64,
    /// Record what the source delivers to this file (docs/market-data.md, "File format").
    pub record: Option<PathBuf>,
    /// How often the candle writer stores the changed candles.
    pub candle_flush_ms: u64,
    /// The KIS source (`source = "kis"`): hosts, symbols, thresholds.
    pub kis: crate::market_data::KisSettings,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            enabled: true,
            source: "sim".to_owned(),
            interval_ms: 200,
            seed: 0x6b75_6b75,
            speed: 1.0,
            record: None,
            candle_flush_ms: 1_000,
            kis: crate::market_data::KisSettings::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// `every-batch` or `none`.
    pub durability: String,
    /// With `durability = "none"`: every this many milliseconds a helper thread syncs the
    /// committed frames and moves the durable watermark to them, which bounds what a power
    /// loss can take and makes damage before it a hard error (0: only at a clean stop).
    pub watermark_interval_ms: u64,
    pub segment_mib: u64,
    pub schedule: ScheduleMode,
    /// A CSV universe (code,name,market,reference_price_krw) registered on a fresh journal;
    /// `None`: the embedded demo universe.
    pub universe: Option<PathBuf>,
    /// Take a snapshot after this many commands (0: never, except on request).
    pub snapshot_every: u64,
    pub pipeline: PipelineSettings,
    pub feed: FeedSettings,
    /// The query store: `mysql://...`, `sqlite:PATH`, or `none`; default: an embedded SQLite
    /// file under the data directory (see `crate::database`).
    pub database_url: Option<String>,
    pub database: DatabaseSettings,
    /// The TCP gateway (`kuku serve`); see `crate::gateway`.
    pub gateway: GatewaySettings,
    /// The HTTP API (`kuku serve`); see `crate::http` and docs/api.md.
    pub http: crate::http::HttpSettings,
    /// Replication to hot standbys and failover; see `crate::replication`.
    pub replication: crate::replication::ReplicationSettings,
    /// Where `GET /metrics` (Prometheus text) is served, e.g. `127.0.0.1:7880`; `None`: off.
    pub metrics_listen: Option<String>,
    pub engine: EngineConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("kuku-data"),
            durability: "every-batch".to_owned(),
            watermark_interval_ms: 1_000,
            segment_mib: 64,
            schedule: ScheduleMode::Krx,
            universe: None,
            snapshot_every: 1_000_000,
            pipeline: PipelineSettings::default(),
            feed: FeedSettings::default(),
            database_url: None,
            database: DatabaseSettings::default(),
            gateway: GatewaySettings::default(),
            http: crate::http::HttpSettings::default(),
            replication: Default::default(),
            metrics_listen: None,
            engine: EngineConfig {
                orders_max: 1 << 19,
                // A market maker or a load test sends far more than a retail account's 10,000
                // requests a day; the day's total stays bounded by `keys_max` (2M).
                orders_per_account_day_max: 1_000_000,
                ..EngineConfig::default()
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl NodeConfig {
    /// Defaults overlaid with the TOML file at `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn durability(&self) -> Result<Durability, ConfigError> {
        self.durability.parse().map_err(|e| ConfigError::Invalid {
            field: "durability",
            message: format!("{e}"),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.durability()?;
        self.replication.validate()?;
        crate::market_data::SourceChoice::parse(&self.feed.source).map_err(|message| {
            ConfigError::Invalid {
                field: "feed.source",
                message,
            }
        })?;
        if kuku_marketdata::Speed::new(self.feed.speed).is_none() {
            return Err(ConfigError::Invalid {
                field: "feed.speed",
                message: format!(
                    "{} is not 0 (unpaced) or a multiple in (0, {}]",
                    self.feed.speed,
                    kuku_marketdata::Speed::MAX
                ),
            });
        }
        self.http
            .validate()
            .map_err(|message| ConfigError::Invalid {
                field: "http",
                message,
            })?;
        for (field, n) in [
            ("pipeline.input_ring_size", self.pipeline.input_ring_size),
            ("pipeline.output_ring_size", self.pipeline.output_ring_size),
        ] {
            if !n.is_power_of_two() || n < 64 {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{n} is not a power of two >= 64"),
                });
            }
        }
        if self.segment_mib == 0 {
            return Err(ConfigError::Invalid {
                field: "segment_mib",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_or_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kuku.toml");
        std::fs::write(
            &path,
            "durability = \"none\"\n[pipeline]\nprocessor_core = 1\nprocessor_wait = \"busy-spin\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(&path).unwrap();
        assert_eq!(c.durability().unwrap(), Durability::None);
        assert_eq!(c.pipeline.processor_core, Some(1));
        assert_eq!(c.pipeline.processor_wait, Wait::BusySpin);
        assert_eq!(c.pipeline.layout, Layout::Fused, "the default");
        assert_eq!(c.pipeline.consumer_wait, Wait::Block, "the default");
        assert_eq!(c.feed, FeedSettings::default());

        std::fs::write(
            &path,
            "[pipeline]\nlayout = \"staged\"\njournal_wait = \"backoff\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(&path).unwrap();
        assert_eq!(c.pipeline.to_config().layout, Layout::Staged);
        assert_eq!(c.pipeline.to_config().journal_wait, Wait::Backoff);
        std::fs::write(&path, "[pipeline]\nlayout = \"sideways\"\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("layout") || e.contains("sideways"), "{e}");

        std::fs::write(&path, "durabilty = \"none\"\n").unwrap();
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(&path, "durability = \"sometimes\"\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("durability"), "{e}");
        std::fs::write(&path, "[feed]\nsource = \"bloomberg\"\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("feed.source"), "{e}");
        std::fs::write(
            &path,
            "[feed]\nsource = \"replay:md.jsonl\"\nspeed = -1.0\n",
        )
        .unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("feed.speed"), "{e}");
        std::fs::write(&path, "[feed]\nsource = \"replay:md.jsonl\"\nspeed = 0.0\n").unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap().feed.speed, 0.0);
        std::fs::write(&path, "[pipeline]\ninput_ring_size = 1000\n").unwrap();
        assert!(NodeConfig::load(&path).is_err());
        assert!(matches!(
            NodeConfig::load(&dir.path().join("missing.toml")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn feed_kis_defaults_to_the_https_mock_host_and_takes_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kuku.toml");
        std::fs::write(&path, "[feed]\nsource = \"kis\"\n").unwrap();
        let kis = NodeConfig::load(&path).unwrap().feed.kis;
        assert_eq!(kis.rest_base, kuku_kis::config::MOCK_REST_HOST);
        assert!(kis.rest_base.starts_with("https://"));
        assert_eq!(kis.rest_ca_file, None);

        std::fs::write(
            &path,
            "[feed.kis]\nrest_base = \"https://openapi.koreainvestment.com:9443\"\n\
             rest_ca_file = \"private-ca.pem\"\n",
        )
        .unwrap();
        let kis = NodeConfig::load(&path).unwrap().feed.kis;
        assert_eq!(kis.rest_base, "https://openapi.koreainvestment.com:9443");
        assert_eq!(kis.rest_ca_file, Some(PathBuf::from("private-ca.pem")));
    }
}
