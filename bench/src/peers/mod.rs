//! Adapters for the peer engines Kuku is compared with: matchcore 0.4.0 and
//! orderbook-rs 0.15.3 (exact versions pinned in `bench/Cargo.toml`).
//!
//! Both get one book instance per flow symbol and are driven single-threaded. What their
//! sources say about the edge cases the flow avoids (or must shape) is recorded in each
//! adapter's module docs; the short version:
//!
//! | | matchcore 0.4.0 | orderbook-rs 0.15.3 |
//! |---|---|---|
//! | price / qty types | `Price(u64)`, `Quantity(u64)` | `u128` price, `u64` qty |
//! | order ids | assigned by the book: the command's sequence number (dense from 0 per book) | caller's `Id::Sequential(u64)` |
//! | crossing limit | matched with **no price limit**: a remainder trades through the limit | matched up to the limit; remainder rests (DAY) |
//! | IOC / FOK | supported; IOC remainder trades through like a limit; FOK checks liquidity within the limit first | supported; FOK preflight within the limit; IOC / FOK miss returns `Err(InsufficientLiquidity)` |
//! | market | sweeps with no limit; remainder cancelled (or rests with market-to-limit) | sweeps with no limit; remainder dropped |
//! | modify | amend: price change loses priority (and may cross, matching with no limit); qty increase loses priority, decrease keeps it | `UpdateQuantity`: increase loses priority, decrease keeps it; `UpdatePrice(AndQuantity)`: cancel and re-add at the back (may cross, matched within limit); a re-add's trades go to the trade listener only |
//! | cancel of unknown id | `Rejected(OrderNotFound)` (sequence number consumed) | `Ok(None)` |
//! | self-trade prevention | none | off by default (`STPMode::None`) |

pub mod matchcore;
pub mod orderbook_rs;

pub use self::matchcore::MatchcoreBook;
pub use self::orderbook_rs::OrderbookRsBook;
