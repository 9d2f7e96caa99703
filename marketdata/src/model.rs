//! The source-independent market model: a [`Quote`] (up to ten price levels each side and the
//! last trade), a [`Tick`] (one market trade with its aggressor side), a [`LastPrice`] (a
//! symbol's last traded price as a provider's snapshot reports it, without a book or a size)
//! and the [`MarketEvent`] a [`crate::Source`] delivers.
//!
//! Every value that comes from outside (a recorded file, a provider's feed) goes through
//! [`Quote::validate`] / [`Tick::validate`] before the service keeps it or the engine sees its
//! top of book.
//!
//! **Invariants** (of a validated quote): bids strictly descending, asks strictly ascending,
//! at most [`LEVELS_MAX`] per side, every price in `1..=PRICE_MAX`, every quantity in
//! `1..=QTY_MAX`, and, when both sides exist, best bid < best ask (not crossed or locked).
//! A validated tick has a price in `1..=PRICE_MAX` and a quantity in `1..=QTY_MAX`.
//!
//! **Performance**: a quote is a fixed-size value (two inline arrays of ten levels, about
//! 360 bytes): no allocation per quote.
//!
//! **Known limitations**: one last trade per quote (the service keeps the recent ticks);
//! prices are whole KRW on the KRX grid (no fractional prices).

use kuku_engine::limits::{PRICE_MAX, QTY_MAX};
use kuku_engine::{Price, Qty, Side, SymbolCode};
use serde::{Deserialize, Serialize};

/// The deepest book a quote carries, per side (KRX publishes ten levels).
pub const LEVELS_MAX: usize = 10;

/// Nanoseconds since the Unix epoch, as the source stamped the event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TimestampNs(pub u64);

/// One price level: a price and the quantity resting at it. Written as `[price, qty]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(Price, Qty)", into = "(Price, Qty)")]
pub struct Level {
    pub price: Price,
    pub qty: Qty,
}

impl Level {
    pub fn new(price: i64, qty: i64) -> Level {
        Level {
            price: Price(price),
            qty: Qty(qty),
        }
    }
}

impl From<(Price, Qty)> for Level {
    fn from((price, qty): (Price, Qty)) -> Level {
        Level { price, qty }
    }
}

impl From<Level> for (Price, Qty) {
    fn from(level: Level) -> (Price, Qty) {
        (level.price, level.qty)
    }
}

/// Up to [`LEVELS_MAX`] levels of one side, best first, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Level>", into = "Vec<Level>")]
pub struct Levels {
    len: u8,
    levels: [Level; LEVELS_MAX],
}

impl Levels {
    pub const EMPTY: Levels = Levels {
        len: 0,
        levels: [Level {
            price: Price(0),
            qty: Qty(0),
        }; LEVELS_MAX],
    };

    /// The levels of `slice`, best first; `None` if there are more than [`LEVELS_MAX`].
    pub fn from_slice(slice: &[Level]) -> Option<Levels> {
        if slice.len() > LEVELS_MAX {
            return None;
        }
        let mut levels = Levels::EMPTY;
        levels.levels[..slice.len()].copy_from_slice(slice);
        levels.len = slice.len() as u8;
        Some(levels)
    }

    /// Appends a level (worse than the ones before); false when the side is full.
    pub fn push(&mut self, level: Level) -> bool {
        let n = self.len as usize;
        if n == LEVELS_MAX {
            return false;
        }
        self.levels[n] = level;
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[Level] {
        &self.levels[..self.len as usize]
    }

    pub fn best(&self) -> Option<Level> {
        self.as_slice().first().copied()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Levels {
    fn default() -> Self {
        Levels::EMPTY
    }
}

impl std::fmt::Debug for Levels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl TryFrom<Vec<Level>> for Levels {
    type Error = String;

    fn try_from(levels: Vec<Level>) -> Result<Levels, String> {
        Levels::from_slice(&levels).ok_or_else(|| {
            format!(
                "{} levels on one side, at most {LEVELS_MAX} are allowed",
                levels.len()
            )
        })
    }
}

impl From<Levels> for Vec<Level> {
    fn from(levels: Levels) -> Vec<Level> {
        levels.as_slice().to_vec()
    }
}

/// The last trade a quote reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LastTrade {
    pub price: Price,
    pub qty: Qty,
    pub ts_ns: TimestampNs,
}

/// A symbol's book as the market shows it: up to ten levels each side and the last trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quote {
    pub symbol: SymbolCode,
    pub ts_ns: TimestampNs,
    pub bids: Levels,
    pub asks: Levels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trade: Option<LastTrade>,
}

/// The best bid and ask of a quote: what the engine receives (`Command::QuoteUpdate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopOfBook {
    pub bid: Level,
    pub ask: Level,
}

