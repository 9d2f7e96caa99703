//! Static capacities and switches of an engine.
//!
//! Every table the engine keeps is sized here, once, at construction: the steady state never
//! allocates, and a full table rejects with a stable reason instead of growing. The
//! capacities, together with [`ENGINE_LOGIC_VERSION`], are hashed into the journal's segment
//! header: replay and replication refuse a journal written under different ones.

use serde::{Deserialize, Serialize};

/// Bumped whenever a change to the engine could change the events of an existing journal.
/// 2: a quote that quotes neither side while no earlier quote is live is rejected
/// (`QuoteEmpty`) instead of answering with no event at all.
/// 3: prices and quantities beyond `PRICE_MAX` / `QTY_MAX` are rejected (`OutOfRange`); the
/// fee schedule changes only between trading days (`FeesDuringDay`); one fill never charges a
/// seller more than its notional; a match stops at a fill that would overflow (`Overflow`).
pub const ENGINE_LOGIC_VERSION: u32 = 3;

/// How a book stores its price levels (ADR-002).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LadderPolicy {
    /// Direct-indexed ladder over today's band for banded symbols, sorted levels otherwise.
    Auto,
    /// Sorted levels for every symbol (for comparison benchmarks).
    SortedOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Live orders across all books.
    pub orders_max: u32,
    /// Trading accounts.
    pub accounts_max: u32,
    pub symbols_max: u32,
    /// Price levels per book side (sorted ladders), and the widest band a direct ladder takes.
    pub levels_max: u32,
    /// Request ids (orders, cancels, modifies) one account may use per trading day.
    pub orders_per_account_day_max: u32,
    /// Request ids across all accounts per trading day.
    pub keys_max: u32,
    /// (account, symbol) positions.
    pub positions_max: u32,
    /// PENDING or UNKNOWN external transactions.
    pub open_tx_max: u32,
    /// Closed reversible transactions remembered for reversals and resend detection.
    pub closed_tx_window_max: u32,
    /// Risk, ledger, positions and idempotency on. Off: book-only (benchmarks, peers).
    pub accounting: bool,
    pub ladder: LadderPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            orders_max: 1 << 20,
            accounts_max: 100_000,
            symbols_max: 4_096,
            levels_max: 8_192,
            orders_per_account_day_max: 10_000,
            keys_max: 1 << 21,
            positions_max: 1 << 20,
            open_tx_max: 65_536,
            closed_tx_window_max: 65_536,
            accounting: true,
            ladder: LadderPolicy::Auto,
        }
    }
}

impl EngineConfig {
    /// A small configuration for tests and demos.
    pub fn small() -> Self {
        EngineConfig {
            orders_max: 4_096,
            accounts_max: 256,
            symbols_max: 64,
            levels_max: 8_192,
            orders_per_account_day_max: 4_096,
            keys_max: 65_536,
            positions_max: 4_096,
            open_tx_max: 256,
            closed_tx_window_max: 256,
            accounting: true,
            ladder: LadderPolicy::Auto,
        }
    }

    /// A stable hash of everything that changes outcomes, and the engine-logic version.
    pub fn capacities_hash(&self) -> u64 {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&ENGINE_LOGIC_VERSION.to_le_bytes());
        for v in [
            self.orders_max,
            self.accounts_max,
            self.symbols_max,
            self.levels_max,
            self.orders_per_account_day_max,
            self.keys_max,
            self.positions_max,
            self.open_tx_max,
            self.closed_tx_window_max,
        ] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.push(self.accounting as u8);
        bytes.push(match self.ladder {
            LadderPolicy::Auto => 0,
            LadderPolicy::SortedOnly => 1,
        });
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }
}
