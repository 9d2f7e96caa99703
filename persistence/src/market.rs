//! The market-data tables: candles (written by the node's candle writer) and the reference
//! domain (markets, reference symbols, external mappings; written by `kuku reference`).
//!
//! These rows are not derived from the journal: the candles come from the market's ticks,
//! the reference data from operators. Reconciliation does not compare them.
//!
//! **Invariants**: a candle row is the newest state of its (code, interval, start) (an
//! upsert); a mapping row points at a reference symbol on both databases (checked in the same
//! transaction, since SQLite does not enforce foreign keys by default); every value read back
//! is validated by the market-data model before it is returned.
//!
//! **Performance**: candles are upserted in one transaction per flush, one statement per
//! candle (a flush holds at most a few per symbol and interval); a range read is a primary-key
//! range scan.
//!
//! **Known limitations**: no deletion of reference data (a delisting is a status).

use kuku_engine::{Price, Qty, SymbolCode};
use kuku_marketdata::reference::{parse_tick_rule, tick_rule_to_str};
use kuku_marketdata::{
    Candle, Interval, Isin, ListingStatus, Mapping, MarketCode, ReferenceBook, ReferenceSymbol,
    TimestampNs,
};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::Database;
use crate::error::PersistenceError;
use crate::url::Backend;

/// Which end of a candle range a limited read takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CandleEnd {
    Oldest,
    Newest,
}

/// The most candles one range read returns.
pub const CANDLES_PER_READ_MAX: u32 = 10_000;

const CANDLE_COLUMNS: &str =
    "code, interval_code, start_ns, open_price, high_price, low_price, close_price, volume, trades";
const SYMBOL_COLUMNS: &str =
    "code, isin, name_ko, name_en, market_code, tick_rule, lot_size, listing_status";

fn db(op: &'static str) -> impl Fn(sqlx::Error) -> PersistenceError {
    move |error| PersistenceError::Database { op, error }
}

fn corrupt(what: impl std::fmt::Display) -> PersistenceError {
    PersistenceError::Corrupt(what.to_string())
}

fn ns_to_db(ts: TimestampNs) -> i64 {
    i64::try_from(ts.0).unwrap_or(i64::MAX)
}

/// `INSERT ... ` turned into an upsert of `updated` columns on `keys`, in the dialect.
fn upsert(backend: Backend, insert: &str, keys: &str, updated: &[&str]) -> String {
    let sets: Vec<String> = match backend {
        Backend::MySql => updated
            .iter()
            .map(|c| format!("{c} = VALUES({c})"))
            .collect(),
        Backend::Sqlite => updated
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect(),
    };
    match backend {
        Backend::MySql => format!("{insert} ON DUPLICATE KEY UPDATE {}", sets.join(", ")),
        Backend::Sqlite => format!(
            "{insert} ON CONFLICT ({keys}) DO UPDATE SET {}",
            sets.join(", ")
        ),
    }
}

