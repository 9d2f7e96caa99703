//! Snapshots and the state hash.
//!
//! [`EngineSnapshot`] is the engine's logical state in a canonical form: collections in
//! id order (orders by OrderId, keys and references sorted, the transaction window in its
//! FIFO order), no slab slots, no links. Restoring rebuilds slabs, levels (FIFO by each
//! order's `priority`), account lists and maps, so a restored engine emits exactly the
//! events the original would. The state hash is [`crate::hash::stable_hash`] of the
//! snapshot.
//!
//! Snapshots are taken off the processor thread (a shadow engine replaying the journal, or
//! the standby); taking one costs O(state) and allocates.

use crate::book::order::Order;
use crate::command::{MarketPhase, QuoteStatus};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::fees::FeeSchedule;
use crate::idempotency::KeyRecord;
use crate::ledger::external::ExternalTx;
use crate::ledger::{Account, SystemBalances, SystemShares};
use crate::portfolio::Position;
use crate::reference::Symbol;
use crate::types::{
    AccountId, Amount, ClientOrderId, ExternalRef, OrderId, OrderType, Price, Qty, Side, SymbolId,
    TimeInForce, TxId,
};
use serde::{Deserialize, Serialize};

/// A live order without its slab links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub id: OrderId,
    pub account: AccountId,
    pub client_order_id: ClientOrderId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub price: Price,
    pub leaves: Qty,
    pub filled: Qty,
    pub priority: u64,
    pub cum_notional: Amount,
    pub commission_charged: Amount,
    pub taxes_charged: [Amount; 2],
    pub cash_hold: Amount,
    pub ts_accepted: u64,
    pub resting: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolSnapshot {
    pub symbol: Symbol,
    pub synthetic_bid: Option<OrderId>,
    pub synthetic_ask: Option<OrderId>,
    pub quote_status: QuoteStatus,
}

/// The whole logical state of an engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub config: EngineConfig,
    pub last_seq: u64,
    pub now_ts: u64,
    pub phase: MarketPhase,
    pub day_open: bool,
    pub trading_day: u32,
    pub fees: FeeSchedule,
    pub next_order_id: u64,
    pub next_trade_id: u64,
    pub next_priority: u64,
    pub next_tx_id: u64,
    pub symbols: Vec<SymbolSnapshot>,
    pub orders: Vec<OrderSnapshot>,
    pub accounts: Vec<Account>,
    /// In creation order (their index order).
    pub positions: Vec<Position>,
    pub system: SystemBalances,
    pub system_shares: Vec<SystemShares>,
    pub keys: Vec<((AccountId, ClientOrderId), KeyRecord)>,
    pub open_txs: Vec<ExternalTx>,
    /// Oldest closing first.
    pub closed_txs: Vec<ExternalTx>,
    pub refs: Vec<((AccountId, ExternalRef), TxId)>,
}

/// Why a snapshot cannot be restored.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error("the snapshot needs more capacity than the config gives: {0}")]
    Capacity(&'static str),
    #[error("the snapshot is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl From<&Order> for OrderSnapshot {
    fn from(o: &Order) -> Self {
        OrderSnapshot {
            id: o.id,
            account: o.account,
            client_order_id: o.client_order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            price: o.price,
            leaves: o.leaves,
            filled: o.filled,
            priority: o.priority,
            cum_notional: o.cum_notional,
            commission_charged: o.commission_charged,
            taxes_charged: o.taxes_charged,
            cash_hold: o.cash_hold,
            ts_accepted: o.ts_accepted,
            resting: o.resting,
        }
    }
}

impl Engine {
    /// The canonical logical state (allocates; never on the processor thread).
    pub fn snapshot(&self) -> EngineSnapshot {
        let ext = &self.ledger.external;
        let mut open_txs: Vec<ExternalTx> = ext.open.values().copied().collect();
        open_txs.sort_unstable_by_key(|t| t.id);
        let closed_txs = ext.closed_order.iter().map(|id| ext.closed[id]).collect();
        let mut refs: Vec<_> = ext.refs.iter().map(|(k, v)| (*k, *v)).collect();
        refs.sort_unstable();
        EngineSnapshot {
            config: self.config,
            last_seq: self.last_seq,
            now_ts: self.now_ts,
            phase: self.phase,
            day_open: self.day_open,
            trading_day: self.trading_day,
            fees: self.fees,
            next_order_id: self.next_order_id,
            next_trade_id: self.next_trade_id,
            next_priority: self.next_priority,
            next_tx_id: self.ledger.next_tx_id,
            symbols: self
                .symbols
                .iter()
                .map(|s| SymbolSnapshot {
                    symbol: s.symbol,
                    synthetic_bid: s.synthetic_bid,
                    synthetic_ask: s.synthetic_ask,
                    quote_status: s.quote_status,
                })
                .collect(),
            orders: self.orders.iter().map(|(_, o)| o.into()).collect(),
            accounts: self.ledger.accounts().to_vec(),
            positions: self.ledger.positions().to_vec(),
            system: *self.ledger.system(),
            system_shares: self.ledger.system_shares().to_vec(),
            keys: self.keys.sorted(),
            open_txs,
            closed_txs,
            refs,
        }
    }

