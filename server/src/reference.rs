//! `kuku reference`: the reference data in the query database (markets, symbols as the market
//! lists them, provider mappings) and the stored candles, listed as JSON lines, registered and
//! mapped by an operator.
//!
//! The engine's `RegisterSymbol` (through `kuku admin`) carries only what matching and fees
//! need; what a user reads about a symbol (ISIN, Korean and English names, listing status)
//! and how a provider's code resolves is registered here. A running node loads the reference
//! data at start-up.
//!
//! **Invariants**: every value is validated before anything is written (an ISIN's check
//! digit, name lengths, a mapping's symbol registered); a refusal writes nothing.
//!
//! **Known limitations**: no delete (a delisting is `--status delisted`); a running node sees
//! changes at its next start.

use crate::config::NodeConfig;
use anyhow::Context;
use clap::Subcommand;
use kuku_engine::{Qty, SymbolCode};
use kuku_marketdata::reference::parse_tick_rule;
use kuku_marketdata::{
    Interval, Isin, ListingStatus, Mapping, MarketCode, ReferenceSymbol, TimestampNs,
};
use kuku_persistence::{ConnectOptions, Database};
use std::io::Write;
use std::time::Duration;

#[derive(Subcommand, Debug, Clone)]
pub enum ReferenceCommand {
    /// The markets (KOSPI, KOSDAQ) with their operator and session.
    Markets,
    /// The registered symbols, optionally of one market.
    Symbols {
        #[arg(long)]
        market: Option<String>,
    },
    /// Register a symbol's reference data (or replace it).
    Register {
        /// The KRX short code, e.g. 005930.
        #[arg(long)]
        code: String,
        /// The ISIN, e.g. KR7005930003 (the check digit is verified).
        #[arg(long)]
        isin: String,
        #[arg(long)]
        name_ko: String,
        #[arg(long)]
        name_en: String,
        /// KOSPI or KOSDAQ.
        #[arg(long)]
        market: String,
        /// `krx` (the KRX tick table) or `fixed:N`.
        #[arg(long, default_value = "krx")]
        tick_rule: String,
        #[arg(long, default_value_t = 1)]
        lot: i64,
        /// listed, suspended or delisted.
        #[arg(long, default_value = "listed")]
        status: String,
    },
    /// Map a provider's code to a registered symbol (replacing an older mapping of that code).
    Map {
        /// The provider, e.g. kis.
        #[arg(long)]
        provider: String,
        /// The provider's code for the symbol.
        #[arg(long)]
        external_code: String,
        /// The symbol's code.
        #[arg(long)]
        code: String,
    },
    /// The provider mappings, optionally of one provider.
    Mappings {
        #[arg(long)]
        provider: Option<String>,
    },
    /// The stored candles of a symbol and interval (1m, 5m, 1h, 1d), oldest first from
    /// `--from-ns`, at most `--limit`.
    Candles {
        #[arg(long)]
        code: String,
        #[arg(long, default_value = "1m")]
        interval: String,
        /// Only candles starting at or after this Unix time in nanoseconds.
        #[arg(long, default_value_t = 0)]
        from_ns: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn code(s: &str) -> anyhow::Result<SymbolCode> {
    SymbolCode::new(s)
        .filter(|c| !c.is_empty() && c.as_str().bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| anyhow::anyhow!("the code {s:?} is not 1 to 12 ASCII letters or digits"))
}

/// Runs one command against the node's query database; writes JSON lines to `out`.
pub fn run(
    config: &NodeConfig,
    command: ReferenceCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let url = crate::database::database_url(config)?.ok_or_else(|| {
        anyhow::anyhow!("reference data lives in the query database: --database-url is none")
    })?;
    let options = ConnectOptions {
        connections_max: 1,
        connect_timeout: Duration::from_secs(config.database.connect_timeout_s.max(1)),
        statement_timeout: Duration::from_millis(config.database.statement_timeout_ms.max(1)),
        migrate: true,
    };
    kuku_persistence::block_on(async {
        let db = Database::connect(&url, &options).await?;
        let result = execute(&db, command, out).await;
        db.close().await;
        result
    })
}

async fn execute(
    db: &Database,
    command: ReferenceCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut line = |value: &dyn erased::Json| -> anyhow::Result<()> {
        writeln!(out, "{}", value.json()?).context("cannot write the output")
    };
    match command {
        ReferenceCommand::Markets => {
            for m in db.markets().await? {
                line(&m.info())?;
            }
        }
        ReferenceCommand::Symbols { market } => {
            let market = market.as_deref().map(MarketCode::parse).transpose()?;
            for s in db.reference_symbols().await? {
                if market.is_none_or(|m| s.market == m) {
                    line(&s)?;
                }
            }
        }
        ReferenceCommand::Register {
            code: c,
            isin,
            name_ko,
            name_en,
            market,
            tick_rule,
            lot,
            status,
        } => {
            let symbol = ReferenceSymbol {
                code: code(&c)?,
                isin: Isin::parse(&isin)?,
                name_ko,
                name_en,
                market: MarketCode::parse(&market)?,
                tick_rule: parse_tick_rule(&tick_rule)?,
                lot_size: Qty(lot),
                status: ListingStatus::parse(&status)?,
            };
            symbol.validate()?;
            db.register_reference_symbol(&symbol).await?;
            line(&symbol)?;
        }
        ReferenceCommand::Map {
            provider,
            external_code,
            code: c,
        } => {
            let mapping = Mapping {
                provider,
                external_code,
                symbol: code(&c)?,
            };
            db.map_symbol(&mapping).await?;
            line(&mapping)?;
        }
        ReferenceCommand::Mappings { provider } => {
            for m in db.symbol_mappings().await? {
                if provider.as_ref().is_none_or(|p| &m.provider == p) {
                    line(&m)?;
                }
            }
        }
        ReferenceCommand::Candles {
            code: c,
            interval,
            from_ns,
            limit,
        } => {
            let interval = Interval::parse(&interval).ok_or_else(|| {
                anyhow::anyhow!("the interval {interval:?} is not 1m, 5m, 1h or 1d")
            })?;
            let candles = db
                .candles(
                    code(&c)?,
                    interval,
                    TimestampNs(from_ns),
                    TimestampNs(u64::MAX),
                    limit,
                )
                .await?;
            for candle in &candles {
                line(candle)?;
            }
        }
    }
    Ok(())
}

/// One JSON line of any serializable value.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Result<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}