impl Quote {
    /// Checks the invariants in the module docs.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_code(&self.symbol)?;
        check_side(&self.bids, Side::Buy)?;
        check_side(&self.asks, Side::Sell)?;
        if let (Some(bid), Some(ask)) = (self.bids.best(), self.asks.best())
            && bid.price >= ask.price
        {
            return Err(ModelError::Crossed {
                bid: bid.price.0,
                ask: ask.price.0,
            });
        }
        if let Some(t) = &self.last_trade {
            check_price(t.price)?;
            check_qty(t.qty)?;
        }
        Ok(())
    }

    /// The best bid and ask, or `None` if a side is empty (the engine takes two-sided quotes).
    pub fn top_of_book(&self) -> Option<TopOfBook> {
        Some(TopOfBook {
            bid: self.bids.best()?,
            ask: self.asks.best()?,
        })
    }
}

/// One market trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tick {
    pub symbol: SymbolCode,
    pub ts_ns: TimestampNs,
    pub price: Price,
    pub qty: Qty,
    /// The side whose order took liquidity (`Buy`: a buyer lifted the ask).
    pub aggressor: Side,
}

impl Tick {
    pub fn validate(&self) -> Result<(), ModelError> {
        check_code(&self.symbol)?;
        check_price(self.price)?;
        check_qty(self.qty)
    }
}

/// A symbol's last traded price as a provider reports it on request (the KIS REST fallback
/// for a symbol whose stream is silent). It says neither when that trade happened nor its
/// size, so it is not a [`Tick`]; it carries no book, so it is not a [`Quote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LastPrice {
    pub symbol: SymbolCode,
    /// When the source received the price (not when the trade happened).
    pub ts_ns: TimestampNs,
    pub price: Price,
}

impl LastPrice {
    pub fn validate(&self) -> Result<(), ModelError> {
        check_code(&self.symbol)?;
        check_price(self.price)
    }
}

/// What a source delivers. Not boxed: events travel in buffers the pump reuses, and a boxed
/// quote would cost an allocation per quote.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MarketEvent {
    Quote(Quote),
    Tick(Tick),
    /// Written `"kind":"last_price"` (recorded files of format version 2 on).
    LastPrice(LastPrice),
}

impl MarketEvent {
    pub fn ts_ns(&self) -> TimestampNs {
        match self {
            MarketEvent::Quote(q) => q.ts_ns,
            MarketEvent::Tick(t) => t.ts_ns,
            MarketEvent::LastPrice(l) => l.ts_ns,
        }
    }

    /// Restamps the event (a recorder clamping a clock that stepped back, a source stamping
    /// at delivery).
    pub fn set_ts_ns(&mut self, ts_ns: TimestampNs) {
        match self {
            MarketEvent::Quote(q) => q.ts_ns = ts_ns,
            MarketEvent::Tick(t) => t.ts_ns = ts_ns,
            MarketEvent::LastPrice(l) => l.ts_ns = ts_ns,
        }
    }

    pub fn symbol(&self) -> SymbolCode {
        match self {
            MarketEvent::Quote(q) => q.symbol,
            MarketEvent::Tick(t) => t.symbol,
            MarketEvent::LastPrice(l) => l.symbol,
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            MarketEvent::Quote(q) => q.validate(),
            MarketEvent::Tick(t) => t.validate(),
            MarketEvent::LastPrice(l) => l.validate(),
        }
    }
}

/// Why a quote or tick is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the symbol code {0:?} is not 1 to 12 ASCII letters or digits")]
    InvalidCode(String),
    #[error("the price {0} is outside 1..={max}", max = PRICE_MAX)]
    PriceOutOfRange(i64),
    #[error("the quantity {0} is outside 1..={max}", max = QTY_MAX)]
    QtyOutOfRange(i64),
    #[error("the {side:?} levels are not strictly ordered best first at level {index}")]
    LevelsOutOfOrder { side: Side, index: usize },
    #[error("the quote is crossed or locked: bid {bid} >= ask {ask}")]
    Crossed { bid: i64, ask: i64 },
}

fn check_code(code: &SymbolCode) -> Result<(), ModelError> {
    let s = code.as_str();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ModelError::InvalidCode(s.to_owned()));
    }
    Ok(())
}

fn check_price(price: Price) -> Result<(), ModelError> {
    if !(1..=PRICE_MAX).contains(&price.0) {
        return Err(ModelError::PriceOutOfRange(price.0));
    }
    Ok(())
}

fn check_qty(qty: Qty) -> Result<(), ModelError> {
    if !(1..=QTY_MAX).contains(&qty.0) {
        return Err(ModelError::QtyOutOfRange(qty.0));
    }
    Ok(())
}