    /// The stable hash of the whole state.
    pub fn state_hash(&self) -> u64 {
        crate::hash::stable_hash(&self.snapshot())
    }

    /// Rebuilds an engine from a snapshot.
    pub fn from_snapshot(snap: &EngineSnapshot) -> Result<Engine, RestoreError> {
        let c = &snap.config;
        if snap.symbols.len() > c.symbols_max as usize {
            return Err(RestoreError::Capacity("symbols_max"));
        }
        if snap.orders.len() > c.orders_max as usize {
            return Err(RestoreError::Capacity("orders_max"));
        }
        if snap.accounts.len() > c.accounts_max as usize {
            return Err(RestoreError::Capacity("accounts_max"));
        }
        if snap.positions.len() > c.positions_max as usize {
            return Err(RestoreError::Capacity("positions_max"));
        }
        if snap.keys.len() > c.keys_max as usize {
            return Err(RestoreError::Capacity("keys_max"));
        }
        if snap.open_txs.len() > c.open_tx_max as usize {
            return Err(RestoreError::Capacity("open_tx_max"));
        }
        let mut e = Engine::new(*c);
        e.restore_scalars(snap);
        e.restore_reference(snap);
        e.restore_ledger(snap)?;
        e.restore_orders(snap)?;
        Ok(e)
    }

    fn restore_scalars(&mut self, snap: &EngineSnapshot) {
        self.last_seq = snap.last_seq;
        self.now_ts = snap.now_ts;
        self.phase = snap.phase;
        self.day_open = snap.day_open;
        self.trading_day = snap.trading_day;
        self.fees = snap.fees;
        self.next_order_id = snap.next_order_id;
        self.next_trade_id = snap.next_trade_id;
        self.next_priority = snap.next_priority;
        self.ledger.next_tx_id = snap.next_tx_id;
    }

    fn restore_reference(&mut self, snap: &EngineSnapshot) {
        for s in &snap.symbols {
            let sym = s.symbol;
            let book = crate::book::Book::new(
                self.config.ladder,
                sym.tick_rule,
                sym.band,
                self.config.levels_max,
            );
            self.symbols.push(crate::engine::SymbolState {
                symbol: sym,
                book,
                synthetic_bid: s.synthetic_bid,
                synthetic_ask: s.synthetic_ask,
                quote_status: s.quote_status,
            });
            self.symbol_by_code.insert(sym.code, sym.id);
        }
    }

    fn restore_ledger(&mut self, snap: &EngineSnapshot) -> Result<(), RestoreError> {
        if snap.system_shares.len() != snap.symbols.len() {
            return Err(RestoreError::Inconsistent("system shares per symbol"));
        }
        self.ledger.restore(
            &snap.accounts,
            &snap.positions,
            snap.system,
            &snap.system_shares,
        );
        let l = &mut self.ledger;
        for t in &snap.open_txs {
            l.external.open.insert(t.id, *t);
        }
        for t in &snap.closed_txs {
            l.external.closed.insert(t.id, *t);
            l.external.closed_order.push_back(t.id);
        }
        for (k, v) in &snap.refs {
            l.external.refs.insert(*k, *v);
        }
        for (k, r) in &snap.keys {
            self.keys.record(k.0, k.1, *r);
        }
        Ok(())
    }

    fn restore_orders(&mut self, snap: &EngineSnapshot) -> Result<(), RestoreError> {
        let mut resting = Vec::with_capacity(snap.orders.len());
        for o in &snap.orders {
            if self.symbol_state(o.symbol).is_none() {
                return Err(RestoreError::Inconsistent("an order's symbol"));
            }
            let order = Order {
                id: o.id,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price: o.price,
                leaves: o.leaves,
                filled: o.filled,
                priority: o.priority,
                cum_notional: o.cum_notional,
                commission_charged: o.commission_charged,
                taxes_charged: o.taxes_charged,
                cash_hold: o.cash_hold,
                ts_accepted: o.ts_accepted,
                resting: o.resting,
                position: if o.account.is_system_market() {
                    crate::book::order::NIL
                } else {
                    self.ledger
                        .position_slot(o.account, o.symbol)
                        .unwrap_or(crate::book::order::NIL)
                },
                level: crate::book::order::Links::NONE,
                by_account: crate::book::order::Links::NONE,
            };
            let slot = self
                .orders
                .insert(order)
                .ok_or(RestoreError::Capacity("orders_max"))?;
            if !o.account.is_system_market()
                && self.config.accounting
                && self.ledger.account(o.account).is_none()
            {
                return Err(RestoreError::Inconsistent("an order's account"));
            }
            self.link_account(slot);
            if o.resting {
                resting.push((o.priority, slot));
            }
        }
        resting.sort_unstable();
        for (_, slot) in resting {
            let symbol = self.orders.get(slot).symbol;
            let book = &mut self.symbols[symbol.0 as usize - 1].book;
            let side = self.orders.get(slot).side;
            let price = self.orders.get(slot).price;
            if !book.has_room_for(side, price) {
                return Err(RestoreError::Capacity("levels_max"));
            }
            book.rest(&mut self.orders, slot);
        }
        Ok(())
    }
}