impl Database {
    /// Writes candles (each the newest state of its interval) in one transaction.
    pub async fn upsert_candles(&self, candles: &[Candle]) -> Result<(), PersistenceError> {
        if candles.is_empty() {
            return Ok(());
        }
        let sql = upsert(
            self.backend(),
            &format!("INSERT INTO candles ({CANDLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            "code, interval_code, start_ns",
            &[
                "open_price",
                "high_price",
                "low_price",
                "close_price",
                "volume",
                "trades",
            ],
        );
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(db("starting a candle write"))?;
        for c in candles {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(c.symbol.as_str().to_owned())
                .bind(c.interval.as_str())
                .bind(ns_to_db(c.start_ns))
                .bind(c.open.0)
                .bind(c.high.0)
                .bind(c.low.0)
                .bind(c.close.0)
                .bind(c.volume)
                .bind(i64::try_from(c.trades).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(db("writing a candle"))?;
        }
        tx.commit().await.map_err(db("committing candles"))
    }

    /// Candles of `symbol` and `interval` starting in `[from, to)`, oldest first, at most
    /// `limit` (capped at [`CANDLES_PER_READ_MAX`]).
    pub async fn candles(
        &self,
        symbol: SymbolCode,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
        limit: u32,
    ) -> Result<Vec<Candle>, PersistenceError> {
        self.candle_range(symbol, interval, (from, to), limit, CandleEnd::Oldest)
            .await
    }

    /// The newest `limit` candles (capped at [`CANDLES_PER_READ_MAX`]) of `symbol` and
    /// `interval` starting in `[from, to)`, oldest first: what a chart of the latest candles
    /// reads (a primary-key range scan backwards).
    pub async fn newest_candles(
        &self,
        symbol: SymbolCode,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
        limit: u32,
    ) -> Result<Vec<Candle>, PersistenceError> {
        self.candle_range(symbol, interval, (from, to), limit, CandleEnd::Newest)
            .await
    }

    /// At most `limit` candles of a series starting in `[from, to)`, taken from `end` of the
    /// range, returned oldest first.
    async fn candle_range(
        &self,
        symbol: SymbolCode,
        interval: Interval,
        (from, to): (TimestampNs, TimestampNs),
        limit: u32,
        end: CandleEnd,
    ) -> Result<Vec<Candle>, PersistenceError> {
        let (order, what) = match end {
            CandleEnd::Oldest => ("", "reading candles"),
            CandleEnd::Newest => (" DESC", "reading the newest candles"),
        };
        let sql = format!(
            "SELECT {CANDLE_COLUMNS} FROM candles WHERE code = ? AND interval_code = ? \
             AND start_ns >= ? AND start_ns < ? ORDER BY start_ns{order} LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(symbol.as_str().to_owned())
            .bind(interval.as_str())
            .bind(ns_to_db(from))
            .bind(ns_to_db(to))
            .bind(i64::from(limit.min(CANDLES_PER_READ_MAX)))
            .fetch_all(self.pool())
            .await
            .map_err(db(what))?;
        let mut candles = rows.iter().map(candle_of).collect::<Result<Vec<_>, _>>()?;
        if end == CandleEnd::Newest {
            candles.reverse();
        }
        Ok(candles)
    }

    /// The newest candle of every symbol and interval: what a restarted node takes up
    /// (`CandleBuilder::resume`), so that an interval open across the restart keeps what it
    /// had. One row per series, read through the primary key.
    pub async fn latest_candles(&self) -> Result<Vec<Candle>, PersistenceError> {
        let sql = format!(
            "SELECT {CANDLE_COLUMNS} FROM candles c WHERE c.start_ns = (SELECT MAX(n.start_ns) \
             FROM candles n WHERE n.code = c.code AND n.interval_code = c.interval_code) \
             ORDER BY c.code, c.interval_code"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(db("reading the latest candles"))?;
        rows.iter().map(candle_of).collect()
    }

    /// The markets, in code order.
    pub async fn markets(&self) -> Result<Vec<MarketCode>, PersistenceError> {
        let rows = sqlx::query("SELECT market_code FROM markets ORDER BY market_code")
            .fetch_all(self.pool())
            .await
            .map_err(db("reading markets"))?;
        rows.iter()
            .map(|r| {
                let code: String = r.try_get("market_code").map_err(db("decoding a market"))?;
                MarketCode::parse(&code).map_err(corrupt)
            })
            .collect()
    }

    /// Registers a symbol's reference data, or replaces it.
    pub async fn register_reference_symbol(
        &self,
        s: &ReferenceSymbol,
    ) -> Result<(), PersistenceError> {
        s.validate()
            .map_err(|e| PersistenceError::Invalid(e.to_string()))?;
        let sql = upsert(
            self.backend(),
            &format!(
                "INSERT INTO reference_symbols ({SYMBOL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            "code",
            &[
                "isin",
                "name_ko",
                "name_en",
                "market_code",
                "tick_rule",
                "lot_size",
                "listing_status",
            ],
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(s.code.as_str().to_owned())
            .bind(s.isin.as_str().to_owned())
            .bind(s.name_ko.clone())
            .bind(s.name_en.clone())
            .bind(s.market.as_str())
            .bind(tick_rule_to_str(s.tick_rule))
            .bind(s.lot_size.0)
            .bind(s.status.as_str())
            .execute(self.pool())
            .await
            .map_err(db("registering a reference symbol"))?;
        Ok(())
    }

    /// Reference symbols in code order.
    pub async fn reference_symbols(&self) -> Result<Vec<ReferenceSymbol>, PersistenceError> {
        let sql = format!("SELECT {SYMBOL_COLUMNS} FROM reference_symbols ORDER BY code");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(db("reading reference symbols"))?;
        rows.iter().map(reference_symbol_of).collect()
    }

    /// Maps a provider's code to a registered symbol (replacing an older mapping of that
    /// code). Refused with [`PersistenceError::Invalid`] if the symbol is not registered.
    pub async fn map_symbol(&self, m: &Mapping) -> Result<(), PersistenceError> {
        m.validate()
            .map_err(|e| PersistenceError::Invalid(e.to_string()))?;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(db("starting a mapping"))?;
        let exists = sqlx::query("SELECT COUNT(*) AS n FROM reference_symbols WHERE code = ?")
            .bind(m.symbol.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(db("looking up a reference symbol"))?;
        let n: i64 = exists
            .try_get("n")
            .map_err(db("looking up a reference symbol"))?;
        if n == 0 {
            return Err(PersistenceError::Invalid(format!(
                "no symbol {} is registered in the reference data (`kuku reference register` it first)",
                m.symbol
            )));
        }
        let sql = upsert(
            self.backend(),
            "INSERT INTO symbol_mappings (provider, external_code, code) VALUES (?, ?, ?)",
            "provider, external_code",
            &["code"],
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(m.provider.clone())
            .bind(m.external_code.clone())
            .bind(m.symbol.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db("writing a mapping"))?;
        tx.commit().await.map_err(db("committing a mapping"))
    }

    /// Mappings in (provider, external code) order.
    pub async fn symbol_mappings(&self) -> Result<Vec<Mapping>, PersistenceError> {
        let rows = sqlx::query(
            "SELECT provider, external_code, code FROM symbol_mappings ORDER BY provider, external_code",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db("reading mappings"))?;
        rows.iter()
            .map(|r| {
                let text = |c: &str| -> Result<String, PersistenceError> {
                    r.try_get(c).map_err(db("decoding a mapping"))
                };
                let code = text("code")?;
                let m = Mapping {
                    provider: text("provider")?,
                    external_code: text("external_code")?,
                    symbol: SymbolCode::new(&code)
                        .ok_or_else(|| corrupt(format!("code {code:?}")))?,
                };
                m.validate().map_err(corrupt)?;
                Ok(m)
            })
            .collect()
    }

    /// The whole reference book (what the market-data service loads at start-up).
    pub async fn reference_book(&self) -> Result<ReferenceBook, PersistenceError> {
        let mut book = ReferenceBook::default();
        for s in self.reference_symbols().await? {
            book.register(s).map_err(corrupt)?;
        }
        for m in self.symbol_mappings().await? {
            book.map(m).map_err(corrupt)?;
        }
        Ok(book)
    }
}

fn text(row: &AnyRow, column: &str) -> Result<String, PersistenceError> {
    row.try_get(column).map_err(db("decoding a row"))
}

fn int(row: &AnyRow, column: &str) -> Result<i64, PersistenceError> {
    row.try_get(column).map_err(db("decoding a row"))
}

fn candle_of(row: &AnyRow) -> Result<Candle, PersistenceError> {
    let code = text(row, "code")?;
    let interval = text(row, "interval_code")?;
    let start = int(row, "start_ns")?;
    let trades = int(row, "trades")?;
    let candle = Candle {
        symbol: SymbolCode::new(&code).ok_or_else(|| corrupt(format!("candle code {code:?}")))?,
        interval: Interval::parse(&interval)
            .ok_or_else(|| corrupt(format!("candle interval {interval:?}")))?,
        start_ns: TimestampNs(
            u64::try_from(start).map_err(|_| corrupt(format!("start_ns {start}")))?,
        ),
        open: Price(int(row, "open_price")?),
        high: Price(int(row, "high_price")?),
        low: Price(int(row, "low_price")?),
        close: Price(int(row, "close_price")?),
        volume: int(row, "volume")?,
        trades: u64::try_from(trades).map_err(|_| corrupt(format!("trades {trades}")))?,
    };
    let ordered =
        candle.low <= candle.open.min(candle.close) && candle.open.max(candle.close) <= candle.high;
    if !ordered || candle.trades == 0 || candle.volume < 0 {
        return Err(corrupt(format!("candle {candle:?}")));
    }
    Ok(candle)
}

fn reference_symbol_of(row: &AnyRow) -> Result<ReferenceSymbol, PersistenceError> {
    let code = text(row, "code")?;
    let s = ReferenceSymbol {
        code: SymbolCode::new(&code).ok_or_else(|| corrupt(format!("code {code:?}")))?,
        isin: Isin::parse(&text(row, "isin")?).map_err(corrupt)?,
        name_ko: text(row, "name_ko")?,
        name_en: text(row, "name_en")?,
        market: MarketCode::parse(&text(row, "market_code")?).map_err(corrupt)?,
        tick_rule: parse_tick_rule(&text(row, "tick_rule")?).map_err(corrupt)?,
        lot_size: Qty(int(row, "lot_size")?),
        status: ListingStatus::parse(&text(row, "listing_status")?).map_err(corrupt)?,
    };
    s.validate().map_err(corrupt)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_follow_the_dialect() {
        let m = upsert(
            Backend::MySql,
            "INSERT INTO t (a, b) VALUES (?, ?)",
            "a",
            &["b"],
        );
        assert!(m.ends_with("ON DUPLICATE KEY UPDATE b = VALUES(b)"), "{m}");
        let s = upsert(
            Backend::Sqlite,
            "INSERT INTO t (a, b) VALUES (?, ?)",
            "a",
            &["b"],
        );
        assert!(
            s.ends_with("ON CONFLICT (a) DO UPDATE SET b = excluded.b"),
            "{s}"
        );
    }
}