fn check_side(levels: &Levels, side: Side) -> Result<(), ModelError> {
    let slice = levels.as_slice();
    for (index, level) in slice.iter().enumerate() {
        check_price(level.price)?;
        check_qty(level.qty)?;
        if index > 0 {
            let previous = slice[index - 1].price;
            let ordered = match side {
                Side::Buy => level.price < previous,
                Side::Sell => level.price > previous,
            };
            if !ordered {
                return Err(ModelError::LevelsOutOfOrder { side, index });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> SymbolCode {
        SymbolCode::new("005930").expect("a valid code")
    }

    fn quote(bids: &[Level], asks: &[Level]) -> Quote {
        Quote {
            symbol: code(),
            ts_ns: TimestampNs(1),
            bids: Levels::from_slice(bids).expect("at most ten"),
            asks: Levels::from_slice(asks).expect("at most ten"),
            last_trade: None,
        }
    }

    #[test]
    fn a_ten_level_quote_in_order_is_valid_and_its_top_is_the_best_levels() {
        let bids: Vec<_> = (0..10).map(|i| Level::new(71_000 - 100 * i, 1)).collect();
        let asks: Vec<_> = (0..10).map(|i| Level::new(71_100 + 100 * i, 1)).collect();
        let q = quote(&bids, &asks);
        assert_eq!(q.validate(), Ok(()));
        let top = q.top_of_book().expect("two-sided");
        assert_eq!(
            (top.bid.price, top.ask.price),
            (Price(71_000), Price(71_100))
        );
    }

    #[test]
    fn crossed_locked_and_unordered_quotes_are_refused() {
        let locked = quote(&[Level::new(100, 1)], &[Level::new(100, 1)]);
        assert_eq!(
            locked.validate(),
            Err(ModelError::Crossed { bid: 100, ask: 100 })
        );
        let unordered = quote(&[Level::new(100, 1), Level::new(100, 1)], &[]);
        assert_eq!(
            unordered.validate(),
            Err(ModelError::LevelsOutOfOrder {
                side: Side::Buy,
                index: 1
            })
        );
        let asks_down = quote(&[], &[Level::new(200, 1), Level::new(150, 1)]);
        assert!(matches!(
            asks_down.validate(),
            Err(ModelError::LevelsOutOfOrder {
                side: Side::Sell,
                ..
            })
        ));
    }

    #[test]
    fn prices_and_quantities_are_checked_at_both_extremes() {
        for (price, ok) in [
            (0, false),
            (1, true),
            (PRICE_MAX, true),
            (PRICE_MAX + 1, false),
            (-1, false),
            (i64::MAX, false),
        ] {
            let q = quote(&[Level::new(price, 1)], &[]);
            assert_eq!(q.validate().is_ok(), ok, "price {price}");
        }
        for (qty, ok) in [
            (0, false),
            (1, true),
            (QTY_MAX, true),
            (QTY_MAX + 1, false),
            (i64::MIN, false),
        ] {
            let t = Tick {
                symbol: code(),
                ts_ns: TimestampNs(0),
                price: Price(1),
                qty: Qty(qty),
                aggressor: Side::Buy,
            };
            assert_eq!(t.validate().is_ok(), ok, "qty {qty}");
        }
    }

    #[test]
    fn more_than_ten_levels_do_not_parse() {
        let levels: Vec<_> = (0..11).map(|i| Level::new(1_000 - i, 1)).collect();
        assert!(Levels::from_slice(&levels).is_none());
        let json = serde_json::to_string(&levels).expect("serializable");
        assert!(serde_json::from_str::<Levels>(&json).is_err());
        let mut full = Levels::from_slice(&levels[..10]).expect("ten fit");
        assert!(!full.push(Level::new(1, 1)));
    }

    #[test]
    fn a_last_price_is_checked_at_both_extremes_of_its_price() {
        for (price, ok) in [
            (i64::MIN, false),
            (0, false),
            (1, true),
            (PRICE_MAX, true),
            (PRICE_MAX + 1, false),
            (i64::MAX, false),
        ] {
            let last = MarketEvent::LastPrice(LastPrice {
                symbol: code(),
                ts_ns: TimestampNs(u64::MAX),
                price: Price(price),
            });
            assert_eq!(last.validate().is_ok(), ok, "price {price}");
        }
    }

    #[test]
    fn a_one_sided_quote_has_no_top_of_book() {
        let q = quote(&[Level::new(100, 1)], &[]);
        assert_eq!(q.validate(), Ok(()));
        assert_eq!(q.top_of_book(), None);
    }
}
