//! The gateway's mirror of the node: a read model folded from the output events the gateway
//! itself consumes, the symbol code index, and the replay history. The translation of each
//! event into the messages its accounts receive is the translation layer's
//! ([`crate::translate::outcomes`]).
//!
//! Because the gateway answers queries from its own fold, on its own thread, a query always
//! sees at least every event the session has already been sent (no read-your-writes race
//! with another consumer thread).
//!
//! **Invariants**: events are applied in output order, each exactly once; an event is
//! translated *before* it is applied, so order details (client order id) are still there
//! when the event finishes the order.
//!
//! **Performance**: one read-model update (O(log n) B-tree operations) and at most two
//! message constructions per event; no allocation except the read model's and history's own.

use crate::history::History;
use crate::protocol::Code;
use crate::translate::{Symbols, Translated, translate_event};
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Event, SymbolId};

pub use crate::translate::Addressed;

pub struct Mirror {
    pub read_model: ReadModel,
    pub history: History,
    pub symbols: Symbols,
}

impl Mirror {
    pub fn new(read_model: ReadModel, history: History) -> Mirror {
        Mirror {
            symbols: Symbols::from_read_model(&read_model),
            read_model,
            history,
        }
    }

    /// The wire code of a symbol (`None` if unknown or longer than 6 characters).
    #[inline]
    pub fn code(&self, id: SymbolId) -> Option<Code> {
        self.symbols.code(id)
    }

    /// The symbol with this wire code.
    #[inline]
    pub fn symbol_id(&self, code: Code) -> Option<SymbolId> {
        self.symbols.id(code)
    }

    /// Applies one output event: translates it for its accounts, records the sequenced
    /// messages in the history, then folds it into the read model.
    pub fn apply(&mut self, seq: u64, ts: u64, event: &Event) -> Translated {
        let out = translate_event(&self.symbols, &self.read_model, ts, event);
        if let Event::EpochBegan { id_floor, .. } = *event {
            // Before the fold raises them: each account's last number of the old epoch.
            for (account, view) in &self.read_model.accounts {
                self.history.mark_epoch(*account, id_floor, view.acct_seq);
            }
        }
        self.read_model.apply(seq, ts, event);
        self.symbols.observe(event);
        for a in out.iter().flatten() {
            if a.acct_seq > 0 {
                self.history.push(a.account, a.acct_seq, a.message);
            }
        }
        out
    }
}
