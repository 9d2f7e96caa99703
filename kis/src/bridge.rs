//! From KIS events to engine commands: the top of each ten-level book becomes a
//! `QuoteUpdate`, and the quote age of each symbol becomes a journaled `SetQuoteStatus`
//! whenever it crosses `stale_after` (ADR-023). This is the only place the stale decision
//! reads a clock; the engine sees the decision as a command, so a replay decides the same.
//!
//! **Invariants**: a `Stale` status for a symbol is always followed by `Fresh` before its
//! next `QuoteUpdate` (quotes of a stale symbol would be refused with 5007); a book with an
//! empty side withdraws that side (size 0); trades refresh the age but carry no liquidity;
//! REST fallback prices (a last price, not a quote) do neither.
//!
//! **Performance**: O(1) per event; `tick` is O(symbols).
//!
//! **Known limitations**: KRX sizes are passed through unchanged (the engine checks them
//! against the lot size); a symbol missing from the id map is ignored.

use crate::frame::{Book, Record, ShortCode};
use crate::session::KisEvent;
use crate::staleness::{QuoteStatus, StaleTracker};
use kuku_engine::{Command, Price, Qty, SymbolId};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The bridge of one adapter.
pub struct QuoteBridge {
    ids: BTreeMap<ShortCode, SymbolId>,
    tracker: StaleTracker,
    stale: BTreeMap<ShortCode, bool>,
    transitions: Vec<(ShortCode, QuoteStatus)>,
}

fn engine_status(status: QuoteStatus) -> kuku_engine::QuoteStatus {
    match status {
        QuoteStatus::Fresh => kuku_engine::QuoteStatus::Fresh,
        QuoteStatus::Stale => kuku_engine::QuoteStatus::Stale,
    }
}

/// The engine's view of a book's best levels.
pub fn top_of_book(symbol: SymbolId, book: &Book) -> Command {
    let bid = book.bids[0];
    let ask = book.asks[0];
    let side = |price: Price, qty: Qty| {
        if price.0 > 0 {
            (price, qty)
        } else {
            (Price(0), Qty(0))
        }
    };
    let (bid_price, bid_qty) = side(bid.price, bid.qty);
    let (ask_price, ask_qty) = side(ask.price, ask.qty);
    Command::QuoteUpdate {
        symbol,
        bid_price,
        bid_qty,
        ask_price,
        ask_qty,
    }
}

impl QuoteBridge {
    /// `ids`: the engine's id of each subscribed symbol.
    pub fn new(ids: BTreeMap<ShortCode, SymbolId>, stale_after: Duration) -> QuoteBridge {
        let codes: Vec<ShortCode> = ids.keys().copied().collect();
        QuoteBridge {
            tracker: StaleTracker::new(&codes, stale_after),
            stale: BTreeMap::new(),
            ids,
            transitions: Vec::new(),
        }
    }

    /// Appends the commands `event` (received at `now`) calls for.
    pub fn on_event(&mut self, event: &KisEvent, now: Instant, out: &mut Vec<Command>) {
        // A fallback price is a last price, not a quote: it does not refresh the quote age.
        let code = match event {
            KisEvent::Record(record) => record.code(),
            KisEvent::FallbackPrice { .. }
            | KisEvent::Connected
            | KisEvent::Disconnected { .. } => {
                return;
            }
        };
        let Some(&symbol) = self.ids.get(&code) else {
            return;
        };
        self.tracker.observe(code, now);
        if let KisEvent::Record(Record::Book(book)) = event {
            // A stale symbol turns fresh before its first new quote.
            self.tick(now, out);
            out.push(top_of_book(symbol, book));
        }
    }

    /// Appends a `SetQuoteStatus` for every symbol whose status changed by `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Command>) {
        self.transitions.clear();
        self.tracker.transitions(now, &mut self.transitions);
        for (code, status) in self.transitions.drain(..) {
            let Some(&symbol) = self.ids.get(&code) else {
                continue;
            };
            let stale = status == QuoteStatus::Stale;
            // Symbols start fresh in the engine: the first verdict is sent only if stale.
            let was_stale = self.stale.insert(code, stale).unwrap_or(false);
            if stale != was_stale {
                out.push(Command::SetQuoteStatus {
                    symbol,
                    status: engine_status(status),
                });
            }
        }
    }

    pub fn quote_age(&self, code: ShortCode, now: Instant) -> Option<Duration> {
        self.tracker.age(code, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{BOOK_LEVELS, BookLevel, KstTime};

    fn code(s: &str) -> ShortCode {
        ShortCode::parse(s).expect("code")
    }

    fn book(best_bid: i64, best_ask: i64) -> KisEvent {
        let mut asks = [BookLevel::default(); BOOK_LEVELS];
        let mut bids = [BookLevel::default(); BOOK_LEVELS];
        asks[0] = BookLevel {
            price: Price(best_ask),
            qty: Qty(if best_ask > 0 { 7 } else { 0 }),
        };
        bids[0] = BookLevel {
            price: Price(best_bid),
            qty: Qty(if best_bid > 0 { 9 } else { 0 }),
        };
        KisEvent::Record(Record::Book(Book {
            code: code("005930"),
            time: KstTime {
                seconds_of_day: 32_400,
            },
            asks,
            bids,
        }))
    }

    fn bridge() -> QuoteBridge {
        QuoteBridge::new(
            [(code("005930"), SymbolId(1))].into_iter().collect(),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn a_book_becomes_a_quote_update_of_its_best_levels() {
        let mut b = bridge();
        let mut out = Vec::new();
        b.on_event(&book(70_900, 71_100), Instant::now(), &mut out);
        assert_eq!(
            out,
            vec![Command::QuoteUpdate {
                symbol: SymbolId(1),
                bid_price: Price(70_900),
                bid_qty: Qty(9),
                ask_price: Price(71_100),
                ask_qty: Qty(7),
            }]
        );
        out.clear();
        b.on_event(&book(70_900, 0), Instant::now(), &mut out);
        assert!(matches!(
            out[0],
            Command::QuoteUpdate {
                ask_qty: Qty(0),
                ask_price: Price(0),
                ..
            }
        ));
    }

    #[test]
    fn silence_past_the_threshold_sends_stale_once_and_the_next_book_sends_fresh_first() {
        let t0 = Instant::now();
        let mut b = bridge();
        let mut out = Vec::new();
        b.on_event(&book(70_900, 71_100), t0, &mut out);
        out.clear();
        b.tick(t0 + Duration::from_secs(29), &mut out);
        assert!(out.is_empty());
        b.tick(t0 + Duration::from_secs(30), &mut out);
        b.tick(t0 + Duration::from_secs(40), &mut out);
        assert_eq!(
            out,
            vec![Command::SetQuoteStatus {
                symbol: SymbolId(1),
                status: kuku_engine::QuoteStatus::Stale
            }]
        );
        out.clear();
        b.on_event(
            &book(70_900, 71_100),
            t0 + Duration::from_secs(41),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            Command::SetQuoteStatus {
                symbol: SymbolId(1),
                status: kuku_engine::QuoteStatus::Fresh
            }
        );
        assert!(matches!(out[1], Command::QuoteUpdate { .. }));
    }

    #[test]
    fn a_symbol_never_quoted_is_reported_stale_at_the_first_tick() {
        let mut b = bridge();
        let mut out = Vec::new();
        b.tick(Instant::now(), &mut out);
        assert_eq!(
            out,
            vec![Command::SetQuoteStatus {
                symbol: SymbolId(1),
                status: kuku_engine::QuoteStatus::Stale
            }]
        );
    }
}
